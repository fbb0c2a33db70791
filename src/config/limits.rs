//! `[limits]`: bounds on what clients may hold (connections, their timeouts, the shutdown
//! grace), with the checks on them. Plain data read once at start; `origin::serve`
//! enforces them.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[limits]`: bounds on connections, so that no client (or crowd of idle ones) can take
/// the server's descriptors or memory away from the others. Each has a counter in
/// `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open connections (HTTP, HTTPS, WebSockets); the next one gets `503` and is closed.
    /// Lowered at start to fit the process's descriptor limit.
    pub max_connections: usize,
    /// Open connections per client address (an IPv6 client counts by its /64).
    pub max_connections_per_client: usize,
    /// From the moment the server waits for a request (a new connection, or a kept-alive
    /// one after its last response) until that request's headers are complete; a client
    /// that takes longer is closed (slowloris, idle keep-alive).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection that moves no byte either way between two checks this far apart is
    /// closed, whatever it is doing (after one to two of these of silence). Must exceed a
    /// blocking playlist request's wait (3 × target duration).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request body (an SDP offer, a trickle fragment) must arrive within this time.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// On shutdown, after every broadcast ended: how long open connections get to finish
    /// before they are closed.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Sessions answered but not yet sending video (ICE, DTLS, the first frame), in all.
    /// They hold no stream name and have `ice.connect_timeout` to go live.
    pub max_pending_sessions: usize,
    /// The same, per client address.
    pub max_pending_sessions_per_client: usize,
    /// Publish attempts (WHIP POST, WebSocket upgrade) a client may make per minute, on
    /// average; `0` turns the rate limit off.
    pub publish_per_minute: u32,
    /// How many of them may come at once.
    pub publish_burst: u32,
    /// A WebSocket publisher must send its offer within this time of the upgrade.
    #[serde(with = "humantime_serde")]
    pub ws_offer_timeout: Duration,
    /// The server pings every WebSocket this often; one that has not answered the previous
    /// ping by the next one is closed (RFC 6455 §5.5.2: a ping's pong is the liveness
    /// check).
    #[serde(with = "humantime_serde")]
    pub ws_ping_interval: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            max_connections_per_client: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 128,
            shutdown_grace: Duration::from_secs(5),
            max_pending_sessions: 8,
            max_pending_sessions_per_client: 2,
            publish_per_minute: 30,
            publish_burst: 10,
            ws_offer_timeout: Duration::from_secs(10),
            ws_ping_interval: Duration::from_secs(20),
        }
    }
}

impl LimitsConfig {
    /// Rejects values that would make a broken server, naming the key. `segment_duration`
    /// is `hls.segment_duration`: a blocking playlist request may wait 3 target durations.
    pub(super) fn validate(&self, segment_duration: Duration) -> Result<(), ConfigError> {
        if self.max_connections < 16 {
            return Err(invalid("limits.max_connections", "must be at least 16"));
        }
        if self.max_connections_per_client == 0
            || self.max_connections_per_client > self.max_connections
        {
            return Err(invalid(
                "limits.max_connections_per_client",
                "must be between 1 and limits.max_connections",
            ));
        }
        if self.header_timeout < Duration::from_secs(1) {
            return Err(invalid("limits.header_timeout", "must be at least 1s"));
        }
        if self.body_timeout < Duration::from_secs(1) {
            return Err(invalid("limits.body_timeout", "must be at least 1s"));
        }
        // A parked blocking reload answers within 3 × target duration (HLS2 §6.2.5.2); the
        // target duration is the segment duration rounded up to whole seconds (§4.4.3.1).
        let target = segment_duration.as_secs_f64().ceil().max(1.0);
        let blocking = Duration::from_secs_f64(3.0 * target);
        if self.idle_timeout <= blocking + Duration::from_secs(1) {
            return Err(invalid(
                "limits.idle_timeout",
                "must exceed 3 × the target duration (+1s): a blocking playlist request waits that long",
            ));
        }
        if self.max_pending_sessions == 0 {
            return Err(invalid("limits.max_pending_sessions", "must be at least 1"));
        }
        if self.max_pending_sessions_per_client == 0
            || self.max_pending_sessions_per_client > self.max_pending_sessions
        {
            return Err(invalid(
                "limits.max_pending_sessions_per_client",
                "must be between 1 and limits.max_pending_sessions",
            ));
        }
        if self.publish_per_minute > 0 && self.publish_burst == 0 {
            return Err(invalid(
                "limits.publish_burst",
                "must be at least 1 when limits.publish_per_minute is set",
            ));
        }
        if self.ws_offer_timeout < Duration::from_secs(1) {
            return Err(invalid("limits.ws_offer_timeout", "must be at least 1s"));
        }
        if self.ws_ping_interval < Duration::from_secs(1) {
            return Err(invalid("limits.ws_ping_interval", "must be at least 1s"));
        }
        if self.h2_max_concurrent_streams == 0 {
            return Err(invalid(
                "limits.h2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
