//! `[ice]`: the WebRTC ingest's UDP transport (bound addresses, port range, NAT 1:1
//! addresses, ICE servers for clients) and its connect and media timeouts, with the checks
//! on them. Plain data; the peer module binds the sockets.

use std::net::IpAddr;
use std::time::Duration;

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
        Ok(())
    }
}
