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
//! The protocol is picked before hyper reads: a peek at a plain connection's first bytes
//! (not the HTTP/2 preface: HTTP/1), or TLS ALPN. HTTP/1 then goes to hyper's HTTP/1
//! server directly, which costs less memory per connection than hyper-util's detecting
//! builder; the rest (h2c, TLS with `h2`, too few bytes to tell) goes through that builder.
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
use axum::http::{HeaderValue, Uri, Version};
use bytes::BytesMut;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
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

/// The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's connection builders with the configured bounds: HTTP/1 on its own, and
/// hyper-util's auto-detecting one for the rest.
///
/// HTTP/1 goes straight to hyper's HTTP/1 server when the protocol is known before hyper
/// reads (a peek at the first bytes, or TLS ALPN), because of what the auto builder costs
/// per connection: it reads up to 24 bytes to look for the HTTP/2 preface and hands them
/// back as the first read of hyper's 8 KiB buffer; hyper then finds less than 8 KiB free
/// for its next read and reallocates the buffer to 16 KiB, copying all 8 KiB. That was
/// most of the 24.6 kB each parked HTTP/1.1 blocking reload cost (BENCHMARKS.md
/// "Parked HTTP/1.1 requests").
struct Builders {
    h1: hyper::server::conn::http1::Builder,
    auto: auto::Builder<TokioExecutor>,
}

fn builders(limits: &LimitsConfig) -> Builders {
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut b = auto::Builder::new(TokioExecutor::new());
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
    Builders { h1, auto: b }
}

/// How a connection is served, decided before hyper reads from it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    /// HTTP/1.x, by hyper's HTTP/1 server.
    Http1,
    /// hyper-util's auto builder: HTTP/2 with prior knowledge, TLS with ALPN `h2` or
    /// none, or too few bytes yet to tell.
    Auto,
}

impl Proto {
    /// The protocol the first bytes a client sent (at least one) announce.
    fn of_first_bytes(first: &[u8]) -> Proto {
        if first.is_empty() || H2_PREFACE.starts_with(first) {
            Proto::Auto
        } else {
            Proto::Http1
        }
    }

    /// The protocol a TLS connection negotiated.
    fn of_alpn(alpn: Option<&[u8]>) -> Proto {
        match alpn {
            Some(b"http/1.1") => Proto::Http1,
            _ => Proto::Auto,
        }
    }
}

/// Copies the URI and the header values of a request into one allocation of its own.
///
/// Over HTTP/1.1 hyper parses them as views into the connection's 8 KiB read buffer. hyper
/// reads again as soon as it has handed the request over (to notice a client that hangs
/// up), and while a view holds the buffer it cannot reuse it: it allocates another 8 KiB.
/// A blocking reload holds its request for seconds; detached, it holds ~200 bytes.
fn detach<B>(req: &mut hyper::Request<B>) {
    use std::fmt::Write as _;
    let values: usize = req.headers().values().map(HeaderValue::len).sum();
    let mut buf = BytesMut::with_capacity(values + req.uri().path().len() + 64);
    if write!(buf, "{}", req.uri()).is_err() {
        return;
    }
    let uri_len = buf.len();
    for v in req.headers().values() {
        buf.extend_from_slice(v.as_bytes());
    }
    let buf = buf.freeze();
    // Both parse what they parsed before; on the impossible failure the view is kept.
    if let Ok(uri) = Uri::from_maybe_shared(buf.slice(..uri_len)) {
        *req.uri_mut() = uri;
    }
    let mut at = uri_len;
    for v in req.headers_mut().values_mut() {
        let end = at + v.len();
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(buf.slice(at..end)) {
            copy.set_sensitive(v.is_sensitive());
            *v = copy;
        }
        at = end;
    }
}

/// Whether an HLS request may park: a blocking playlist reload (`_HLS_msn`) or a part,
/// which parks when it is the hinted next one (HLS2 §6.2.5.2, §6.2.6).
fn may_park<B>(req: &hyper::Request<B>) -> bool {
    req.uri().query().is_some_and(|q| q.contains("_HLS_msn="))
        || req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .is_some_and(|f| f.starts_with("part-"))
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
    let builders = Arc::new(builders(&limits));
    // Shutdown in two steps: `stop` asks every connection to finish gracefully (hyper
    // answers what is in flight, then closes; hyper-util's `GracefulShutdown` does the
    // same, but cannot watch an HTTP/1 connection with upgrades); every connection task
    // holds a receiver, so the sender sees them all gone. `close` ends what is left after
    // the grace period.
    let (stop_tx, stop_rx) = watch::channel(false);
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
            builders: Arc::clone(&builders),
            stop: stop_rx.clone(),
            close: close_rx.clone(),
            stats: stats.clone(),
            idle_timeout: limits.idle_timeout,
            header_timeout: limits.header_timeout,
            moved,
        };
        match &acceptor {
            None => {
                tokio::spawn(conn.serve_plain(io));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake = limits.header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, acceptor.accept(io)).await {
                        Ok(Ok(s)) => {
                            let proto = Proto::of_alpn(s.get_ref().1.alpn_protocol());
                            conn.run(s, proto).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(limits.shutdown_grace, stop_tx.closed())
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
    builders: Arc<Builders>,
    /// Becomes true when the server stops accepting: finish gracefully.
    stop: watch::Receiver<bool>,
    /// Becomes true when the shutdown grace period is over: close now.
    close: watch::Receiver<bool>,
    stats: HttpCounters,
    idle_timeout: Duration,
    header_timeout: Duration,
    moved: Arc<AtomicU64>,
}

impl Conn {
    /// Waits for the client's first bytes and peeks at them (they stay in the socket for
    /// hyper) to pick the protocol. `None`: close the connection (nothing within the header
    /// timeout, end of stream, shutdown).
    async fn sniff(&mut self, tcp: &TcpStream) -> Option<Proto> {
        let mut first = [0u8; H2_PREFACE.len()];
        let peer = self.peer;
        let r = tokio::select! {
            biased;
            r = tcp.peek(&mut first) => r,
            () = tokio::time::sleep(self.header_timeout) => {
                self.stats.closed(ClosedFor::header_timeout, 1);
                debug!(%peer, "no request within the header timeout; closing");
                return None;
            }
            () = tokio::time::sleep(self.idle_timeout) => {
                self.stats.closed(ClosedFor::idle, 1);
                debug!(%peer, "connection idle; closing");
                return None;
            }
            _ = self.stop.changed() => return None,
            _ = self.close.changed() => return None,
        };
        match r {
            Ok(0) => None,
            Ok(n) => Some(Proto::of_first_bytes(&first[..n])),
            Err(e) => {
                debug!(%peer, error = %e, "connection failed before its first request");
                None
            }
        }
    }

    /// A plain-TCP connection: sniffed, then served.
    async fn serve_plain(mut self, io: Tracked<TcpStream>) {
        let Some(proto) = self.sniff(&io.io).await else {
            return;
        };
        // Boxed, as the hyper connection in `run`: tokio copies a task's whole future when
        // it is spawned, and every byte of it stays resident while the connection lives.
        // Inline, this task was 6.3 kB; boxed, 1.3 kB until the client's first bytes
        // (an idle connection cost 5.3 kB of RSS inline, 1.8 kB boxed).
        Box::pin(self.run(io, proto)).await;
    }

    async fn run<I>(self, io: I, proto: Proto)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let app = self.app.clone();
        // Signalling handlers see the client's address as axum's `ConnectInfo` (per-client
        // limits, the auth callback). HLS requests, the hot path, never read it: they are
        // spared the extension map's allocation.
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            if !req.uri().path().starts_with("/hls/") {
                req.extensions_mut().insert(ConnectInfo(peer));
            } else if req.version() <= Version::HTTP_11 && may_park(&req) {
                // Here, synchronously in hyper's `call`: before hyper's next read. Not over
                // HTTP/2, where the request is not a view of a per-connection read buffer
                // the same way (10 000 parked h2c streams: 65.3 MB without it, 67.6 MB
                // with it).
                detach(&mut req);
            }
            // The router's own future, not an `async` block around it (which would hold the
            // router and the request beside it): hyper keeps this future in a box it
            // allocates per connection, 320 bytes instead of 600.
            app.clone().call(req)
        });
        let builders = Arc::clone(&self.builders);
        match proto {
            Proto::Http1 => {
                let conn = Box::pin(
                    builders
                        .h1
                        .serve_connection(TokioIo::new(io), service)
                        .with_upgrades(),
                );
                self.drive(conn, |c| c.get_mut().as_mut().graceful_shutdown())
                    .await;
            }
            Proto::Auto => {
                let conn = Box::pin(
                    builders
                        .auto
                        .serve_connection_with_upgrades(TokioIo::new(io), service),
                );
                self.drive(conn, |c| c.get_mut().as_mut().graceful_shutdown())
                    .await;
            }
        }
    }

    /// Runs a connection until it ends, is idle for too long, or the server shuts down.
    async fn drive<C, E>(self, conn: C, graceful: fn(Pin<&mut C>))
    where
        C: Future<Output = Result<(), E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Conn {
            peer,
            mut stop,
            mut close,
            stats,
            idle_timeout,
            moved,
            ..
        } = self;
        tokio::pin!(conn);
        let mut stopping = *stop.borrow();
        if stopping {
            graceful(conn.as_mut());
        }
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
                        let e: Box<dyn std::error::Error + Send + Sync> = e.into();
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
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    graceful(conn.as_mut());
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
    fn protocol_from_first_bytes_and_alpn() {
        assert_eq!(Proto::of_first_bytes(b"GET / HTTP/1.1\r\n"), Proto::Http1);
        // POST shares its first letter with the preface's PRI.
        assert_eq!(Proto::of_first_bytes(b"POST /whip/a"), Proto::Http1);
        assert_eq!(Proto::of_first_bytes(b"P"), Proto::Auto);
        assert_eq!(Proto::of_first_bytes(b"PRI * HT"), Proto::Auto);
        assert_eq!(Proto::of_first_bytes(H2_PREFACE), Proto::Auto);
        assert_eq!(Proto::of_alpn(Some(b"http/1.1")), Proto::Http1);
        assert_eq!(Proto::of_alpn(Some(b"h2")), Proto::Auto);
        assert_eq!(Proto::of_alpn(None), Proto::Auto);
    }

    #[test]
    fn detach_copies_uri_and_headers_out_of_the_read_buffer() {
        // A stand-in for hyper's read buffer: the URI and values are views into it.
        let wire =
            bytes::Bytes::from_static(b"/hls/a/v/index.m3u8?_HLS_msn=7&_HLS_part=1gzip\"e\"");
        let mut req = hyper::Request::new(());
        *req.uri_mut() = Uri::from_maybe_shared(wire.slice(..42)).expect("uri");
        req.headers_mut().insert(
            axum::http::header::ACCEPT_ENCODING,
            HeaderValue::from_maybe_shared(wire.slice(42..46)).expect("value"),
        );
        let mut sensitive = HeaderValue::from_maybe_shared(wire.slice(46..)).expect("value");
        sensitive.set_sensitive(true);
        req.headers_mut()
            .append(axum::http::header::IF_NONE_MATCH, sensitive);
        assert!(may_park(&req));
        let before = req.clone();
        detach(&mut req);
        assert_eq!(req.uri(), before.uri());
        assert_eq!(req.headers(), before.headers());
        assert!(req.headers()[axum::http::header::IF_NONE_MATCH].is_sensitive());
        // Nothing left pointing into the old buffer.
        let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
        let uri_at = req.uri().path().as_ptr() as usize;
        assert!(!range.contains(&uri_at));
        for v in req.headers().values() {
            assert!(!range.contains(&(v.as_bytes().as_ptr() as usize)));
        }
    }

    #[test]
    fn which_requests_may_park() {
        let req = |uri: &str| {
            let mut r = hyper::Request::new(());
            *r.uri_mut() = uri.parse().expect("uri");
            r
        };
        assert!(may_park(&req("/hls/a/v/index.m3u8?_HLS_msn=3")));
        assert!(may_park(&req("/hls/a/v/part-e-3.1.m4s")));
        assert!(!may_park(&req("/hls/a/v/index.m3u8")));
        assert!(!may_park(&req("/hls/a/v/seg-e-3.m4s")));
        assert!(!may_park(&req("/hls/a/master.m3u8?x=_HLS_msn")));
    }

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
