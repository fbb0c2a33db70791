//! whipcast behind a CDN shield: Debian's nginx running deploy/nginx/whipcast-shield.conf
//! in front of a live origin, 200 concurrent players (plain reloads and LL-HLS blocking
//! reloads, like hls.js) for 15 s. Checks that the origin sees about one request per
//! object (request collapsing + the origin's cache headers), that the shield never serves
//! two different bodies under one name, and that a re-publish on the same stream name
//! reaches viewers through the shield with only new-epoch names and origin-identical bytes.
//!
//! Needs `nginx` (deploy/install-deps.sh). Run like every test, in the loopback-only
//! namespace: `cargo test --test cdn_shield --no-run` then
//! `bash deploy/netns-run.sh cargo test --offline --test cdn_shield -- --nocapture`.
//! Two CDN hazards a live origin can cause are checked and fail the test: an ENDLIST
//! playlist cached across a re-publish, and a cached blocking response answering for a
//! later broadcast of the same name.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ll::LlPlaylist;
use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, resolve, test_config};

/// The shipped shield configuration, used as a template.
const TEMPLATE: &str = include_str!("../deploy/nginx/whipcast-shield.conf");
const STREAM: &str = "s";
const PLAYERS: usize = 200;
const POLL_FOR: Duration = Duration::from_secs(15);

/// Debian's nginx as a child process, stopped (and its directory removed) on drop, also
/// when the test panics.
struct Nginx {
    child: Child,
    dir: PathBuf,
    conf: PathBuf,
    bin: String,
    base: String,
}

fn nginx_bin() -> String {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return p.to_string();
        }
    }
    "nginx".to_string()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Replaces `from` (which must occur exactly once in the template) by `to`.
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the shield template no longer contains `{from}` exactly once"
    );
    text.replace(from, to)
}

impl Nginx {
    fn start(origin_port: u16) -> Nginx {
        let dir = std::env::temp_dir().join(format!(
            "whipcast-cdn-shield-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let port = free_port();
        let mut site = substitute(
            TEMPLATE,
            "server 127.0.0.1:8080;",
            &format!("server 127.0.0.1:{origin_port};"),
        );
        site = substitute(&site, "listen 8081;", &format!("listen 127.0.0.1:{port};"));
        site = substitute(&site, "/var/cache/nginx/whipcast", &format!("{d}/cache"));
        site = substitute(
            &site,
            "access_log /var/log/nginx/whipcast-shield.access.log whipcast_shield;",
            &format!("access_log {d}/access.log cdntest;"),
        );
        let conf_text = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\n\
             error_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             access_log off;\n\
             log_format cdntest '$request_uri $upstream_cache_status $status $upstream_status $request_time';\n\
             {site}\n}}\n"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, conf_text).unwrap();
        let bin = nginx_bin();
        let child = Command::new(&bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {bin} ({e}); install it with deploy/install-deps.sh")
            });
        Nginx {
            child,
            dir,
            conf,
            bin,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until the shield answers `/healthz` (passed through to the origin).
    async fn wait_up(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("nginx exited with {st}: {}", self.error_log());
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not come up: {}", self.error_log());
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Fast shutdown of the master and its workers (SIGTERM via the pid file); SIGKILL
        // on the master only if that does not work.
        let _ = Command::new(&self.bin)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Body of a playlist response, gunzipped when the shield sent gzip.
async fn playlist_text(r: reqwest::Response) -> String {
    let gz = r
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = r.bytes().await.unwrap();
    if gz {
        let mut s = String::new();
        flate2::read::GzDecoder::new(body.as_ref())
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    }
}

/// The next part a player asks for with `_HLS_msn`/`_HLS_part` (as hls.js does): the one
/// after the newest listed part, or part 0 of the next segment when that segment is done.
fn next_part(p: &LlPlaylist) -> Option<(u64, usize)> {
    let (msn, idx) = p.last_part()?;
    if p.segments.last().is_some_and(|s| s.msn >= msn) {
        Some((msn + 1, 0))
    } else {
        Some((msn, idx + 1))
    }
}

/// The broadcast epoch in a media name: `seg-{epoch}-{n}.m4s`, `part-{epoch}-{n}.{i}.m4s`,
/// `init-{epoch}.mp4`.
fn epoch_of(uri: &str) -> Option<String> {
    let name = uri.rsplit('/').next()?;
    if let Some(rest) = name.strip_prefix("init-") {
        return Some(rest.strip_suffix(".mp4")?.to_string());
    }
    let rest = name
        .strip_prefix("seg-")
        .or_else(|| name.strip_prefix("part-"))?;
    Some(rest.split('-').next()?.to_string())
}

/// Every media name a playlist refers to.
fn media_uris(p: &LlPlaylist) -> Vec<String> {
    p.segments
        .iter()
        .map(|s| s.uri.clone())
        .chain(p.parts.iter().map(|x| x.uri.clone()))
        .chain(p.map_uri.clone())
        .chain(p.hints.iter().cloned())
        .collect()
}

fn epochs(p: &LlPlaylist) -> HashSet<String> {
    media_uris(p).iter().filter_map(|u| epoch_of(u)).collect()
}

/// The broadcast at the live edge: its `EXT-X-MAP` is the last one. (A re-published name
/// first lists the previous broadcast's last segments, then `EXT-X-DISCONTINUITY` and the
/// new broadcast's map, segments and parts.)
fn edge_epoch(p: &LlPlaylist) -> Option<String> {
    p.map_uri.as_deref().and_then(epoch_of)
}

/// A playlist across a re-publish: the previous broadcast's segments (if any) strictly
/// before the discontinuity, everything from it on of the live broadcast.
fn assert_one_edge(p: &LlPlaylist, what: &str) {
    let edge = edge_epoch(p).expect("EXT-X-MAP");
    let boundary = p.discontinuity_at.unwrap_or(0);
    for s in &p.segments {
        let e = epoch_of(&s.uri).unwrap();
        if s.msn < boundary {
            assert_ne!(e, edge, "{what}: {} before the discontinuity", s.uri);
        } else {
            assert_eq!(e, edge, "{what}: {} after the discontinuity", s.uri);
        }
    }
    for u in p.parts.iter().map(|x| &x.uri).chain(&p.hints) {
        assert_eq!(epoch_of(u).as_deref(), Some(edge.as_str()), "{what}: {u}");
    }
    assert!(p.maps.len() <= 2, "{what}: {:?}", p.maps);
    assert_eq!(
        p.maps.len() == 2,
        p.discontinuity_at.is_some(),
        "{what}: {:?}",
        p.maps
    );
}

#[derive(Default)]
struct Shared {
    requests: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Media URL → (hash, length) of the first body seen; a different body later is a bug.
    bodies: Mutex<HashMap<String, (u64, usize)>>,
    inconsistent: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }

    fn media(&self, url: &str, body: &[u8]) {
        let h = (hash(body), body.len());
        let mut m = self.bodies.lock().unwrap();
        match m.get(url) {
            Some(prev) if *prev != h => self
                .inconsistent
                .lock()
                .unwrap()
                .push(format!("{url}: {prev:?} then {h:?}")),
            Some(_) => {}
            None => {
                m.insert(url.to_string(), h);
            }
        }
    }
}

/// One player: reloads its rendition's playlist through the shield and fetches the newest
/// segment (plain reloads, every ½ s) or part (LL-HLS blocking reloads for the next part)
/// it lists. LL players send `_HLS_msn`, `_HLS_part` and `_HLS_skip=YES`, in that (UTF-8)
/// order, as hls.js does when the playlist advertises CAN-SKIP-UNTIL.
async fn player(
    id: usize,
    http: reqwest::Client,
    playlist: String,
    shared: Arc<Shared>,
    until: Instant,
) {
    let ll = id.is_multiple_of(2);
    let mut next: Option<(u64, usize)> = None;
    while Instant::now() < until {
        let url = match (ll, next) {
            (true, Some((m, p))) => format!("{playlist}?_HLS_msn={m}&_HLS_part={p}&_HLS_skip=YES"),
            _ => playlist.clone(),
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let r = match http
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                shared.error(format!("playlist: {e}"));
                next = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if r.status() != 200 {
            shared.error(format!("playlist {}", r.status()));
            next = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let pl = LlPlaylist::parse(&playlist_text(r).await);
        let newest = if ll {
            pl.parts.last().map(|p| p.uri.clone())
        } else {
            pl.segments.last().map(|s| s.uri.clone())
        };
        if let Some(uri) = newest {
            let media = resolve(&playlist, &uri);
            shared.requests.fetch_add(1, Ordering::Relaxed);
            match http.get(&media).send().await {
                Ok(r) if r.status() == 200 => match r.bytes().await {
                    Ok(b) => shared.media(&media, &b),
                    Err(e) => shared.error(format!("media body: {e}")),
                },
                Ok(r) => shared.error(format!("media {}", r.status())),
                Err(e) => shared.error(format!("media: {e}")),
            }
        }
        if ll && !pl.ended {
            next = next_part(&pl);
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// One access-log line: `$request_uri $upstream_cache_status $status $upstream_status
/// $request_time`.
struct LogLine {
    uri: String,
    cache: String,
    status: u16,
    /// The origin was asked (nginx has an upstream status for the request).
    origin: bool,
    secs: f64,
}

fn parse_log(text: &str) -> Vec<LogLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() < 5 {
                return None;
            }
            // $upstream_status may list several attempts ("502, 200"); the last field is
            // the request time.
            let secs = f[f.len() - 1].parse().ok()?;
            let upstream = f[3..f.len() - 1].join(" ");
            Some(LogLine {
                uri: f[0].to_string(),
                cache: f[1].to_string(),
                status: f[2].parse().ok()?,
                origin: upstream != "-",
                secs,
            })
        })
        .collect()
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Fetches a playlist through the shield, or directly from the origin.
async fn get_playlist(http: &reqwest::Client, url: &str) -> (u16, String, LlPlaylist) {
    let r = http
        .get(url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let cc = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = playlist_text(r).await;
    let pl = if code == 200 {
        LlPlaylist::parse(&text)
    } else {
        LlPlaylist::default()
    };
    (code, cc, pl)
}

async fn bytes(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_shield_collapses_and_survives_republish() {
    let started = Instant::now();
    let gw = TestGateway::start(test_config("")).await;
    let origin_port: u16 = gw.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut nginx = Nginx::start(origin_port);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(PLAYERS + 16)
        .build()
        .unwrap();
    nginx.wait_up(&http).await;

    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url(STREAM)).with_format(320, 180, 30))
            .await
            .unwrap();
    let master = gw
        .wait_master(STREAM, 1, Duration::from_secs(30))
        .await
        .unwrap();
    let master_path = format!("/hls/{STREAM}/master.m3u8");
    // Every rendition a player may pick: the video variants and the audio rendition(s).
    let renditions: Vec<String> = master
        .variants
        .iter()
        .map(|v| v.uri.clone())
        .chain(master.alternatives.iter().filter_map(|a| a.uri.clone()))
        .collect();
    let origin_playlists: Vec<String> = renditions
        .iter()
        .map(|u| resolve(&gw.url(&master_path), u))
        .collect();
    let shield_playlists: Vec<String> = renditions
        .iter()
        .map(|u| resolve(&nginx.url(&master_path), u))
        .collect();
    for u in &origin_playlists {
        gw.wait_segments(u, 2, Duration::from_secs(20))
            .await
            .unwrap();
    }
    eprintln!(
        "cdn_shield: origin live after {:.1}s; renditions {renditions:?}; shield {}",
        started.elapsed().as_secs_f64(),
        nginx.base
    );

    // ---- 200 players through the shield for 15 s ----
    let shared = Arc::new(Shared::default());
    let until = Instant::now() + POLL_FOR;
    let tasks: Vec<_> = (0..PLAYERS)
        .map(|i| {
            tokio::spawn(player(
                i,
                http.clone(),
                shield_playlists[(i / 2) % shield_playlists.len()].clone(),
                Arc::clone(&shared),
                until,
            ))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let log = parse_log(&nginx.access_log());
    let hls: Vec<&LogLine> = log.iter().filter(|l| l.uri.starts_with("/hls/")).collect();
    let client_requests = hls.len();
    let origin_requests = hls.iter().filter(|l| l.origin).count();
    let ratio = client_requests as f64 / origin_requests.max(1) as f64;
    // Per object: how often the origin was asked for it.
    #[derive(Default)]
    struct Obj {
        client: usize,
        origin: usize,
    }
    let mut objects: BTreeMap<&str, Obj> = BTreeMap::new();
    for l in &hls {
        let o = objects.entry(l.uri.as_str()).or_default();
        o.client += 1;
        o.origin += usize::from(l.origin);
    }
    let class = |uri: &str| {
        if uri.ends_with(".m4s") || uri.ends_with(".mp4") {
            "media"
        } else if uri.contains("_HLS_msn=") {
            "blocking playlist"
        } else {
            "playlist"
        }
    };
    eprintln!(
        "cdn_shield: {PLAYERS} players, {:.0}s: {client_requests} requests to the shield \
         ({} counted by the players), {origin_requests} reached the origin: {ratio:.1} \
         client requests per origin request",
        POLL_FOR.as_secs_f64(),
        shared.requests.load(Ordering::Relaxed)
    );
    let mut media_max = 0;
    let mut media_mean = 0.0;
    for kind in ["media", "blocking playlist", "playlist"] {
        let objs: Vec<(&&str, &Obj)> = objects.iter().filter(|(u, _)| class(u) == kind).collect();
        let n = objs.len();
        let client: usize = objs.iter().map(|(_, o)| o.client).sum();
        let origin: usize = objs.iter().map(|(_, o)| o.origin).sum();
        let max = objs.iter().map(|(_, o)| o.origin).max().unwrap_or(0);
        let multi = objs.iter().filter(|(_, o)| o.origin > 1).count();
        let mean = origin as f64 / n.max(1) as f64;
        eprintln!(
            "cdn_shield:   {kind:>17}: {n} objects, {client} client / {origin} origin requests \
             ({:.1}x), origin fetches per object mean {mean:.3} max {max} ({multi} fetched \
             more than once)",
            client as f64 / origin.max(1) as f64
        );
        if kind == "media" {
            media_max = max;
            media_mean = mean;
            for (u, o) in objs.iter().filter(|(_, o)| o.origin > 1).take(5) {
                eprintln!(
                    "cdn_shield:     media fetched {}x from the origin: {u}",
                    o.origin
                );
            }
        }
    }
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for l in &hls {
        *by_status
            .entry(format!("{} {}", l.status, l.cache))
            .or_default() += 1;
    }
    eprintln!("cdn_shield:   status/cache: {by_status:?}");
    // What a collapsed blocking request costs: nginx re-checks a held cache lock every
    // 500 ms, so waiters are answered on that grid, not when the fill completes.
    // A HIT that took more than 10 ms waited on another request's fill.
    type Pick = fn(f64) -> bool;
    let kinds: [(&str, &str, Pick); 4] = [
        ("MISS (filled from the origin)", "MISS", |_| true),
        ("HIT, already stored", "HIT", |t| t < 0.01),
        ("HIT after waiting on the lock", "HIT", |t| t >= 0.01),
        ("EXPIRED", "EXPIRED", |_| true),
    ];
    for (label, cache, pick) in kinds {
        let mut t: Vec<f64> = hls
            .iter()
            .filter(|l| l.uri.contains("_HLS_msn=") && l.cache == cache && l.status == 200)
            .map(|l| l.secs)
            .filter(|t| pick(*t))
            .collect();
        if !t.is_empty() {
            let n = t.len();
            eprintln!(
                "cdn_shield:   blocking reloads, {label}: n={n} p50 {:.3}s p90 {:.3}s p99 \
                 {:.3}s max {:.3}s",
                percentile(&mut t, 0.5),
                percentile(&mut t, 0.9),
                percentile(&mut t, 0.99),
                percentile(&mut t, 1.0)
            );
        }
    }
    let errors = shared.errors.lock().unwrap().clone();
    let error_count: u64 = errors.values().sum();
    eprintln!("cdn_shield:   player errors: {errors:?}");

    let inconsistent = shared.inconsistent.lock().unwrap().clone();
    assert!(
        inconsistent.is_empty(),
        "the shield served different bodies under one name: {inconsistent:?}"
    );
    assert!(
        media_mean <= 1.1 && media_max <= 2,
        "media reached the origin {media_mean:.3} times per object on average (max \
         {media_max}); the shield should collapse them to one"
    );
    assert!(
        ratio >= 40.0,
        "only {ratio:.1} client requests per origin request"
    );
    assert!(
        (error_count as f64) < 0.01 * client_requests as f64,
        "players saw errors: {errors:?}"
    );
    let old_bodies: HashSet<u64> = shared
        .bodies
        .lock()
        .unwrap()
        .values()
        .map(|(h, _)| *h)
        .collect();

    // ---- Reconnect: stop, publish again under the same name ----
    let check = 0; // the rendition checked for the new epoch
    let hazard = shield_playlists.len() - 1; // the rendition a player reads across the gap
    let (_, _, before) = get_playlist(&http, &origin_playlists[check]).await;
    let old_epochs = epochs(&before);
    assert_eq!(old_epochs.len(), 1, "one epoch while live: {old_epochs:?}");
    let old_epoch = old_epochs.into_iter().next().unwrap();
    assert_eq!(publisher.stop().await.unwrap(), 200);
    // A player still polling across the gap: it reads the ended playlist (ENDLIST) through
    // the shield, which stores it for the origin's max-age.
    let gap_until = Instant::now() + Duration::from_secs(4);
    let (code, ended_cc, ended) = loop {
        let got = get_playlist(&http, &shield_playlists[hazard]).await;
        if got.2.ended || Instant::now() > gap_until {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "cdn_shield: after DELETE, {} through the shield: {code}, ENDLIST {}, Cache-Control \
         `{ended_cc}`",
        renditions[hazard], ended.ended
    );
    let republished_at = Instant::now();
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url(STREAM)).with_format(320, 180, 30))
            .await
            .unwrap();

    // Poll the checked rendition through the shield until the new broadcast has segments.
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut seen_new = false;
    let fresh = loop {
        assert!(
            Instant::now() < deadline,
            "the new broadcast did not show through the shield"
        );
        let (code, _, pl) = get_playlist(&http, &shield_playlists[check]).await;
        if code == 200 {
            assert_one_edge(&pl, "through the shield");
            match edge_epoch(&pl) {
                Some(e) if e == old_epoch => assert!(
                    !seen_new,
                    "the shield went back to the old broadcast after showing the new one"
                ),
                Some(e) => {
                    seen_new = true;
                    let new_segments = pl
                        .segments
                        .iter()
                        .filter(|s| epoch_of(&s.uri).as_deref() == Some(e.as_str()))
                        .count();
                    if new_segments >= 3 {
                        break pl;
                    }
                }
                None => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let new_epoch = edge_epoch(&fresh).unwrap();
    assert_ne!(new_epoch, old_epoch);
    assert!(!fresh.ended);
    // The previous broadcast may still head the playlist (before the discontinuity), never
    // among the new broadcast's names.
    for u in media_uris(&fresh) {
        let e = epoch_of(&u).unwrap();
        assert!(e == new_epoch || e == old_epoch, "a third epoch in {u}");
    }
    if fresh.discontinuity_at.is_some() {
        assert_eq!(fresh.maps.len(), 2);
        assert_eq!(
            epoch_of(&fresh.maps[0]).as_deref(),
            Some(old_epoch.as_str())
        );
        eprintln!(
            "cdn_shield: the re-published playlist lists the previous broadcast's last {} \
             segment(s) before EXT-X-DISCONTINUITY",
            fresh
                .segments
                .iter()
                .filter(|s| epoch_of(&s.uri).as_deref() == Some(old_epoch.as_str()))
                .count()
        );
    }
    eprintln!(
        "cdn_shield: new broadcast {new_epoch} (was {old_epoch}) through the shield {:.1}s \
         after the re-publish",
        republished_at.elapsed().as_secs_f64()
    );
    // Every object of the new playlist: through the shield byte-identical to the origin, and
    // none of it is a body the shield served for the old broadcast.
    let mut names: Vec<String> = fresh
        .segments
        .iter()
        .map(|s| s.uri.clone())
        .filter(|u| epoch_of(u).as_deref() == Some(new_epoch.as_str()))
        .collect();
    names.extend(fresh.map_uri.clone());
    names.extend(fresh.parts.iter().rev().take(3).map(|p| p.uri.clone()));
    for name in &names {
        let via_shield = bytes(&http, &resolve(&shield_playlists[check], name)).await;
        let direct = bytes(&http, &resolve(&origin_playlists[check], name)).await;
        assert!(
            via_shield == direct,
            "{name}: {} bytes through the shield differ from the origin's {}",
            via_shield.len(),
            direct.len()
        );
        assert!(
            !old_bodies.contains(&hash(&via_shield)),
            "{name}: the shield served old-broadcast bytes under a new name"
        );
    }
    eprintln!(
        "cdn_shield: {} new-epoch objects identical through the shield and at the origin",
        names.len()
    );

    // Gzip and identity variants of one playlist (Vary: Accept-Encoding) stay apart.
    for _ in 0..2 {
        let r = http
            .get(&shield_playlists[check])
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip");
        let r = http.get(&shield_playlists[check]).send().await.unwrap();
        assert!(!r.headers().contains_key("content-encoding"));
        assert!(r.text().await.unwrap().starts_with("#EXTM3U"));
    }
    // CORS and the origin's Date survive the cache (a stored segment is a HIT).
    let seg = resolve(&shield_playlists[check], &names[0]);
    let r = http
        .get(&seg)
        .header("origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache-status"], "HIT");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("age"), "{exposed}");
    assert!(r.headers().get("age").is_none(), "nginx does not set Age");
    // `proxy_pass_header Date`: a segment stored during the players' run keeps the origin's
    // Date, so a downstream cache can compute its age (RFC 9111 §4.2.3).
    let old_segment = shared
        .bodies
        .lock()
        .unwrap()
        .keys()
        .find(|u| u.contains("/seg-"))
        .cloned()
        .unwrap();
    let r = http.get(&old_segment).send().await.unwrap();
    assert_eq!(r.headers()["x-cache-status"], "HIT");
    let date = chrono::DateTime::parse_from_rfc2822(r.headers()["date"].to_str().unwrap()).unwrap();
    let age = chrono::Utc::now().signed_duration_since(date).num_seconds();
    assert!(
        age >= 2,
        "a stored response carries the shield's Date, not the origin's ({age}s)"
    );
    eprintln!(
        "cdn_shield: stored segment keeps the origin's Date: apparent age {age}s, no Age header"
    );

    let mut findings = Vec::new();
    // Hazard 1: the ended playlist a player read across the gap.
    let (_, _, hz) = get_playlist(&http, &shield_playlists[hazard]).await;
    let (_, _, hz_origin) = get_playlist(&http, &origin_playlists[hazard]).await;
    if hz.ended && !hz_origin.ended {
        findings.push(format!(
            "{}: the ENDLIST playlist read during the gap is still served by the shield \
             {:.1}s after the re-publish (origin sent `{ended_cc}` once ended; the origin \
             is live again with epoch {:?})",
            renditions[hazard],
            republished_at.elapsed().as_secs_f64(),
            epochs(&hz_origin)
        ));
    }

    // Hazard 2: a blocking response cached for 6 × TD must never answer for a later
    // broadcast. Media sequence numbers continue across broadcasts of a name (and
    // EXT-X-DISCONTINUITY-SEQUENCE grows), so the next broadcast's players ask for numbers
    // no earlier response was cached under.
    let (_, _, second) = get_playlist(&http, &origin_playlists[check]).await;
    let second_last = second.last_msn();
    assert_eq!(publisher.stop().await.unwrap(), 200);
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url(STREAM)).with_format(320, 180, 30))
            .await
            .unwrap();
    let third = loop {
        let (code, _, p) = get_playlist(&http, &origin_playlists[check]).await;
        let third_edge = edge_epoch(&p).filter(|e| *e != new_epoch && *e != old_epoch);
        if code == 200 && !p.ended && third_edge.is_some() && !p.parts.is_empty() {
            break p;
        }
        assert!(
            republished_at.elapsed() < Duration::from_secs(60),
            "third broadcast never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_one_edge(&third, "third broadcast");
    let third_first = third.discontinuity_at.unwrap_or(third.media_sequence);
    assert!(
        third_first > second_last,
        "media sequence numbers must continue: {third_first} after {second_last}"
    );
    let (msn, part) = third.last_part().unwrap();
    let next = format!(
        "{}?_HLS_msn={msn}&_HLS_part={}",
        shield_playlists[check],
        part + 1
    );
    let (code, _, through) = get_playlist(&http, &next).await;
    assert_eq!(code, 200);
    if edge_epoch(&through).as_deref() == Some(new_epoch.as_str()) {
        findings.push(format!(
            "{next}: the shield answered a blocking reload of the third broadcast with the \
             second broadcast's playlist (epoch {new_epoch})"
        ));
    }
    assert_eq!(publisher.stop().await.unwrap(), 200);

    for f in &findings {
        eprintln!("cdn_shield: FINDING: {f}");
    }
    assert!(findings.is_empty(), "{findings:#?}");
    let errors = nginx.error_log();
    let alerts: Vec<&str> = errors
        .lines()
        .filter(|l| l.contains("[alert]") || l.contains("[crit]") || l.contains("[emerg]"))
        .collect();
    assert!(alerts.is_empty(), "nginx: {alerts:#?}");
    drop(nginx);
    gw.shutdown().await;
    eprintln!(
        "cdn_shield: done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
