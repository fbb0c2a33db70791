//! # whipcast
//!
//! A WebRTC-to-HLS live gateway: publishers push WebRTC (WHIP, RFC 9725, or a WebSocket
//! signalling channel); whipcast transcodes each stream into an H.264/AAC ladder, packages
//! CMAF segments and serves HLS from memory as a CDN origin.
//!
//! ```text
//! publisher ──WHIP POST/PATCH/DELETE──┐
//!           ──WS offer/candidates─────┤
//!                                     ▼
//!   origin::serve (accept loop: connection caps per client and in all, header / idle
//!                                     │ timeouts, shutdown grace) → origin::router
//!                                     ▼
//!       ingest::{whip, ws} (routes over their own state): rate, auth (static token, JWT,
//!       the operator's callback), check, translate, answer
//!                                     │ Ingest registry: sessions pending until their first
//!                                     │ video claims the name (one live session per name)
//!                                     ▼
//!   ┌──────────────── broadcast task (one per live stream; owns everything below) ─────────┐
//!   │ peer (webrtc) ──RtpPacket{arrival} (bounded)─▶ media::Pipeline (GStreamer)           │
//!   │   │  RTCP sender reports ──────────────────▶ jitterbuffers: A/V by sender clock      │
//!   │   ▲  PLI ◀── keyframes::Steering ◀── MediaEvent::KeyframeRequest, publisher's GOP     │
//!   │   │        appsrc → jitterbuffer → depay → decode → videorate → tee → per rung:       │
//!   │   │        scale → x264 → cmafmux; Opus → AAC (or silence) → cmafmux; → appsink      │
//!   │   │                                   │ MediaEvent::{Renditions, Init, Fragment}      │
//!   │   │                    ┌──────────────┴──────────────┐                               │
//!   │   │                    ▼                             ▼ try_send (bounded, never waits)│
//!   │   │   hls::HlsStore (name → each stream's own    output::{record (disk thread),       │
//!   │   │   lock; windows, parts, budget; all          s3 (uploader)}: their own playlists │
//!   │   │   playlists released at once)                                                    │
//!   │   │        │ DVR overflow → hls::spill (disk thread, bounded)                         │
//!   └───┴────────┼──────────────────────────────────────────────────────────────────────────┘
//!                │ sync reads under one stream's lock (Bytes clones)
//! player (hls.js, Safari, ffmpeg) ◀── GET *.m3u8 / init / part / seg ── origin::router
//! old TV / set-top box ◀── GET *-ts.m3u8 / *.ts ── hls::remux (on request, blocking pool)
//! Prometheus ◀── GET /metrics ── metrics (process-wide counters) + store summaries
//! the operator's service ◀── signed lifecycle webhooks ── auth::webhook (bounded queue)
//! Redis ◀── claims (at first video; released at the end), node registration, renewals ──
//!           cluster (`[cluster]`, off by default; its heartbeat task, not the broadcasts)
//! ```
//!
//! Simulcast (RFC 8853): each H.264 layer of a publisher is its own `IncomingTrack` (rid,
//! queue, PLI); the broadcast waits for the layers, plans them (`simulcast`: the tallest is
//! the top layer, each a rendition named by its height), and the pipeline remuxes each
//! layer as a passthrough rung (`media::ingest::layer_ingest`), no decoding; keyframes are
//! asked of every layer at once and `media::align` lets the muxers cut only where every
//! layer has one, on timelines put together at their first keyframes; a layer that starts
//! late begins at a boundary, with the number the others' segments have there.
//!
//! Playlists: one hand-written writer, `hls::media_playlist`, writes every media playlist:
//! the origin's live windows, plain and LL-HLS, full and delta updates, with a re-published
//! stream's previous segments before a discontinuity, and their MPEG-TS twins (what they
//! list is decided by `hls::live`), and the `EVENT` / `VOD` / live lists of the recordings
//! and uploads (`output`, through `hls::segment_list`). `m3u8-rs` writes only the
//! multivariant playlists, of the origin and the outputs alike (`hls::multivariant`).
//!
//! Rules the layout enforces: only `peer` names `webrtc`; only `media` names GStreamer;
//! only `hls::multivariant` names `m3u8_rs` (tests parse with it too); only `origin` and
//! the ingest routes name `axum`; only `cluster` names `redis`.
//! One task owns each live stream; channels are bounded; GStreamer state changes run on
//! the blocking pool; a failure ends its own stream only.

// Public: what `main`, the integration tests and the fuzz targets (tests/fuzz) call —
// the configuration, logging, the media builders (`print-pipelines`, `plan-ladder`), and
// the parsers that read network input (offers, trickle fragments, WebSocket messages, HLS
// names and directives, the fMP4 reader). The rest is private to the crate.
mod atomic_file;
mod auth;
mod broadcast;
mod client;
mod cluster;
pub mod config;
pub mod hls;
pub mod ingest;
mod keyframes;
pub mod logging;
pub mod media;
mod metrics;
pub mod origin;
mod output;
pub mod peer;
mod simulcast;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::Config;

/// An error and its sources, `: `-separated, for logs and messages: error enums keep the
/// cause in `#[source]`, so their own text does not repeat it.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A validated stream name: 1–64 of `[A-Za-z0-9_-]`, so it is safe in URLs and paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey(String);

impl StreamKey {
    /// Whether `s` is a valid stream name.
    pub fn is_valid(s: &str) -> bool {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// Parses a stream name.
    pub fn parse(s: &str) -> Option<StreamKey> {
        Self::is_valid(s).then(|| StreamKey(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// GStreamer or a plugin is missing.
    #[error(transparent)]
    Media(#[from] media::MediaError),
    /// The HTTP server failed.
    #[error("http server failed")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] origin::tls::TlsError),
    /// The recording / object-storage outputs cannot be set up.
    #[error(transparent)]
    Output(#[from] output::OutputError),
    /// The authorization checks or webhooks cannot be set up.
    #[error(transparent)]
    Auth(#[from] auth::SetupError),
    /// `[cluster]` cannot be joined (an unusable `cluster.redis_url`).
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

/// On shutdown, how long the recordings and uploads get to write their final playlists
/// after every broadcast ended.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// On shutdown, how long queued webhooks get to be delivered after the outputs finished.
const WEBHOOK_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often ended streams past their grace period are dropped.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(5);

/// Runs whipcast on `listener` until `shutdown` resolves; then ends every broadcast (every
/// playlist gets `EXT-X-ENDLIST`) and returns.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    tokio::task::spawn_blocking(media::init)
        .await
        .map_err(|e| media::MediaError::Init(e.to_string()))??;
    info!(gstreamer = %media::version(), "media ready");
    let ladder = cfg.media.resolve_ladder()?;
    let tls = if cfg.server.tls_cert.is_empty() {
        None
    } else {
        Some(origin::tls::load(
            std::path::Path::new(&cfg.server.tls_cert),
            std::path::Path::new(&cfg.server.tls_key),
        )?)
    };
    let store = hls::HlsStore::new(cfg.hls.clone());
    let authorizer = auth::Authorizer::new(&cfg.auth, store.metrics())?;
    let outputs = output::Outputs::new(&cfg.record, &cfg.s3, &cfg.hls, store.metrics().clone())?
        .with_hooks(authorizer.hooks().clone());
    let hooks = authorizer.hooks().clone();
    // In a cluster, the node registers the URL other nodes and clients reach it at.
    let cluster = if cfg.cluster.enabled() {
        let url = if cfg.server.public_url.is_empty() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", listener.local_addr()?)
        } else {
            cfg.server.public_url.clone()
        };
        let numbering = store.clone();
        let progress: cluster::ProgressSource =
            std::sync::Arc::new(move |s: &str| numbering.progress(s));
        Some(cluster::Cluster::new(
            &cfg.cluster,
            &url,
            cfg.server.max_streams,
            progress,
            store.metrics().cluster.clone(),
        )?)
    } else {
        None
    };
    let ingest = ingest::Ingest::new(
        ingest::IngestSettings {
            auth: authorizer,
            ice: cfg.ice.clone(),
            ladder,
            max_sdp_bytes: cfg.server.max_sdp_bytes,
            max_streams: cfg.server.max_streams,
            limits: cfg.limits.clone(),
            cluster: cluster.as_ref().map(|(c, _)| c.clone()),
        },
        store.clone(),
        outputs.clone(),
    );
    let (cluster, heartbeat) = match cluster {
        Some((c, lost)) => {
            ingest.end_lost_claims(lost);
            let beat = c.spawn_heartbeat();
            (Some(c), Some(beat))
        }
        None => (None, None),
    };
    let limits = fit_to_descriptors(cfg.limits.clone(), cfg.server.max_streams);
    let state = origin::AppState {
        signaling: ingest::SignalingState {
            ingest: ingest.clone(),
            public_url: cfg.server.public_url.as_str().into(),
            tls: tls.is_some(),
        },
        store: store.clone(),
        player_dir: player_dir(&cfg.server.player_dir).map(Into::into),
        hls: origin::HlsOrigin::new(store.target_duration()),
        outputs: outputs.clone(),
        body_timeout: limits.body_timeout,
    };
    let expiry_store = store.clone();
    let expiry_outputs = outputs.clone();
    let expiry = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
        loop {
            tick.tick().await;
            for name in expiry_store.expire(Instant::now()) {
                expiry_outputs.forget(&name);
                info!(stream = %name, "ended stream expired");
            }
        }
    });
    info!(addr = %listener.local_addr()?, tls = tls.is_some(), "whipcast listening");
    let app = origin::router(state);
    let linger = cfg.server.shutdown_linger;
    let drain_timeout = cfg.cluster.drain_timeout;
    let in_cluster = cluster.is_some();
    let shutdown = async move {
        // In a cluster, `POST /api/drain` ends the node too (after its drain).
        tokio::select! {
            () = shutdown => {}
            () = ingest.drain_asked(), if in_cluster => {}
        }
        if in_cluster {
            // Drain: new publishes go to other nodes; the live streams go on until they
            // end or cluster.drain_timeout passes.
            ingest.drain();
            if !ingest.drained(drain_timeout).await {
                warn!("drain: streams still live after {drain_timeout:?}; ending them");
            }
        }
        info!("shutting down: ending every broadcast");
        ingest.shutdown().await;
        if !outputs.drain(OUTPUT_DRAIN_TIMEOUT).await {
            warn!(
                "recordings / uploads still writing after {OUTPUT_DRAIN_TIMEOUT:?}; left as they are"
            );
        }
        // The last publish_ended and recording_finished events, delivered or given up.
        if !hooks.drain(WEBHOOK_DRAIN_TIMEOUT).await {
            warn!("webhooks still queued after {WEBHOOK_DRAIN_TIMEOUT:?}; not delivered");
        }
        tokio::time::sleep(linger).await;
    };
    let result = origin::serve::serve(
        listener,
        app,
        tls,
        limits,
        store.metrics().http.clone(),
        shutdown,
    )
    .await;
    expiry.abort();
    if let Some(beat) = heartbeat {
        beat.abort();
    }
    if let Some(c) = cluster {
        c.leave().await;
    }
    result.map_err(RunError::from)
}

/// Descriptors kept for what is not an HTTP connection: per live stream its UDP sockets,
/// pipeline and output files; plus the process's own (logs, spill, TLS files).
const RESERVED_FDS_BASE: u64 = 64;
const RESERVED_FDS_PER_STREAM: u64 = 32;

/// Raises the soft descriptor limit to the hard one (as Go's runtime does at start) and
/// lowers `max_connections` to what then fits: a connection cap above the descriptor limit
/// would let idle clients take the descriptors WHIP, UDP and files need.
fn fit_to_descriptors(
    mut limits: config::LimitsConfig,
    max_streams: usize,
) -> config::LimitsConfig {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot read the descriptor limit; connection caps left as configured");
            return limits;
        }
    };
    let reserved = RESERVED_FDS_BASE + RESERVED_FDS_PER_STREAM * max_streams as u64;
    let fits = usize::try_from(soft.saturating_sub(reserved))
        .unwrap_or(usize::MAX)
        .max(16);
    if limits.max_connections > fits {
        warn!(
            configured = limits.max_connections,
            nofile = soft,
            used = fits,
            "limits.max_connections lowered to fit the descriptor limit (raise LimitNOFILE / ulimit -n)"
        );
        limits.max_connections = fits;
        limits.max_connections_per_client = limits.max_connections_per_client.min(fits);
    }
    limits
}

fn player_dir(configured: &str) -> Option<PathBuf> {
    let dir = if configured.is_empty() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("player")
    } else {
        PathBuf::from(configured)
    };
    dir.is_dir().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_name_every_cause() {
        let e = broadcast::EndReason::Media(media::MediaError::State {
            state: "PLAYING",
            source: media::StateError::TimedOut,
        });
        assert_eq!(
            error_chain(&e),
            "pipeline failed: pipeline state change to PLAYING failed: timed out (pipeline frozen)"
        );
    }

    #[test]
    fn stream_names() {
        assert!(StreamKey::parse("cam-1_A").is_some());
        assert!(StreamKey::parse(&"a".repeat(64)).is_some());
        assert!(StreamKey::parse(&"a".repeat(65)).is_none());
        assert!(StreamKey::parse("").is_none());
        assert!(StreamKey::parse("../etc").is_none());
        assert!(StreamKey::parse("a b").is_none());
        assert!(StreamKey::parse("é").is_none());
    }
}
