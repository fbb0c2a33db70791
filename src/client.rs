//! Who a client is and how it came in: its address for per-client limits (an IPv6 client
//! by its /64: a subscriber's prefix, so a host that owns a /64 cannot take a cap's worth
//! per address), used by the connection caps and the publish limits alike; and how a
//! publisher signals, which the API, the metrics and the webhooks all name. A leaf: it
//! imports nothing of ours.

use std::net::{IpAddr, Ipv6Addr};

/// The address a per-client cap counts: IPv4 as is, IPv6 by its /64 (one subscriber's
/// prefix: a host that owns a /64 could otherwise open a cap's worth per address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(IpAddr);

impl ClientId {
    /// The client of a peer address.
    pub fn of(ip: IpAddr) -> ClientId {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientId(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                ClientId(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        }
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How the publisher signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signaling {
    /// RFC 9725 WHIP.
    Whip,
    /// Our WebSocket JSON protocol.
    WebSocket,
}

impl Signaling {
    /// `whip` or `websocket`: the name in `/api/streams` and `/metrics` labels.
    pub fn name(self) -> &'static str {
        match self {
            Signaling::Whip => "whip",
            Signaling::WebSocket => "websocket",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let one = ClientId::of("2001:db8:1:2::1".parse().expect("ip"));
        let two = ClientId::of("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let other = ClientId::of("2001:db8:1:3::1".parse().expect("ip"));
        assert_eq!(one, two);
        assert_ne!(one, other);
        let mapped = ClientId::of("::ffff:192.0.2.7".parse().expect("ip"));
        assert_eq!(mapped, ClientId::of("192.0.2.7".parse().expect("ip")));
    }
}
