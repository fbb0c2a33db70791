//! `[ice]`: the WebRTC ingest's UDP transport (bound addresses, port range, NAT 1:1
//! addresses, ICE servers for clients) and its connect and media timeouts, with the checks
//! on them. Plain data; the peer module binds the sockets.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[ice]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IceConfig {
    /// Local addresses each peer connection binds its UDP socket on. Each becomes a host
    /// candidate. The default is loopback only; set the machine's public or LAN address (or
    /// `0.0.0.0` for every interface) to accept publishers from elsewhere.
    pub udp_addrs: Vec<IpAddr>,
    /// First UDP port of the range peers bind in; `0` (with `port_max = 0`) picks ephemeral
    /// ports. Open this range on the firewall.
    pub port_min: u16,
    /// Last UDP port of the range.
    pub port_max: u16,
    /// Public IPs to advertise instead of the bound ones (1:1 NAT, e.g. a cloud VM or a
    /// container with published ports).
    pub nat_1to1_ips: Vec<String>,
    /// STUN/TURN URLs given to WHIP clients in `Link` headers (RFC 9725 §4.6) and to the
    /// browser pages. Not contacted by the server itself.
    pub ice_servers: Vec<String>,
    /// How long a new session may take to connect (ICE, DTLS) and send video before it is
    /// dropped; until then it is pending (`limits.max_pending_sessions`) and holds no name.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A live stream whose video RTP stops for this long is ended.
    #[serde(with = "humantime_serde")]
    pub media_timeout: Duration,
    /// Most remote ICE candidates one session may have, its offer's and its trickled ones
    /// (WHIP PATCH, WebSocket) together, counted as distinct UDP targets. The server sends
    /// STUN binding requests to every remote candidate (RFC 8445 §6.1.2), so without a cap
    /// one offer makes it a reflector. Browsers send a handful, aiortc one per interface.
    /// An offer's extras are dropped (the offer still works); a trickled one beyond the cap
    /// is refused with 400. Default 16.
    pub max_remote_candidates: usize,
    /// Networks (CIDR, e.g. `["192.168.0.0/16", "2001:db8:1::/48"]`) remote candidates may
    /// point into; others are dropped and never checked. Unset (the default): derived from
    /// `udp_addrs` — a loopback bind allows loopback candidates, a private one (RFC 1918,
    /// RFC 4193) private ones, a global one global unicast, `0.0.0.0` / `::` global and
    /// private ones. Whatever the list, multicast, broadcast, unspecified and link-local
    /// addresses and port 0 are never checked. `[]` checks no candidate: only publishers
    /// whose own checks reach the server are answered (peer-reflexive, RFC 8445 §7.3.1.3).
    pub candidate_networks: Option<Vec<IpNet>>,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            udp_addrs: vec![IpAddr::from([127, 0, 0, 1])],
            port_min: 0,
            port_max: 0,
            nat_1to1_ips: Vec::new(),
            ice_servers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(10),
            max_remote_candidates: 16,
            candidate_networks: None,
        }
    }
}

impl IceConfig {
    /// Rejects values that would make a broken server, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.udp_addrs.is_empty() {
            return Err(invalid("ice.udp_addrs", "must list at least one address"));
        }
        if (self.port_min == 0) != (self.port_max == 0) || self.port_min > self.port_max {
            return Err(invalid(
                "ice.port_min",
                "and ice.port_max must both be 0 or form a range min <= max",
            ));
        }
        if !(1..=MAX_REMOTE_CANDIDATES).contains(&self.max_remote_candidates) {
            return Err(invalid(
                "ice.max_remote_candidates",
                "must be from 1 to 1000",
            ));
        }
        Ok(())
    }
}

/// The highest `ice.max_remote_candidates`: beyond it the cap would not bound anything.
const MAX_REMOTE_CANDIDATES: usize = 1000;
