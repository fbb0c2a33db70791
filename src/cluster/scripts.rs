//! The Lua scripts that read and change claims. Redis runs each script atomically (no
//! other command runs between its steps), which is what makes "claim if free", "renew if
//! still mine" and "delete if still mine" safe between nodes without a lock of our own.
//! Each script names all its keys in `KEYS` (as Redis requires of scripts).

use std::time::Duration;

use redis::{Script, ScriptInvocation};

use super::keys::{Keys, Owner, Progress};

/// Claims a free name: a fresh fencing token from the cluster-wide counter, then the claim
/// with its TTL. Returns `{"1", value, progress, pttl}` when claimed (the stream's last
/// reported numbering, `""` if none, and its remaining time to live in ms), `{"0", value}`
/// with the holder's value when not.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then return {'0', cur} end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ' ' .. token
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
local progress = redis.call('GET', KEYS[3])
return {'1', value, progress or '', tostring(redis.call('PTTL', KEYS[3]))}
";

/// Renews this node's claim and records where the stream's numbering stands (only the
/// holder writes it: the claim is the fence): `1` when renewed, `0` when another holds the
/// name (this node lost it). A claim Redis no longer has (it restarted without persistence,
/// or failed over) is put back, `2`, with the fence counter raised to at least its token
/// so that no later claim is given a lower one.
const RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
local result = 1
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif cur then
  return 0
else
  local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
  if fence < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  result = 2
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5]) end
return result
";

/// Deletes the claim if it is still this node's (its token), recording where the stream's
/// numbering ended: `1` deleted, `0` not.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How long a stream's numbering is kept after its owner last reported it: a stream
/// re-published on any node within this time continues its sequence numbers.
pub(super) const PROGRESS_KEEP: Duration = Duration::from_secs(3600);

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ClaimResult {
    /// Claimed now, with this token; and where the stream's numbering stood, if a node
    /// reported it within [`PROGRESS_KEEP`].
    Claimed(Owner, Option<Progress>),
    /// Held already, by this owner.
    Taken(Owner),
}

impl ClaimResult {
    pub(super) fn from_reply(reply: &[String]) -> Result<ClaimResult, String> {
        let (Some(flag), Some(value)) = (reply.first(), reply.get(1)) else {
            return Err(format!("unexpected claim reply {reply:?}"));
        };
        let owner = Owner::parse(value).ok_or_else(|| format!("unreadable claim {value:?}"))?;
        Ok(if flag == "1" {
            let ttl = reply
                .get(3)
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(-1);
            let progress = match (reply.get(2), u64::try_from(ttl)) {
                (Some(p), Ok(ttl)) if !p.is_empty() => {
                    let left = Duration::from_millis(ttl).min(PROGRESS_KEEP);
                    Progress::parse(p, PROGRESS_KEEP - left)
                }
                _ => None,
            };
            ClaimResult::Claimed(owner, progress)
        } else {
            ClaimResult::Taken(owner)
        })
    }
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Renewal {
    /// Still ours; extended.
    Renewed,
    /// Redis had lost it; put back.
    Restored,
    /// Another node holds the name now.
    Lost,
}

impl Renewal {
    pub(super) fn from_reply(reply: i64) -> Renewal {
        match reply {
            1 => Renewal::Renewed,
            2 => Renewal::Restored,
            _ => Renewal::Lost,
        }
    }
}

/// The scripts, loaded once (`EVALSHA`, with `EVAL` when Redis does not know them yet).
pub(super) struct Scripts {
    claim: Script,
    renew: Script,
    release: Script,
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }

    pub(super) fn claim(
        &self,
        keys: &Keys,
        stream: &str,
        node: &str,
        ttl: Duration,
    ) -> ScriptInvocation<'_> {
        let mut inv = self.claim.prepare_invoke();
        inv.key(keys.claim(stream))
            .key(keys.fence())
            .key(keys.progress(stream))
            .arg(node)
            .arg(millis(ttl));
        inv
    }

    pub(super) fn renew(
        &self,
        keys: &Keys,
        stream: &str,
        owner: &Owner,
        ttl: Duration,
        progress: Option<(u64, u64)>,
    ) -> ScriptInvocation<'_> {
        let mut inv = self.renew.prepare_invoke();
        inv.key(keys.claim(stream))
            .key(keys.fence())
            .key(keys.progress(stream))
            .arg(owner.to_value())
            .arg(millis(ttl))
            .arg(owner.token)
            .arg(progress.map_or(String::new(), |(n, d)| Progress::value(n, d)))
            .arg(millis(PROGRESS_KEEP));
        inv
    }

    pub(super) fn release(
        &self,
        keys: &Keys,
        stream: &str,
        owner: &Owner,
        progress: Option<(u64, u64)>,
    ) -> ScriptInvocation<'_> {
        let mut inv = self.release.prepare_invoke();
        inv.key(keys.claim(stream))
            .key(keys.progress(stream))
            .arg(owner.to_value())
            .arg(progress.map_or(String::new(), |(n, d)| Progress::value(n, d)))
            .arg(millis(PROGRESS_KEEP));
        inv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let o = Owner {
            node: "a".into(),
            token: 7,
        };
        assert_eq!(
            ClaimResult::from_reply(&["1".into(), "a 7".into(), "".into(), "-2".into()]),
            Ok(ClaimResult::Claimed(o.clone(), None))
        );
        // Reported with 3 599.5 s left of its hour: half a second ago.
        let with =
            ClaimResult::from_reply(&["1".into(), "a 7".into(), "120 3".into(), "3599500".into()]);
        assert_eq!(
            with,
            Ok(ClaimResult::Claimed(
                o.clone(),
                Some(Progress {
                    next_seq: 120,
                    discontinuity_seq: 3,
                    age: Duration::from_millis(500)
                })
            ))
        );
        assert_eq!(
            ClaimResult::from_reply(&["0".into(), "a 7".into()]),
            Ok(ClaimResult::Taken(o))
        );
        assert!(ClaimResult::from_reply(&["1".into()]).is_err());
        assert!(ClaimResult::from_reply(&["1".into(), "junk".into()]).is_err());
        assert_eq!(Renewal::from_reply(1), Renewal::Renewed);
        assert_eq!(Renewal::from_reply(2), Renewal::Restored);
        assert_eq!(Renewal::from_reply(0), Renewal::Lost);
    }
}
