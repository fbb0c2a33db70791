//! Which remote ICE candidates the server sends connectivity checks to, and how many. Pure:
//! candidate text and addresses in, verdicts out; [`super::session`] applies them to the
//! offer (rewriting the SDP before the stack reads it) and to each trickled candidate.
//!
//! Every remote candidate is a UDP destination: the ICE agent pairs it with each local
//! candidate and sends it STUN binding requests, retransmitted until it answers or the pair
//! fails (RFC 8445 §6.1.2, §6.1.4, §14.3). Left to the offer, that makes the server a
//! reflector and a port scanner: one offer of 1 000 candidates had it send 8 000 binding
//! requests to 1 000 targets in 1.5 s. So a session gets at most `ice.max_remote_candidates`
//! distinct targets, its offer's and its trickled ones together, and only at addresses that
//! `ice.candidate_networks` allows; a target is checked once, whatever the number of
//! candidate lines naming it.
//! Where an address is (loopback, private, global, never) is `addresses`' to say.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::addresses::{Class, Never, Scope, classify, default_scopes};
use crate::config::IceConfig;

/// Which remote addresses may be checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    /// Addresses of these scopes (the default, from the bind addresses).
    Scopes(Vec<Scope>),
    /// Addresses in these networks (`ice.candidate_networks`).
    Networks(Vec<IpNet>),
}

/// The rules for one session's remote candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidatePolicy {
    /// Which addresses may be checked.
    pub allowed: Allowed,
    /// Most distinct targets per session.
    pub max: usize,
}

impl CandidatePolicy {
    /// The policy `[ice]` configures: `candidate_networks` if set, else the scopes of
    /// `udp_addrs`; `max_remote_candidates` targets.
    pub fn from_config(ice: &IceConfig) -> Self {
        let allowed = match &ice.candidate_networks {
            Some(nets) => Allowed::Networks(nets.clone()),
            None => Allowed::Scopes(default_scopes(&ice.udp_addrs)),
        };
        CandidatePolicy {
            allowed,
            max: ice.max_remote_candidates,
        }
    }

    /// Whether `target` may be checked at all.
    pub fn judge(&self, target: SocketAddr) -> Result<(), Skip> {
        if target.port() == 0 {
            return Err(Skip::PortZero);
        }
        let ip = target.ip().to_canonical();
        match (classify(ip), &self.allowed) {
            (Class::Never(n), _) => Err(Skip::Never(n)),
            (Class::Scoped(s), Allowed::Scopes(scopes)) if scopes.contains(&s) => Ok(()),
            (Class::Scoped(_), Allowed::Networks(nets)) if nets.iter().any(|n| n.contains(&ip)) => {
                Ok(())
            }
            _ => Err(Skip::NotAllowed),
        }
    }
}

/// A remote candidate, as far as the policy cares (RFC 8839 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCandidate<'a> {
    /// `component-id`: 1 is RTP (and RTCP, multiplexed: RFC 5761, RFC 8843).
    pub component: u16,
    /// `transport`: `UDP`, or an extension such as `TCP` (RFC 6544).
    pub transport: &'a str,
    /// `connection-address`: an IP address or a name (FQDN, mDNS `.local`).
    pub address: &'a str,
    /// `port`.
    pub port: u16,
    /// `cand-type`: host, srflx, prflx, relay.
    pub kind: &'a str,
}

/// A candidate attribute that does not follow RFC 8839 §5.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} in candidate {text:?} (RFC 8839 §5.1)")]
pub struct CandidateError {
    reason: &'static str,
    text: String,
}

/// Parses a candidate attribute value: `[candidate:]foundation component transport
/// priority address port typ type [raddr a] [rport p] *(name value)`.
pub fn parse(value: &str) -> Result<RemoteCandidate<'_>, CandidateError> {
    let err = |reason| CandidateError {
        reason,
        text: value.chars().take(120).collect(),
    };
    let body = value.strip_prefix("candidate:").unwrap_or(value);
    let f: Vec<&str> = body.split_ascii_whitespace().take(8).collect();
    let [
        foundation,
        component,
        transport,
        priority,
        address,
        port,
        typ,
        kind,
    ] = f[..]
    else {
        return Err(err("fewer than 8 fields"));
    };
    // foundation = 1*32 ice-char (ALPHA / DIGIT / "+" / "/").
    if foundation.len() > 32
        || !foundation
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(err("foundation is not 1-32 ice-chars"));
    }
    // component-id = 1*3DIGIT, 1..=256 (RFC 8445 §5.1.1.1).
    let component = digits::<u16>(component)
        .filter(|c| (1..=256).contains(c))
        .ok_or_else(|| err("component-id is not 1-256"))?;
    // priority = 1*10DIGIT, a positive 32-bit number (RFC 8445 §5.1.2.1).
    digits::<u32>(priority)
        .filter(|p| *p >= 1)
        .ok_or_else(|| err("priority is not a positive 32-bit number"))?;
    let port = digits::<u16>(port).ok_or_else(|| err("port is not 0-65535"))?;
    if typ != "typ" {
        return Err(err("no \"typ\" before the candidate type"));
    }
    if !matches!(kind, "host" | "srflx" | "prflx" | "relay") {
        return Err(err("candidate type is not host, srflx, prflx or relay"));
    }
    Ok(RemoteCandidate {
        component,
        transport,
        address,
        port,
        kind,
    })
}

/// A number written as decimal digits only (`str::parse` also takes a leading `+`).
pub(super) fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Why a candidate is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Not UDP: the server binds UDP only, and for a passive TCP candidate the stack would
    /// open a TCP connection to it.
    NotUdp,
    /// Not component 1: RTP and RTCP share component 1 (RFC 5761, RFC 8843 §9), and the
    /// server gathers nothing else.
    NotComponent1,
    /// A name, not an IP address: mDNS `.local` names are not resolved (multicast off the
    /// box), nor are other names.
    NotAnIp,
    /// Port 0.
    PortZero,
    /// An address never checked.
    Never(Never),
    /// Outside the allowed networks.
    NotAllowed,
    /// A target this session checks already.
    Duplicate,
    /// Beyond `ice.max_remote_candidates`.
    OverCap,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::NotUdp => "not UDP",
            Skip::NotComponent1 => "not component 1",
            Skip::NotAnIp => "not an IP address",
            Skip::PortZero => "port 0",
            Skip::Never(Never::Unspecified) => "unspecified address",
            Skip::Never(Never::ThisNetwork) => "\"this network\" address",
            Skip::Never(Never::Multicast) => "multicast address",
            Skip::Never(Never::Broadcast) => "broadcast address",
            Skip::Never(Never::LinkLocal) => "link-local address",
            Skip::NotAllowed => "outside ice.candidate_networks",
            Skip::Duplicate => "duplicate target",
            Skip::OverCap => "over ice.max_remote_candidates",
        })
    }
}

/// What happens to one remote candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A new target: hand the candidate to the stack.
    Check(SocketAddr),
    /// Not checked, for this reason.
    Skipped(Skip),
}

/// One session's remote candidates: the targets admitted so far, under its policy.
#[derive(Debug)]
pub struct RemoteCandidates {
    policy: CandidatePolicy,
    targets: HashSet<SocketAddr>,
}

impl RemoteCandidates {
    /// No target yet.
    pub fn new(policy: CandidatePolicy) -> Self {
        RemoteCandidates {
            policy,
            targets: HashSet::new(),
        }
    }

    /// The session's cap.
    pub fn limit(&self) -> usize {
        self.policy.max
    }

    /// Judges a candidate attribute value (with or without `candidate:`) and, when it names
    /// a new allowed target within the cap, counts it.
    pub fn admit(&mut self, value: &str) -> Result<Admission, CandidateError> {
        let c = parse(value)?;
        let skip = |s| Ok(Admission::Skipped(s));
        if !c.transport.eq_ignore_ascii_case("udp") {
            return skip(Skip::NotUdp);
        }
        if c.component != 1 {
            return skip(Skip::NotComponent1);
        }
        let Ok(ip) = c.address.parse::<IpAddr>() else {
            return skip(Skip::NotAnIp);
        };
        let target = SocketAddr::new(ip.to_canonical(), c.port);
        if let Err(s) = self.policy.judge(target) {
            return skip(s);
        }
        if self.targets.contains(&target) {
            return skip(Skip::Duplicate);
        }
        if self.targets.len() >= self.policy.max {
            return skip(Skip::OverCap);
        }
        self.targets.insert(target);
        Ok(Admission::Check(target))
    }
}

/// An offer with its candidates judged.
#[derive(Debug, Clone, PartialEq)]
pub struct FilteredOffer {
    /// The offer without the candidate lines that are not to be checked.
    pub sdp: String,
    /// Candidates kept.
    pub kept: usize,
    /// Candidates dropped, by reason.
    pub dropped: BTreeMap<Skip, usize>,
}

impl FilteredOffer {
    /// `"950 outside ice.candidate_networks, 34 over ice.max_remote_candidates"`.
    pub fn dropped_summary(&self) -> String {
        self.dropped
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Candidates dropped.
    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }
}

/// Judges every `a=candidate` line of an offer (RFC 8839 §5.1), at session or media level,
/// in order, and drops those not to be checked; other lines are kept byte for byte. A line
/// that is not a candidate per RFC 8839 refuses the whole offer, as the stack would.
pub fn filter_offer(
    sdp: &str,
    remote: &mut RemoteCandidates,
) -> Result<FilteredOffer, CandidateError> {
    let mut out = FilteredOffer {
        sdp: String::with_capacity(sdp.len()),
        kept: 0,
        dropped: BTreeMap::new(),
    };
    for line in sdp.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        if let Some(value) = content.strip_prefix("a=candidate:") {
            match remote.admit(value)? {
                Admission::Check(_) => out.kept += 1,
                Admission::Skipped(s) => {
                    *out.dropped.entry(s).or_default() += 1;
                    continue;
                }
            }
        }
        out.sdp.push_str(line);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "candidates_tests.rs"]
mod tests;
