//! The HTTP server edge: one accept loop for plain HTTP and HTTPS that bounds what a
//! client may hold.
//!
//! Every connection takes a slot (a global cap and a cap per client address; over either,
//! a plain-HTTP client gets a canned `503` and is closed, a TLS client is closed); the slot
//! lives as long as the socket, WebSocket upgrades included. Request headers must arrive
//! within `header_timeout` of the server waiting for them (hyper's timer: slowloris and
//! idle keep-alive both end there); a connection that moves no byte either way for
//! `idle_timeout` is closed whatever it is doing (an HTTP/2 connection without streams, an
//! h2c preface that never completes, a stalled transfer). HTTP/2 gets a cap on concurrent
//! streams and hyper's reset-flood guards.
//!
//! On shutdown the loop stops accepting, lets open connections finish for
//! `shutdown_grace`, then closes what is left, so a half-open client cannot keep the
//! process alive.
//!
//! Never blocks: the per-client table is a short `std` lock taken once per accept and
//! once per close.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::{debug, info, warn};

use crate::client::ClientId;
use crate::config::LimitsConfig;
use crate::metrics::{ClosedFor, HttpCounters, RefusedBy};

/// Sent to a plain-HTTP client refused for the connection caps (RFC 9110 §15.6.4: 503
/// with `Retry-After` for a temporary overload), then the socket is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 21\r\n\
Retry-After: 5\r\n\
Cache-Control: no-store\r\n\
Connection: close\r\n\r\n\
too many connections\n";

/// After a failed `accept` (out of descriptors, typically), wait this long before the
/// next one instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most one warning about refused connections or accept errors per this interval; the
/// counters in `/metrics` have every one.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts open connections, globally and per client; hands out [`Slot`]s.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    per_client: usize,
    clients: Mutex<HashMap<ClientId, usize>>,
    stats: HttpCounters,
}

impl Admission {
    /// An admission with these caps, counting into `stats`.
    pub fn new(max: usize, per_client: usize, stats: HttpCounters) -> Arc<Admission> {
        Arc::new(Admission {
            max,
            per_client,
            clients: Mutex::new(HashMap::new()),
            stats,
        })
    }

    /// Takes a slot for a connection from `client`, or says which cap refuses it.
    pub fn admit(self: &Arc<Self>, client: ClientId) -> Result<Slot, RefusedBy> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if usize::try_from(self.stats.open.get()).unwrap_or(0) >= self.max {
            self.stats.refused(RefusedBy::global);
            return Err(RefusedBy::global);
        }
        let held = clients.entry(client).or_insert(0);
        if *held >= self.per_client {
            self.stats.refused(RefusedBy::per_client);
            return Err(RefusedBy::per_client);
        }
        *held += 1;
        self.stats.open.inc();
        self.stats.accepted.inc();
        Ok(Slot {
            admission: Arc::clone(self),
            client,
        })
    }

    /// Connections `client` holds now.
    pub fn held_by(&self, client: ClientId) -> usize {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.get(&client).copied().unwrap_or(0)
    }
}

/// One admitted connection; released when dropped (with the socket it travels with).
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    client: ClientId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut clients = self
            .admission
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = clients.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                clients.remove(&self.client);
            }
        }
        self.admission.stats.open.dec();
    }
}

/// A socket that counts the reads and writes that moved bytes (the idle watch compares
/// counts, so the hot path reads no clock), and carries its [`Slot`].
struct Tracked<T> {
    io: T,
    /// I/O calls that moved at least one byte; 0 until the first did (a server writes only
    /// after it read: a TLS ServerHello, HTTP/2's SETTINGS, a response).
    moved: Arc<AtomicU64>,
    _slot: Slot,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        self.moved.fetch_add(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A warning at most once per [`WARN_EVERY`].
#[derive(Default)]
struct Throttle(Mutex<Option<Instant>>);

impl Throttle {
    fn ready(&self, now: Instant) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < WARN_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// The hyper connection builder with the configured bounds.
fn builder(limits: &LimitsConfig) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        // Rapid reset (CVE-2023-44487): streams a client opens and resets before they are
        // accepted, and streams our own errors reset, are bounded; past either, the
        // connection is closed with GOAWAY.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024))
        // A peer that stops answering PINGs is gone (HTTP/2 connections can sit without
        // streams, where no header timeout applies).
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.header_timeout);
    b
}

/// Serves `app` on `listener` (TLS when `tls` is set) until `shutdown` resolves, then
/// drains for `limits.shutdown_grace` and closes whatever is left.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: LimitsConfig,
    stats: HttpCounters,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let admission = Admission::new(
        limits.max_connections,
        limits.max_connections_per_client,
        stats.clone(),
    );
    let acceptor = tls.map(TlsAcceptor::from);
    let builder = Arc::new(builder(&limits));
    let graceful = GracefulShutdown::new();
    let (close_tx, close_rx) = watch::channel(false);
    let throttle = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    stats.accept_errors.inc();
                    if throttle.ready(Instant::now()) {
                        warn!(error = %e, "accept failed; backing off");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let client = ClientId::of(peer.ip());
        let slot = match admission.admit(client) {
            Ok(s) => s,
            Err(why) => {
                if throttle.ready(Instant::now()) {
                    warn!(%client, reason = ?why, open = stats.open.get(),
                        "connection refused: too many connections");
                }
                if acceptor.is_none() {
                    // One non-blocking attempt; a client that does not read it just sees
                    // the close.
                    let _ = tcp.try_write(REFUSAL);
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let moved = Arc::new(AtomicU64::new(0));
        let io = Tracked {
            io: tcp,
            moved: Arc::clone(&moved),
            _slot: slot,
        };
        let conn = Conn {
            peer,
            app: app.clone(),
            builder: Arc::clone(&builder),
            watcher: graceful.watcher(),
            close: close_rx.clone(),
            stats: stats.clone(),
            idle_timeout: limits.idle_timeout,
            header_timeout: limits.header_timeout,
            moved,
        };
        match &acceptor {
            None => {
                tokio::spawn(conn.run(io));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake = limits.header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                        Ok(Ok(s)) => conn.run(s).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        let open = stats.open.get();
        info!(
            open,
            grace = ?limits.shutdown_grace,
            "connections still open after the shutdown grace period; closing them"
        );
        stats.closed(ClosedFor::shutdown, u64::try_from(open).unwrap_or(0));
        let _ = close_tx.send(true);
        // Let the connection tasks see the signal and drop their sockets.
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// One accepted connection and what it needs to run.
struct Conn {
    peer: SocketAddr,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    close: watch::Receiver<bool>,
    stats: HttpCounters,
    idle_timeout: Duration,
    header_timeout: Duration,
    moved: Arc<AtomicU64>,
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    async fn run<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            peer,
            app,
            builder,
            watcher,
            mut close,
            stats,
            idle_timeout,
            header_timeout,
            moved,
        } = self;
        // Signalling handlers see the client's address as axum's `ConnectInfo` (per-client
        // limits, the auth callback). HLS requests, the hot path, never read it: they are
        // spared the extension map's allocation.
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            if !req.uri().path().starts_with("/hls/") {
                req.extensions_mut().insert(ConnectInfo(peer));
            }
            let mut app = app.clone();
            async move { app.call(req).await }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = watcher.watch(conn);
        tokio::pin!(conn);
        // Until the first byte arrives, hyper is still choosing HTTP/1 or HTTP/2 and its
        // header timer has not started: a client that sends nothing is closed here.
        let mut first_byte = Some(tokio::time::Instant::now() + header_timeout);
        // Idle: no I/O between two checks one idle_timeout apart (so a connection is closed
        // after one to two idle_timeouts of silence).
        let mut idle_check =
            tokio::time::interval_at(tokio::time::Instant::now() + idle_timeout, idle_timeout);
        let mut seen = 0;
        loop {
            tokio::select! {
                biased;
                r = &mut conn => {
                    if let Err(e) = r {
                        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                            stats.closed(ClosedFor::header_timeout, 1);
                        }
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = idle_check.tick() => {
                    let now = moved.load(Ordering::Relaxed);
                    if now == seen {
                        stats.closed(ClosedFor::idle, 1);
                        debug!(%peer, "connection idle; closing");
                        return;
                    }
                    seen = now;
                }
                () = sleep_until_some(first_byte) => {
                    first_byte = None;
                    if moved.load(Ordering::Relaxed) == 0 {
                        stats.closed(ClosedFor::header_timeout, 1);
                        debug!(%peer, "no request within the header timeout; closing");
                        return;
                    }
                }
                r = close.changed() => {
                    if r.is_err() || *close.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_global_release_on_drop() {
        let stats = HttpCounters::default();
        let adm = Admission::new(3, 2, stats.clone());
        let a = ClientId::of("192.0.2.1".parse().expect("ip"));
        let b = ClientId::of("192.0.2.2".parse().expect("ip"));
        let a1 = adm.admit(a).expect("first");
        let a2 = adm.admit(a).expect("second");
        assert_eq!(
            adm.admit(a).expect_err("over the client cap"),
            RefusedBy::per_client
        );
        let b1 = adm.admit(b).expect("other client");
        assert_eq!(
            adm.admit(b).expect_err("over the global cap"),
            RefusedBy::global
        );
        assert_eq!(stats.open.get(), 3);
        drop(a1);
        assert_eq!(adm.held_by(a), 1);
        let _b2 = adm.admit(b).expect("a slot was freed");
        drop((a2, b1));
        assert_eq!(adm.held_by(a), 0);
        assert_eq!(stats.refusals(RefusedBy::per_client), 1);
        assert_eq!(stats.refusals(RefusedBy::global), 1);
    }
}
