//! Parked blocking-reload client for `benches/origin.sh` (`make bench`, BENCHMARKS.md
//! "Origin throughput and parked requests"); `harness = false`.
//!
//! `origin park --base http://127.0.0.1:PORT --playlist /hls/NAME/RENDITION/index.m3u8
//! --pid PID [--requests N] [--connect-concurrency C] [--margin PARTS]` measures what N
//! parked LL-HLS blocking playlist reloads cost the whipcast process PID, and prints one
//! JSON line:
//!
//! 1. reads `VmRSS` of PID twice, 2 s apart (the baseline and its drift);
//! 2. opens N HTTP/1.1 connections to 127.0.0.1 (at most C connecting at once, so the
//!    listen backlog never overflows), waits 2 s, reads `VmRSS` (idle connections);
//! 3. reads the playlist once, and sends on every connection the same blocking reload
//!    `?_HLS_msn=M&_HLS_part=P` for the part the Advance Part Limit still allows, minus
//!    `margin` parts (HLS2 §6.2.5.2: floor(3 s / PART-TARGET) parts past the newest one), so
//!    it does not exist yet and appears about two seconds later;
//! 4. when every request is written (this client's count) and read by whipcast (the receive
//!    queues of all of whipcast's sockets on that port are empty in `/proc/net/tcp`) and no
//!    response has arrived, waits 0.5 s and reads `VmRSS`: the parked figure. If the part
//!    appears before that, the run fails rather than report a partial figure;
//! 5. sends one more request on a new connection: past `hls.max_blocking_requests` it must
//!    get a 503 at once;
//! 6. waits for every response (the part appears: 200 with a playlist listing it), counts
//!    the statuses, reads `VmRSS` again, closes the connections, and reads it once more.
//!
//! The parked connections are plain tokio sockets with a hand-written HTTP/1.1 request, so
//! the client knows when each request has been written (hyper's client does not say).
//! Responses are read by `Content-Length` (whipcast always sends it for these bodies).
//! With no command (e.g. under `cargo test --all-targets`) it prints usage and succeeds.

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const USAGE: &str = "usage: origin park --base http://127.0.0.1:PORT --playlist /hls/NAME/RENDITION/index.m3u8 --pid PID [--requests N] [--protocol h1|h2] [--streams-per-connection S] [--connect-concurrency C] [--margin PARTS]
(normally run by benches/origin.sh: `make bench`)";

/// Largest response head or body this client accepts (a playlist is a few kB).
const MAX_RESPONSE: usize = 1 << 20;
/// How long to wait for whipcast to have read every request before giving up.
const READ_DEADLINE: Duration = Duration::from_secs(10);
/// How long to wait for every parked request to be answered.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

struct Args {
    addr: SocketAddr,
    playlist: String,
    pid: u32,
    requests: usize,
    connect_concurrency: usize,
    margin: u64,
    /// HTTP/2 (h2c, prior knowledge) instead of HTTP/1.1.
    http2: bool,
    /// HTTP/2 only: parked streams per connection (hyper's server allows 200).
    streams_per_connection: usize,
}

fn parse(rest: &[String]) -> anyhow::Result<Args> {
    let (mut base, mut playlist, mut pid) = (None, None, None);
    let (mut requests, mut connect_concurrency, mut margin) = (10_000usize, 256usize, 2u64);
    let (mut http2, mut streams_per_connection) = (false, 100usize);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--base" => base = Some(v.clone()),
            "--playlist" => playlist = Some(v.clone()),
            "--pid" => pid = Some(v.parse()?),
            "--requests" => requests = v.parse()?,
            "--connect-concurrency" => connect_concurrency = v.parse()?,
            "--margin" => margin = v.parse()?,
            "--protocol" => {
                http2 = match v.as_str() {
                    "h1" => false,
                    "h2" => true,
                    _ => bail!("--protocol must be h1 or h2"),
                }
            }
            "--streams-per-connection" => streams_per_connection = v.parse()?,
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    let base = base.context("--base is required")?;
    let hostport = base
        .strip_prefix("http://")
        .context("--base must be http://127.0.0.1:PORT")?
        .trim_end_matches('/');
    let addr: SocketAddr = hostport.parse().context("--base must be http://IP:PORT")?;
    if !addr.ip().is_loopback() {
        bail!("--base must be a loopback address");
    }
    if !(1..=60_000).contains(&requests) || connect_concurrency == 0 || streams_per_connection == 0
    {
        bail!(
            "--requests must be 1..=60000, --connect-concurrency and --streams-per-connection > 0"
        );
    }
    Ok(Args {
        addr,
        playlist: playlist.context("--playlist is required")?,
        pid: pid.context("--pid is required")?,
        requests,
        connect_concurrency,
        margin,
        http2,
        streams_per_connection,
    })
}

/// `VmRSS` of a process, in kB.
fn vm_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// utime + stime of a process, in clock ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Established IPv4 sockets whose local port is `port` (the server's side of each
/// connection), and the sum of their receive queues (bytes not yet read by the server).
fn server_sockets(port: u16) -> anyhow::Result<(usize, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let want = format!(":{port:04X}");
    let (mut n, mut queued) = (0, 0);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(queues)) = (f.get(1), f.get(3), f.get(4)) else {
            continue;
        };
        if !local.ends_with(&want) || *state != "01" {
            continue;
        }
        n += 1;
        if let Some((_, rx)) = queues.split_once(':') {
            queued += u64::from_str_radix(rx, 16).unwrap_or(0);
        }
    }
    Ok((n, queued))
}

/// The part position a blocking request can wait for: `(msn, part)`, the target's total
/// index ahead of the newest listed part, and the playlist's PART-TARGET.
fn pick_target(playlist: &str, margin: u64) -> anyhow::Result<(u64, u64, u64, f64)> {
    let part_target: f64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .and_then(|v| v.trim().parse().ok())
        .context("no EXT-X-PART-INF:PART-TARGET (LL-HLS off?)")?;
    // Parts per segment: the most parts listed for one complete segment.
    let (mut per, mut run) = (0u64, 0u64);
    let mut newest = None;
    for line in playlist.lines() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-PART:") {
            run += 1;
            let uri = attrs
                .split("URI=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .context("EXT-X-PART without URI")?;
            // part-{epoch}-{msn}.{index}.m4s
            let stem = uri.strip_suffix(".m4s").context("part URI")?;
            let (head, index) = stem.rsplit_once('.').context("part URI index")?;
            let msn = head.rsplit_once('-').context("part URI msn")?.1;
            newest = Some((msn.parse::<u64>()?, index.parse::<u64>()?));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            per = per.max(run);
            run = 0;
        }
    }
    let (msn, index) = newest.context("no EXT-X-PART listed")?;
    if per == 0 {
        bail!("no complete segment with parts listed yet");
    }
    // HLS2 §6.2.5.2 and the store's check: at most floor(3 s / PART-TARGET) parts past the
    // newest one.
    let limit = if part_target < 1.0 {
        (3.0 / part_target) as u64
    } else {
        3
    };
    let ahead = limit.saturating_sub(margin).max(1);
    let total = msn * per + index + ahead;
    Ok((total / per, total % per, ahead, part_target))
}

/// One parsed response: status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 response with a `Content-Length` body.
async fn read_response(s: &mut TcpStream) -> anyhow::Result<Answer> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE {
            bail!("response head too large");
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before a response");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad status line")?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .context("response without Content-Length")?;
    if len > MAX_RESPONSE {
        bail!("response body too large");
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; len - body.len()];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed in the body");
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Answer { status, body })
}

fn request(addr: SocketAddr, target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: whipcast-origin-bench\r\n\r\n")
        .into_bytes()
}

/// A plain GET on a fresh connection (the playlist read, the over-limit probe).
async fn get(addr: SocketAddr, target: &str) -> anyhow::Result<Answer> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(&request(addr, target)).await?;
    read_response(&mut s).await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The parked connections: plain HTTP/1.1 sockets, or HTTP/2 senders.
enum Conns {
    H1(Vec<TcpStream>),
    H2(Vec<http2::SendRequest<String>>),
}

/// Opens `n` connections to `addr`, at most `concurrency` connecting at once.
async fn connect_all(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let conns: Vec<TcpStream> = futures::stream::iter(0..n)
        .map(|_| async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            std::io::Result::Ok(s)
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .context("connecting (raise ulimit -n?)")?;
    Ok(conns)
}

/// An HTTP/2 request's answer (the body read to its end).
async fn h2_answer(resp: hyper::Response<Incoming>) -> anyhow::Result<Answer> {
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(Answer { status, body: out })
}

/// One parked request's outcome: the answer, seconds from the send, and the socket to keep
/// open until the end (HTTP/1.1).
type Outcome = anyhow::Result<(Answer, f64, Option<TcpStream>)>;

async fn park(a: &Args) -> anyhow::Result<serde_json::Value> {
    let pid = a.pid;
    let tick = 100.0; // USER_HZ
    // 1. Baseline and drift.
    let rss_base0 = vm_rss_kb(pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_base = vm_rss_kb(pid)?;

    // 2. Idle connections: one per request (HTTP/1.1), or one per `streams_per_connection`
    //    requests (HTTP/2, h2c with prior knowledge).
    let addr = a.addr;
    let t_connect = Instant::now();
    let n_conns = if a.http2 {
        a.requests.div_ceil(a.streams_per_connection)
    } else {
        a.requests
    };
    let sockets = connect_all(addr, n_conns, a.connect_concurrency).await?;
    let conns = if a.http2 {
        let mut senders = Vec::with_capacity(sockets.len());
        for s in sockets {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(s))
                .await
                .context("HTTP/2 handshake")?;
            tokio::spawn(conn);
            senders.push(sender);
        }
        Conns::H2(senders)
    } else {
        Conns::H1(sockets)
    };
    let connect_s = t_connect.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (accepted, _) = server_sockets(addr.port())?;
    let rss_idle = vm_rss_kb(pid)?;

    // 3. One blocking reload per connection (stream), all for the same future part.
    let playlist = get(addr, &a.playlist).await?;
    if playlist.status != 200 {
        bail!("playlist {}: status {}", a.playlist, playlist.status);
    }
    let text = String::from_utf8_lossy(&playlist.body).to_string();
    let (msn, part, ahead, part_target) = pick_target(&text, a.margin)?;
    let target = format!("{}?_HLS_msn={msn}&_HLS_part={part}", a.playlist);
    let written = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let cpu0 = proc_ticks(pid);
    let t_send = Instant::now();
    let mut tasks: Vec<tokio::task::JoinHandle<Outcome>> = Vec::with_capacity(a.requests);
    let mut senders_kept = Vec::new();
    match conns {
        Conns::H1(sockets) => {
            let req = Arc::new(request(addr, &target));
            for mut c in sockets {
                let (req, written, answered) = (req.clone(), written.clone(), answered.clone());
                tasks.push(tokio::spawn(async move {
                    c.write_all(&req).await?;
                    written.fetch_add(1, Ordering::Relaxed);
                    let r = read_response(&mut c).await;
                    answered.fetch_add(1, Ordering::Relaxed);
                    Ok((r?, t_send.elapsed().as_secs_f64(), Some(c)))
                }));
            }
        }
        Conns::H2(senders) => {
            let uri = format!("http://{addr}{target}");
            for i in 0..a.requests {
                let mut sender = senders[i / a.streams_per_connection].clone();
                let req = hyper::Request::get(uri.as_str())
                    .header("user-agent", "whipcast-origin-bench")
                    .body(String::new())?;
                let (written, answered) = (written.clone(), answered.clone());
                tasks.push(tokio::spawn(async move {
                    // hyper queues the request at once; its connection task writes it.
                    let sent = sender.send_request(req);
                    written.fetch_add(1, Ordering::Relaxed);
                    let r = match sent.await {
                        Ok(resp) => h2_answer(resp).await,
                        Err(e) => Err(e.into()),
                    };
                    answered.fetch_add(1, Ordering::Relaxed);
                    Ok((r?, t_send.elapsed().as_secs_f64(), None))
                }));
            }
            senders_kept = senders;
        }
    }

    // 4. Everything written, read by whipcast, nothing answered: parked.
    let read_deadline = Instant::now() + READ_DEADLINE;
    let all_read_s = loop {
        let (n, queued) = server_sockets(addr.port())?;
        let done = written.load(Ordering::Relaxed);
        if answered.load(Ordering::Relaxed) > 0 {
            bail!(
                "a response arrived before every request was parked (written {done}, \
                 server sockets {n}, unread {queued} B): the part appeared too soon; \
                 lower --margin or the load"
            );
        }
        if done == a.requests && n >= n_conns && queued == 0 {
            break t_send.elapsed().as_secs_f64();
        }
        if Instant::now() > read_deadline {
            bail!(
                "whipcast did not read every request: written {done}, sockets {n}, unread {queued} B"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_parked = vm_rss_kb(pid)?;
    let parked_at_s = t_send.elapsed().as_secs_f64();
    let early = answered.load(Ordering::Relaxed);
    if early > 0 {
        bail!(
            "{early} responses arrived before the parked RSS was read: the part appeared too soon"
        );
    }
    let (cpu1, t_cpu) = (proc_ticks(pid), t_send.elapsed().as_secs_f64());

    // 5. One more request: with hls.max_blocking_requests = N, a 503 "too many blocking
    //    requests" at once proves that N requests are parked right now.
    let t_probe = Instant::now();
    let probe = tokio::time::timeout(Duration::from_secs(1), get(addr, &target)).await;
    let probe = match probe {
        Ok(Ok(r)) => json!({
            "status": r.status,
            "body": String::from_utf8_lossy(&r.body).trim(),
            "ms": (t_probe.elapsed().as_secs_f64() * 1e4).round() / 10.0,
            "before_release": answered.load(Ordering::Relaxed) == 0,
        }),
        Ok(Err(e)) => json!({ "error": format!("{e:#}") }),
        Err(_) => json!({ "status": null, "note": "no answer within 1 s (parked too)" }),
    };

    // 6. Release: the part appears.
    let answers = tokio::time::timeout(ANSWER_DEADLINE, futures::future::join_all(tasks))
        .await
        .map_err(|_| {
            anyhow!(
                "not every parked request was answered within {ANSWER_DEADLINE:?} ({} were)",
                answered.load(Ordering::Relaxed)
            )
        })?;
    let released_s = t_send.elapsed().as_secs_f64();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut waited = Vec::with_capacity(answers.len());
    let (mut errors, mut lists_part, mut first_error) = (0usize, 0usize, None);
    let part_line = format!("-{msn}.{part}.m4s\"");
    let mut kept = Vec::with_capacity(answers.len());
    for r in answers {
        match r.context("task")? {
            Ok((ans, w, c)) => {
                *statuses.entry(ans.status).or_default() += 1;
                if ans.status == 200 && String::from_utf8_lossy(&ans.body).contains(&part_line) {
                    lists_part += 1;
                }
                waited.push(w);
                kept.extend(c);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    waited.sort_by(f64::total_cmp);
    let rss_released = vm_rss_kb(pid)?;
    drop(kept);
    drop(senders_kept);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_closed = vm_rss_kb(pid)?;

    let n = a.requests as f64;
    let delta_kb = rss_parked as i64 - rss_base as i64;
    let delta_req_kb = rss_parked as i64 - rss_idle as i64;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(json!({
        "ok": errors == 0 && statuses.get(&200) == Some(&a.requests) && lists_part == a.requests,
        "protocol": if a.http2 { "h2c" } else { "http/1.1" },
        "requests": a.requests,
        "connections": n_conns,
        "target": target,
        "target_parts_ahead": ahead,
        "part_target_s": part_target,
        "connect_s": r3(connect_s),
        "server_sockets_after_connect": accepted,
        "all_written_and_read_s": r3(all_read_s),
        "rss_sampled_at_s": r3(parked_at_s),
        "released_s": r3(released_s),
        "rss_kb": {
            "baseline_minus_2s": rss_base0,
            "baseline": rss_base,
            "idle_connections": rss_idle,
            "parked": rss_parked,
            "after_release": rss_released,
            "after_close_2s": rss_closed,
        },
        "parked_delta_kb": delta_kb,
        "parked_delta_mb": r3(delta_kb as f64 / 1024.0),
        "bytes_per_parked_request": (delta_kb as f64 * 1024.0 / n).round(),
        "bytes_per_request_over_idle_connection": (delta_req_kb as f64 * 1024.0 / n).round(),
        "baseline_drift_kb_per_s": r3((rss_base as f64 - rss_base0 as f64) / 2.0),
        "whipcast_cores_while_parked": match (cpu0, cpu1) {
            (Some(x), Some(y)) if t_cpu > 0.0 => Some(r3((y - x) as f64 / tick / t_cpu)),
            _ => None,
        },
        "statuses": statuses,
        "responses_listing_the_part": lists_part,
        "errors": errors,
        "first_error": first_error,
        "wait_s": {
            "min": r3(percentile(&waited, 0.0)),
            "p50": r3(percentile(&waited, 0.5)),
            "max": r3(percentile(&waited, 1.0)),
        },
        "over_limit_probe": probe,
    }))
}

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; `cargo test` may pass harness flags: ignore both.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) != Some("park") {
        eprintln!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = parse(&args[1..]).and_then(|a| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?
            .block_on(park(&a))
    });
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("origin: {e:#}");
            println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            ExitCode::FAILURE
        }
    }
}
