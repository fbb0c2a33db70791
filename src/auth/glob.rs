//! Stream-name patterns of JWT grants: `*` matches any run of characters (none
//! included), `?` exactly one, anything else itself. Stream names are `[A-Za-z0-9_-]`, so
//! no escape is needed. Linear-time matching with one backtrack point (the last `*`), so a
//! hostile pattern costs at most `pattern × name` steps.

/// The longest pattern read; longer ones match nothing.
pub const MAX_PATTERN: usize = 256;

/// Whether `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern.len() > MAX_PATTERN {
        return false;
    }
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` seen, and where in the name it started to match.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and try again from there.
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for (p, n, m) in [
            ("cam-*", "cam-1", true),
            ("cam-*", "cam-", true),
            ("cam-*", "cam", false),
            ("cam-*", "xcam-1", false),
            ("*", "anything", true),
            ("cam-?", "cam-1", true),
            ("cam-?", "cam-12", false),
            ("*-live", "a-b-live", true),
            ("*-live", "a-b-livex", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(matches(p, n), m, "{p} vs {n}");
        }
        assert!(!matches(&"*".repeat(MAX_PATTERN + 1), "a"));
        // A hostile pattern stays cheap.
        assert!(!matches(&"*a".repeat(100), &"a".repeat(64)));
    }
}
