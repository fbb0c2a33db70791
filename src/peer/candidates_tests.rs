//! Tests of [`super`]: the candidate grammar, the policy, the cap, the offer rewrite.

use super::*;
use crate::peer::addresses::Scope;

fn policy(allowed: Allowed, max: usize) -> RemoteCandidates {
    RemoteCandidates::new(CandidatePolicy { allowed, max })
}

fn host(addr: &str, port: u16) -> String {
    format!("candidate:1 1 udp 2122260223 {addr} {port} typ host generation 0")
}

#[test]
fn policy_judges_targets() {
    let lo = CandidatePolicy {
        allowed: Allowed::Scopes(vec![Scope::Loopback]),
        max: 16,
    };
    let sa = |s: &str| s.parse::<SocketAddr>().expect("socket address");
    assert_eq!(lo.judge(sa("127.0.0.2:5000")), Ok(()));
    assert_eq!(lo.judge(sa("[::1]:5000")), Ok(()));
    assert_eq!(lo.judge(sa("10.0.0.1:5000")), Err(Skip::NotAllowed));
    assert_eq!(lo.judge(sa("127.0.0.2:0")), Err(Skip::PortZero));
    let any = CandidatePolicy {
        allowed: Allowed::Scopes(vec![Scope::Private, Scope::Global]),
        max: 16,
    };
    assert_eq!(any.judge(sa("10.0.0.1:5000")), Ok(()));
    assert_eq!(any.judge(sa("1.1.1.1:53")), Ok(()));
    assert_eq!(any.judge(sa("127.0.0.1:5000")), Err(Skip::NotAllowed));
    assert_eq!(any.judge(sa("192.0.2.1:5000")), Err(Skip::NotAllowed));
    assert_eq!(any.judge(sa("100.64.0.1:5000")), Err(Skip::NotAllowed));
    // Configured networks: exactly those, and still never the forbidden kinds.
    let nets = CandidatePolicy {
        allowed: Allowed::Networks(vec![
            "127.0.0.2/32".parse().expect("net"),
            "0.0.0.0/0".parse().expect("net"),
            "::/0".parse().expect("net"),
        ]),
        max: 16,
    };
    assert_eq!(nets.judge(sa("127.0.0.2:9")), Ok(()));
    assert_eq!(nets.judge(sa("192.0.2.1:9")), Ok(()));
    for never in [
        "224.0.0.1:9",
        "255.255.255.255:9",
        "0.0.0.0:9",
        "169.254.169.254:80",
        "[fe80::1]:9",
        "[ff02::1]:9",
        "[::]:9",
        "[::ffff:224.0.0.1]:9",
    ] {
        assert!(
            matches!(nets.judge(sa(never)), Err(Skip::Never(_))),
            "{never}"
        );
    }
    let only = CandidatePolicy {
        allowed: Allowed::Networks(vec!["127.0.0.2/32".parse().expect("net")]),
        max: 16,
    };
    assert_eq!(only.judge(sa("127.0.0.3:9")), Err(Skip::NotAllowed));
    // An IPv4-mapped form is judged as the IPv4 address.
    assert_eq!(only.judge(sa("[::ffff:127.0.0.2]:9")), Ok(()));
    let none = CandidatePolicy {
        allowed: Allowed::Networks(Vec::new()),
        max: 16,
    };
    assert_eq!(none.judge(sa("127.0.0.2:9")), Err(Skip::NotAllowed));
}

#[test]
fn parses_rfc8839_candidates() {
    let c = parse("candidate:1387637174 1 udp 2122260223 192.168.1.5 61764 typ host generation 0 network-id 1")
        .expect("chrome host");
    assert_eq!(
        c,
        RemoteCandidate {
            component: 1,
            transport: "udp",
            address: "192.168.1.5",
            port: 61764,
            kind: "host",
        }
    );
    let c = parse("842163049 1 udp 1677729535 203.0.114.9 3478 typ srflx raddr 0.0.0.0 rport 0")
        .expect("srflx without prefix");
    assert_eq!((c.kind, c.port), ("srflx", 3478));
    let c = parse("1 1 TCP 1518280447 10.0.0.1 9 typ host tcptype active").expect("tcp");
    assert_eq!(c.transport, "TCP");
    parse("1 1 udp 2122260223 abcd-ef.local 5000 typ host").expect("mdns");
    for bad in [
        "",
        "candidate:",
        "1 1 udp 2122260223 127.0.0.1 5000 typ",
        "1 1 udp 2122260223 127.0.0.1 5000 type host",
        "1 1 udp 2122260223 127.0.0.1 5000 typ bogus",
        "1 0 udp 2122260223 127.0.0.1 5000 typ host",
        "1 257 udp 2122260223 127.0.0.1 5000 typ host",
        "1 +1 udp 2122260223 127.0.0.1 5000 typ host",
        "1 1 udp 99999999999 127.0.0.1 5000 typ host",
        "1 1 udp 0 127.0.0.1 5000 typ host",
        "1 1 udp -5 127.0.0.1 5000 typ host",
        "1 1 udp 1 127.0.0.1 65536 typ host",
        "1 1 udp 1 127.0.0.1 -1 typ host",
        "bad_foundation! 1 udp 1 127.0.0.1 5000 typ host",
        "123456789012345678901234567890123 1 udp 1 127.0.0.1 5000 typ host",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn admission_counts_distinct_allowed_targets() {
    let mut r = policy(Allowed::Scopes(vec![Scope::Loopback]), 2);
    let sa = |s: &str| s.parse::<SocketAddr>().expect("socket address");
    assert_eq!(
        r.admit(&host("127.0.0.2", 5000)),
        Ok(Admission::Check(sa("127.0.0.2:5000")))
    );
    // The same target under another foundation or priority is not a second target.
    assert_eq!(
        r.admit("candidate:99 1 UDP 5 127.0.0.2 5000 typ srflx raddr 1.2.3.4 rport 9"),
        Ok(Admission::Skipped(Skip::Duplicate))
    );
    assert_eq!(
        r.admit(&host("::ffff:127.0.0.2", 5000)),
        Ok(Admission::Skipped(Skip::Duplicate))
    );
    // Not counted against the cap: TCP, component 2, names, refused addresses.
    for (c, why) in [
        (
            "1 1 tcp 1 127.0.0.2 5001 typ host tcptype passive".to_string(),
            Skip::NotUdp,
        ),
        (
            "1 2 udp 1 127.0.0.2 5001 typ host".to_string(),
            Skip::NotComponent1,
        ),
        (host("abcd.local", 5001), Skip::NotAnIp),
        (host("example.com", 5001), Skip::NotAnIp),
        (host("127.0.0.2", 0), Skip::PortZero),
        (host("10.0.0.1", 5001), Skip::NotAllowed),
        (host("224.0.0.1", 5001), Skip::Never(Never::Multicast)),
    ] {
        assert_eq!(r.admit(&c), Ok(Admission::Skipped(why)), "{c}");
    }
    assert!(matches!(
        r.admit(&host("127.0.0.3", 5000)),
        Ok(Admission::Check(_))
    ));
    assert_eq!(
        r.admit(&host("127.0.0.4", 5000)),
        Ok(Admission::Skipped(Skip::OverCap))
    );
    // A known target is still a duplicate at the cap, not over it.
    assert_eq!(
        r.admit(&host("127.0.0.3", 5000)),
        Ok(Admission::Skipped(Skip::Duplicate))
    );
    assert!(r.admit("candidate:garbage").is_err());
    assert_eq!(r.limit(), 2);
}

#[test]
fn offer_is_rewritten_without_the_dropped_lines() {
    let mut r = policy(Allowed::Scopes(vec![Scope::Loopback]), 2);
    let sdp = format!(
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na={}\r\na={}\r\na={}\r\na={}\r\na=end-of-candidates\r\n",
        host("127.0.0.2", 1),
        host("10.0.0.1", 2),
        host("127.0.0.2", 3),
        host("127.0.0.2", 4),
    );
    let f = filter_offer(&sdp, &mut r).expect("filters");
    assert_eq!(f.kept, 2);
    assert_eq!(f.dropped_total(), 2);
    assert_eq!(
        f.dropped_summary(),
        "1 outside ice.candidate_networks, 1 over ice.max_remote_candidates"
    );
    assert_eq!(
        f.sdp,
        format!(
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na={}\r\na={}\r\na=end-of-candidates\r\n",
            host("127.0.0.2", 1),
            host("127.0.0.2", 3),
        )
    );
    // The budget goes on into trickle.
    assert_eq!(
        r.admit(&host("127.0.0.2", 5)),
        Ok(Admission::Skipped(Skip::OverCap))
    );
    // LF endings and no final newline are kept as they are.
    let mut r = policy(Allowed::Scopes(vec![Scope::Loopback]), 16);
    let lf = format!("v=0\na={}\na=mid:0", host("127.0.0.1", 7));
    assert_eq!(filter_offer(&lf, &mut r).expect("lf").sdp, lf);
    // A broken candidate line refuses the offer.
    let mut r = policy(Allowed::Scopes(vec![Scope::Loopback]), 16);
    assert!(filter_offer("v=0\r\na=candidate:1 1 udp\r\n", &mut r).is_err());
}

#[test]
fn a_thousand_candidates_become_the_cap() {
    let mut r = policy(Allowed::Scopes(vec![Scope::Loopback]), 16);
    let mut sdp = String::from("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
    for i in 0..1000u16 {
        sdp.push_str(&format!("a={}\r\n", host("127.0.1.1", 20_000 + i)));
    }
    let f = filter_offer(&sdp, &mut r).expect("filters");
    assert_eq!(f.kept, 16);
    assert_eq!(f.dropped.get(&Skip::OverCap), Some(&984));
    assert_eq!(f.sdp.matches("a=candidate:").count(), 16);
}
