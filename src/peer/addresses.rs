//! Where an IP address is, for the remote-candidate policy ([`super::candidates`]). Pure.
//! Addresses are classified by the IANA special-purpose registries (RFC 6890): multicast,
//! broadcast, unspecified, "this network" and link-local addresses are never checked,
//! whatever the configuration; the others by scope (loopback, private, shared, global,
//! special), which the bind addresses choose by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an address is reached, for the default policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`) and RFC 4193 unique local (`fc00::/7`).
    Private,
    /// RFC 6598 shared address space (`100.64/10`, carrier-grade NAT and overlays).
    Shared,
    /// Global unicast: none of the others.
    Global,
    /// Other special-purpose ranges (documentation, benchmarking, reserved, 6to4, …):
    /// checked only where the bind address is one too, or the configuration lists them.
    Special,
}

/// Why an address is never checked, whatever the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Never {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8` other than `0.0.0.0`: a source only (RFC 1122 §3.2.1.3).
    ThisNetwork,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `169.254.0.0/16` (RFC 3927), `fe80::/10` (RFC 4291 §2.5.6).
    LinkLocal,
}

/// Where an IP address is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Checked if the policy allows its scope (or network).
    Scoped(Scope),
    /// Never checked.
    Never(Never),
}

/// Classifies an address. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are classified as
/// the IPv4 address they carry, so they cannot slip past the IPv4 rules.
pub fn classify(ip: IpAddr) -> Class {
    match ip.to_canonical() {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() {
        Class::Never(Never::Unspecified)
    } else if a == 0 {
        Class::Never(Never::ThisNetwork)
    } else if ip.is_broadcast() {
        Class::Never(Never::Broadcast)
    } else if ip.is_multicast() {
        Class::Never(Never::Multicast)
    } else if ip.is_link_local() {
        Class::Never(Never::LinkLocal)
    } else if ip.is_loopback() {
        Class::Scoped(Scope::Loopback)
    } else if ip.is_private() {
        Class::Scoped(Scope::Private)
    } else if a == 100 && (b & 0xc0) == 64 {
        Class::Scoped(Scope::Shared)
    } else if
    // IETF protocol assignments 192.0.0.0/24 (RFC 6890), documentation (RFC 5737),
    // benchmarking 198.18.0.0/15 (RFC 2544), 6to4 relay anycast (RFC 7526), reserved
    // 240.0.0.0/4 (RFC 1112 §4).
    (a, b, c) == (192, 0, 0)
        || ip.is_documentation()
        || (a == 198 && (b & 0xfe) == 18)
        || (a, b, c) == (192, 88, 99)
        || a >= 240
    {
        Class::Scoped(Scope::Special)
    } else {
        Class::Scoped(Scope::Global)
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    let s = ip.segments();
    if ip.is_unspecified() {
        Class::Never(Never::Unspecified)
    } else if ip.is_multicast() {
        Class::Never(Never::Multicast)
    } else if ip.is_unicast_link_local() {
        Class::Never(Never::LinkLocal)
    } else if ip.is_loopback() {
        Class::Scoped(Scope::Loopback)
    } else if ip.is_unique_local() {
        Class::Scoped(Scope::Private)
    } else if
    // Outside 2000::/3 nothing is allocated as global unicast (RFC 4291 §2.4), which also
    // covers site-local fec0::/10 (RFC 3879), IPv4-compatible ::/96 and discard 100::/64.
    // Inside: IETF protocol assignments 2001::/23 (RFC 2928; Teredo, benchmarking, ORCHID),
    // documentation 2001:db8::/32 (RFC 3849), 6to4 2002::/16 (RFC 7526).
    (s[0] & 0xe000) != 0x2000
        || (s[0] == 0x2001 && s[1] < 0x0200)
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || s[0] == 0x2002
    {
        // NAT64 64:ff9b::/96 (RFC 6052) is outside 2000::/3 but global: it names IPv4
        // destinations through a translator.
        if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
            Class::Scoped(Scope::Global)
        } else {
            Class::Scoped(Scope::Special)
        }
    } else {
        Class::Scoped(Scope::Global)
    }
}

/// The scopes a server bound on `binds` checks by default: a bind's own scope, and global
/// and private for `0.0.0.0` / `::` (every interface). A link-local or multicast bind adds
/// nothing.
pub fn default_scopes(binds: &[IpAddr]) -> Vec<Scope> {
    let mut out = Vec::new();
    for ip in binds {
        let add = match classify(*ip) {
            Class::Never(Never::Unspecified) => vec![Scope::Global, Scope::Private],
            Class::Never(_) => Vec::new(),
            Class::Scoped(s) => vec![s],
        };
        for s in add {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn classification() {
        use Class::*;
        for (a, want) in [
            ("127.0.0.1", Scoped(Scope::Loopback)),
            ("127.255.1.2", Scoped(Scope::Loopback)),
            ("::1", Scoped(Scope::Loopback)),
            ("::ffff:127.0.0.2", Scoped(Scope::Loopback)),
            ("10.1.2.3", Scoped(Scope::Private)),
            ("172.16.0.1", Scoped(Scope::Private)),
            ("172.32.0.1", Scoped(Scope::Global)),
            ("192.168.1.1", Scoped(Scope::Private)),
            ("::ffff:192.168.1.1", Scoped(Scope::Private)),
            ("fd00::1", Scoped(Scope::Private)),
            ("100.64.0.1", Scoped(Scope::Shared)),
            ("100.128.0.1", Scoped(Scope::Global)),
            ("8.8.8.8", Scoped(Scope::Global)),
            ("2a00:1450::1", Scoped(Scope::Global)),
            ("64:ff9b::808:808", Scoped(Scope::Global)),
            ("192.0.2.1", Scoped(Scope::Special)),
            ("198.18.0.1", Scoped(Scope::Special)),
            ("240.0.0.1", Scoped(Scope::Special)),
            ("2001:db8::1", Scoped(Scope::Special)),
            ("2002:c000:201::1", Scoped(Scope::Special)),
            ("fec0::1", Scoped(Scope::Special)),
            ("0.0.0.0", Never(super::Never::Unspecified)),
            ("::", Never(super::Never::Unspecified)),
            ("0.1.2.3", Never(super::Never::ThisNetwork)),
            ("255.255.255.255", Never(super::Never::Broadcast)),
            ("224.0.0.251", Never(super::Never::Multicast)),
            ("239.255.255.250", Never(super::Never::Multicast)),
            ("ff02::fb", Never(super::Never::Multicast)),
            ("::ffff:224.0.0.1", Never(super::Never::Multicast)),
            ("169.254.1.1", Never(super::Never::LinkLocal)),
            ("fe80::1", Never(super::Never::LinkLocal)),
        ] {
            assert_eq!(classify(ip(a)), want, "{a}");
        }
    }

    #[test]
    fn default_scopes_follow_the_binds() {
        assert_eq!(default_scopes(&[ip("127.0.0.1")]), [Scope::Loopback]);
        assert_eq!(default_scopes(&[ip("192.168.1.10")]), [Scope::Private]);
        assert_eq!(default_scopes(&[ip("fd12::1")]), [Scope::Private]);
        assert_eq!(default_scopes(&[ip("203.0.114.7")]), [Scope::Global]);
        assert_eq!(
            default_scopes(&[ip("0.0.0.0")]),
            [Scope::Private, Scope::Global]
        );
        assert_eq!(default_scopes(&[ip("::")]), [Scope::Private, Scope::Global]);
        assert_eq!(
            default_scopes(&[ip("127.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")]),
            [Scope::Loopback, Scope::Private]
        );
        assert!(default_scopes(&[ip("fe80::1")]).is_empty());
    }
}
