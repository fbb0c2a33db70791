//! What a WHIP PATCH is checked against (RFC 9725 §4.3.1): the session's entity tag, and
//! the ICE credentials its offer carried. A PATCH whose `If-Match` names another tag is
//! refused with 412; one that asks for an ICE restart (`If-Match: *`, or a fragment whose
//! `a=ice-ufrag` / `a=ice-pwd` differ from the session's, RFC 8445 §9 and RFC 8839 §4.4.1.1)
//! gets 422, as restarts are not supported. Plain data and pure rules, plus the record of
//! each session's credentials beside the registry.

use axum::http::{HeaderMap, header};

use super::Ingest;

/// The ICE credentials of a session's offer (RFC 8839 §5.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteIce {
    /// `a=ice-ufrag`.
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
}

impl RemoteIce {
    /// Whether a trickle fragment carrying `ufrag` / `pwd` belongs to another ICE session
    /// than this one: an ICE restart changes both (RFC 8445 §9), and a fragment names the
    /// session its candidates are for (RFC 8840 §4.4).
    pub fn is_restart(&self, ufrag: Option<&str>, pwd: Option<&str>) -> bool {
        let differs = |theirs: Option<&str>, ours: &Option<String>| match (theirs, ours) {
            (Some(t), Some(o)) => t != o,
            (Some(_), None) => true,
            (None, _) => false,
        };
        differs(ufrag, &self.ufrag) || differs(pwd, &self.pwd)
    }
}

/// The strong entity tag of a session (RFC 9725 §4.3.1, RFC 9110 §8.8.3): fixed for its
/// life, as ICE restarts are not supported.
pub fn session_etag(session_id: &str) -> String {
    format!("\"{}\"", session_id.get(..16).unwrap_or(session_id))
}

/// A request's `If-Match` (RFC 9110 §13.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No `If-Match`.
    Absent,
    /// `If-Match: *`: an ICE restart (RFC 9725 §4.3.1).
    Any,
    /// Entity tags: the request applies only if one of them strongly matches.
    Tags(Vec<EntityTag>),
}

/// An entity tag of a list (RFC 9110 §8.8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    /// `W/` before it.
    pub weak: bool,
    /// The opaque tag, quotes included.
    pub tag: String,
}

impl IfMatch {
    /// Reads every `If-Match` field line of a request, as one list (RFC 9110 §5.3). A value
    /// that is not a list of entity tags matches nothing.
    pub fn from_headers(headers: &HeaderMap) -> IfMatch {
        let mut values = headers.get_all(header::IF_MATCH).iter().peekable();
        if values.peek().is_none() {
            return IfMatch::Absent;
        }
        let mut tags = Vec::new();
        for v in values {
            let Ok(v) = v.to_str() else {
                return IfMatch::Tags(Vec::new());
            };
            if v.trim() == "*" {
                return IfMatch::Any;
            }
            match parse_entity_tags(v) {
                Some(mut t) => tags.append(&mut t),
                None => return IfMatch::Tags(Vec::new()),
            }
        }
        IfMatch::Tags(tags)
    }

    /// Whether a request with this `If-Match` may apply to a resource tagged `etag`:
    /// absent, `*`, or a tag that matches it by the strong comparison RFC 9110 §13.1.1
    /// asks for (a weak tag never matches).
    pub fn allows(&self, etag: &str) -> bool {
        match self {
            IfMatch::Absent | IfMatch::Any => true,
            IfMatch::Tags(tags) => tags.iter().any(|t| !t.weak && t.tag == etag),
        }
    }
}

/// `#entity-tag` (RFC 9110 §8.8.3): `[W/]"opaque"`, comma-separated; `None` if malformed.
fn parse_entity_tags(v: &str) -> Option<Vec<EntityTag>> {
    let mut out = Vec::new();
    let mut rest = v;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(out);
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        let body = rest.strip_prefix('"')?;
        let end = body.find('"')?;
        out.push(EntityTag {
            weak,
            tag: format!("\"{}\"", &body[..end]),
        });
        rest = &body[end + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
            return None;
        }
    }
}

/// The first `a=ice-ufrag` and `a=ice-pwd` of a trickle fragment (RFC 8840 §9), wherever
/// they are.
pub fn fragment_credentials(frag: &str) -> (Option<&str>, Option<&str>) {
    let mut ufrag = None;
    let mut pwd = None;
    for line in frag.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            ufrag = ufrag.or(Some(u.trim()));
        } else if let Some(p) = line.strip_prefix("a=ice-pwd:") {
            pwd = pwd.or(Some(p.trim()));
        }
    }
    (ufrag, pwd)
}

impl Ingest {
    /// Records a published session's ICE credentials (dropped with the session by
    /// `release`).
    pub(super) fn record_remote_ice(&self, session_id: &str, ice: RemoteIce) {
        self.registry()
            .remote_ice
            .insert(session_id.to_string(), ice);
    }

    /// A live session's ICE credentials.
    pub fn remote_ice(&self, session_id: &str) -> Option<RemoteIce> {
        self.registry().remote_ice.get(session_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_MATCH, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn etag_is_the_session_prefix() {
        assert_eq!(
            session_etag("0123456789abcdef0123456789abcdef"),
            "\"0123456789abcdef\""
        );
        assert_eq!(session_etag("short"), "\"short\"");
    }

    #[test]
    fn if_match_rules() {
        let etag = "\"0123456789abcdef\"";
        assert_eq!(IfMatch::from_headers(&headers(&[])), IfMatch::Absent);
        assert_eq!(IfMatch::from_headers(&headers(&["*"])), IfMatch::Any);
        assert_eq!(IfMatch::from_headers(&headers(&[" * "])), IfMatch::Any);
        for (values, allowed) in [
            (&["\"0123456789abcdef\""][..], true),
            (&["\"other\", \"0123456789abcdef\""][..], true),
            (&["\"other\"", "\"0123456789abcdef\""][..], true),
            (&["\"other\""][..], false),
            // Strong comparison: a weak tag never matches (RFC 9110 §8.8.3.2).
            (&["W/\"0123456789abcdef\""][..], false),
            // Not a list of entity tags.
            (&["0123456789abcdef"][..], false),
            (&["\"0123456789abcdef"][..], false),
            (&["\"0123456789abcdef\"x"][..], false),
            (&[""][..], false),
        ] {
            let m = IfMatch::from_headers(&headers(values));
            assert_eq!(m.allows(etag), allowed, "{values:?}: {m:?}");
        }
        assert!(IfMatch::Any.allows(etag));
        assert!(IfMatch::Absent.allows(etag));
    }

    #[test]
    fn restart_is_a_credential_change() {
        let ice = RemoteIce {
            ufrag: Some("Ns8c".into()),
            pwd: Some("2ERC5NAYh9I0hNO1X0qjhC".into()),
        };
        assert!(!ice.is_restart(None, None));
        assert!(!ice.is_restart(Some("Ns8c"), None));
        assert!(!ice.is_restart(Some("Ns8c"), Some("2ERC5NAYh9I0hNO1X0qjhC")));
        assert!(ice.is_restart(Some("new1"), None));
        assert!(ice.is_restart(Some("Ns8c"), Some("newpasswordnewpassword12")));
        assert!(ice.is_restart(None, Some("newpasswordnewpassword12")));
        assert!(RemoteIce::default().is_restart(Some("x"), None));
    }

    #[test]
    fn fragment_credentials_are_found() {
        let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:later\r\n";
        assert_eq!(
            fragment_credentials(frag),
            (Some("EsAw"), Some("P2uYro0UCOQ4zxjKXaWCBui1"))
        );
        assert_eq!(fragment_credentials("a=mid:0\n"), (None, None));
    }
}
