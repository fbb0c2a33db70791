//! Lifecycle webhooks (`[auth.webhooks]`): `publish_started`, `publish_ended` (with the
//! reason) and `recording_finished`, each POSTed as JSON with
//! `X-Whipcast-Signature: sha256=<hex>`, the HMAC-SHA256 (RFC 2104) of the exact body
//! under `auth.webhooks.secret`, plus `X-Whipcast-Event` and `X-Whipcast-Delivery` (the
//! event's id, the same on every retry, for receivers that deduplicate).
//!
//! Emitting never waits: [`Hooks`] serializes the event and `try_send`s it into a bounded
//! channel; a full channel drops the event (counted, logged). One sender task delivers in
//! order: a 2xx is delivered; a 5xx, 408, 429, timeout or connection failure is retried
//! after `backoff`, doubled each time up to 30 s, for at most `max_attempts` attempts;
//! another status is a final failure. Every outcome is counted in `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::error::SetupError;
use crate::config::WebhookConfig;
use crate::metrics::{AuthCounters, Delivery, HookEvent};

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-whipcast-signature";

/// `sha256=<hex of HMAC-SHA256(secret, body)>` (RFC 2104).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length (RFC 2104 §2: longer ones are hashed first), so this
    // never fails.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

struct Event {
    kind: HookEvent,
    id: String,
    body: Bytes,
}

/// The emitting side; cheap to clone. Without `[auth.webhooks] url` every call is a no-op.
#[derive(Clone)]
pub struct Hooks {
    tx: Option<mpsc::Sender<Event>>,
    /// Events queued or being delivered.
    pending: Arc<AtomicUsize>,
    counters: AuthCounters,
}

impl Hooks {
    /// Hooks that send nothing.
    pub fn disabled(counters: AuthCounters) -> Self {
        Self {
            tx: None,
            pending: Arc::default(),
            counters,
        }
    }

    /// Hooks for `cfg`, and their sender task (on the current tokio runtime).
    pub fn start(
        cfg: &WebhookConfig,
        client: reqwest::Client,
        counters: AuthCounters,
    ) -> Result<Self, SetupError> {
        if cfg.url.is_empty() {
            return Ok(Self::disabled(counters));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SetupError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(cfg.queue);
        let hooks = Self {
            tx: Some(tx),
            pending: Arc::default(),
            counters,
        };
        let sender = Sender {
            cfg: cfg.clone(),
            client,
            counters: hooks.counters.clone(),
            pending: hooks.pending.clone(),
        };
        runtime.spawn(sender.run(rx));
        Ok(hooks)
    }

    /// A broadcast started (`session` is the first 8 hex digits of its id, as logged).
    pub fn publish_started(&self, stream: &str, session: &str, signaling: &'static str) {
        self.emit(
            HookEvent::publish_started,
            json!({"stream": stream, "session": short(session), "signaling": signaling}),
        );
    }

    /// A broadcast ended, and why.
    pub fn publish_ended(&self, stream: &str, session: &str, reason: &str) {
        self.emit(
            HookEvent::publish_ended,
            json!({"stream": stream, "session": short(session), "reason": reason}),
        );
    }

    /// A recording wrote its last file (`error`: it stopped on one instead).
    pub fn recording_finished(&self, r: &RecordingDone<'_>) {
        self.emit(
            HookEvent::recording_finished,
            json!({"stream": r.stream, "epoch": r.epoch, "directory": r.directory,
                "files": r.files, "bytes": r.bytes,
                "status": if r.error.is_some() { "failed" } else { "finished" },
                "error": r.error}),
        );
    }

    fn emit(&self, kind: HookEvent, mut payload: Value) {
        let Some(tx) = &self.tx else { return };
        let id = format!("{:032x}", rand::random::<u128>());
        if let Some(o) = payload.as_object_mut() {
            o.insert("event".into(), json!(kind_name(kind)));
            o.insert("id".into(), json!(id));
            o.insert(
                "time".into(),
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            );
        }
        let body = Bytes::from(payload.to_string());
        self.pending.fetch_add(1, Ordering::SeqCst);
        if tx.try_send(Event { kind, id, body }).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.counters.delivery(kind, Delivery::dropped);
            warn!(
                event = kind_name(kind),
                "webhook queue full (auth.webhooks.queue): event dropped"
            );
        }
    }

    /// Waits (at most `limit`) until every queued event was delivered or given up; on
    /// shutdown. Returns whether the queue emptied.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// What `recording_finished` reports.
pub struct RecordingDone<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The broadcast's epoch (the recording's directory name).
    pub epoch: &'a str,
    /// `<record.directory>/<stream>/<epoch>`.
    pub directory: &'a str,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The error that stopped the recording, if one did.
    pub error: Option<&'a str>,
}

fn short(session: &str) -> &str {
    session.get(..8).unwrap_or(session)
}

fn kind_name(kind: HookEvent) -> &'static str {
    match kind {
        HookEvent::publish_started => "publish_started",
        HookEvent::publish_ended => "publish_ended",
        HookEvent::recording_finished => "recording_finished",
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth another attempt, and why not this one.
    Retry(String),
    /// Final, and why.
    Failed(String),
}

struct Sender {
    cfg: WebhookConfig,
    client: reqwest::Client,
    counters: AuthCounters,
    pending: Arc<AtomicUsize>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Event>) {
        while let Some(ev) = rx.recv().await {
            let result = self.deliver(&ev).await;
            self.counters.delivery(ev.kind, result);
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn deliver(&self, ev: &Event) -> Delivery {
        let name = kind_name(ev.kind);
        let mut wait = self.cfg.backoff;
        for attempt in 1..=self.cfg.max_attempts {
            match self.attempt(ev).await {
                Attempt::Delivered => {
                    debug!(event = name, attempt, "webhook delivered");
                    return Delivery::delivered;
                }
                Attempt::Failed(why) => {
                    warn!(event = name, id = %ev.id, %why, "webhook refused by its receiver; not retried");
                    return Delivery::failed;
                }
                Attempt::Retry(why) if attempt < self.cfg.max_attempts => {
                    self.counters.webhook_retries.inc();
                    debug!(event = name, attempt, %why, ?wait, "webhook attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Attempt::Retry(why) => {
                    warn!(event = name, id = %ev.id, attempts = attempt, %why, "webhook given up");
                }
            }
        }
        Delivery::failed
    }

    async fn attempt(&self, ev: &Event) -> Attempt {
        let sent = self
            .client
            .post(&self.cfg.url)
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(self.cfg.secret.as_bytes(), &ev.body),
            )
            .header("x-whipcast-event", kind_name(ev.kind))
            .header("x-whipcast-delivery", ev.id.as_str())
            .body(ev.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) => {
                let s = r.status().as_u16();
                if s >= 500 || s == 408 || s == 429 {
                    Attempt::Retry(format!("HTTP {s}"))
                } else {
                    Attempt::Failed(format!("HTTP {s}"))
                }
            }
            Err(e) => Attempt::Retry(crate::error_chain(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 §4.3, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn disabled_hooks_send_nothing() {
        let h = Hooks::disabled(AuthCounters::default());
        h.publish_started("cam", "0123456789", "whip");
        assert_eq!(h.pending.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let counters = AuthCounters::default();
        let (tx, _rx) = mpsc::channel(1);
        let h = Hooks {
            tx: Some(tx),
            pending: Arc::default(),
            counters: counters.clone(),
        };
        h.publish_started("cam", "0123456789", "whip");
        h.publish_ended("cam", "0123456789", "done");
        assert_eq!(
            counters.deliveries(HookEvent::publish_ended, Delivery::dropped),
            1
        );
        assert_eq!(h.pending.load(Ordering::SeqCst), 1);
        assert!(!h.drain(Duration::from_millis(30)).await);
    }
}
