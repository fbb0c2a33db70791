//! External authorization and lifecycle webhooks, end to end over real sockets: the test
//! runs the operator's side itself (an axum app on 127.0.0.1:0 acting as the authorization
//! callback, the JWKS server and the webhook receiver) and a real whipcast configured to
//! use it. Refusals are checked at the HTTP level (no media needed: the checks run before
//! the offer is read, and an allowed request gets as far as rejecting a junk offer); one
//! real WebRTC publish checks an override applied (`{"record": true}` records without
//! `record.allow_request`) and the signed webhooks, one of them retried after a 500.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, metrics, stream_outputs, test_config};

const SECRET: &str = "test-secret-of-at-least-32-bytes!";
const HOOK_SECRET: &str = "hook-key";

/// The operator's side: what it was asked, what it serves.
#[derive(Default)]
struct Operator {
    questions: Mutex<Vec<Value>>,
    jwks: Mutex<Value>,
    jwks_fetches: AtomicUsize,
    hooks: Mutex<Vec<(HeaderMap, Bytes)>>,
    /// Answer 500 to this many more webhook POSTs.
    fail_hooks: AtomicUsize,
}

/// The callback decides by the stream name's prefix (publish) or the token (play).
async fn auth(State(op): State<Arc<Operator>>, Json(q): Json<Value>) -> Response {
    op.questions.lock().unwrap().push(q.clone());
    let stream = q["stream"].as_str().unwrap_or_default().to_string();
    if q["action"] == "play" {
        return if q["token"] == "good" {
            StatusCode::OK.into_response()
        } else {
            StatusCode::FORBIDDEN.into_response()
        };
    }
    match stream.split('-').next().unwrap_or_default() {
        "deny401" => StatusCode::UNAUTHORIZED.into_response(),
        "deny403" => StatusCode::FORBIDDEN.into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::OK.into_response()
        }
        "rec" => Json(json!({"record": true, "comment": "ignored"})).into_response(),
        _ => (StatusCode::OK, "ok").into_response(),
    }
}

async fn jwks(State(op): State<Arc<Operator>>) -> Json<Value> {
    op.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(op.jwks.lock().unwrap().clone())
}

async fn hook(State(op): State<Arc<Operator>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    op.hooks.lock().unwrap().push((headers, body));
    let fail = op
        .fail_hooks
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// Starts the operator's server; returns it and its base URL.
async fn operator() -> (Arc<Operator>, String) {
    let op = Arc::new(Operator::default());
    let app = axum::Router::new()
        .route("/auth", post(auth))
        .route("/jwks", get(jwks))
        .route("/hooks", post(hook))
        .with_state(op.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (op, format!("http://{addr}"))
}

/// A WHIP POST with a junk offer: the auth checks run first, so 401 / 403 / 503 are theirs;
/// an allowed request gets as far as the offer (400 or 422).
async fn whip(gw: &TestGateway, stream: &str, token: Option<&str>) -> (u16, HeaderMap, String) {
    let mut req = gw
        .http
        .post(format!("{}?record=0&x=y", gw.whip_url(stream)))
        .header("content-type", "application/sdp")
        .body("v=0\r\n");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

fn allowed(status: u16, body: &str) -> bool {
    (status == 400 || status == 422) && !body.contains("token") && !body.contains("authoriz")
}

/// Waits (bounded) for `ok`.
async fn eventually(what: &str, limit: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_allows_denies_and_times_out() {
    let (op, base) = operator().await;
    let gw = TestGateway::start(test_config(&format!(
        "[auth.callback]\nurl = \"{base}/auth\"\ntimeout = \"300ms\"\non_play = true\nplay_cache = \"30s\"\n"
    )))
    .await;

    let (s, _, body) = whip(&gw, "ok-1", Some("tok")).await;
    assert!(allowed(s, &body), "allowed: {s} {body}");
    let q = op.questions.lock().unwrap().last().cloned().unwrap();
    assert_eq!(q["action"], "publish");
    assert_eq!(q["stream"], "ok-1");
    assert_eq!(q["signaling"], "whip");
    assert_eq!(q["token"], "tok");
    assert_eq!(q["query"], "record=0&x=y");
    assert_eq!(q["client_ip"], "127.0.0.1");
    assert!(
        q["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{q}"
    );

    let (s, h, _) = whip(&gw, "deny401-1", Some("tok")).await;
    assert_eq!(s, 401);
    assert!(h.contains_key("www-authenticate"));
    let (s, _, _) = whip(&gw, "deny403-1", None).await;
    assert_eq!(s, 403);
    // No answer within the timeout, fail-closed: 503 with Retry-After, in bounded time.
    let t0 = Instant::now();
    let (s, h, _) = whip(&gw, "slow-1", None).await;
    assert_eq!(s, 503);
    assert!(h.contains_key("retry-after"));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // WebSocket: the same callback, the refusal as an error message.
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("deny403-ws"))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["status"].as_u64()),
        (Some("error"), Some(403))
    );
    let _ = ws.close(None).await;
    let q = op.questions.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (q["stream"].as_str(), q["signaling"].as_str()),
        (Some("deny403-ws"), Some("websocket"))
    );

    // Play: asked once per stream and token, then cached; a refusal is cached too.
    let asked = || {
        op.questions
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q["action"] == "play")
            .count()
    };
    for _ in 0..3 {
        let (s, _) = gw
            .get_text(&format!("{}?token=good", gw.master_url("cam")))
            .await
            .unwrap();
        assert_eq!(s, 404, "allowed, and no such stream");
    }
    assert_eq!(asked(), 1);
    for _ in 0..2 {
        let (s, _) = gw
            .get_text(&format!("{}?token=bad", gw.master_url("cam")))
            .await
            .unwrap();
        assert_eq!(s, 403);
    }
    assert_eq!(asked(), 2);
    // Segments are not checked.
    let (s, _) = gw.get_text(&gw.url("/hls/cam/v0/seg-1.m4s")).await.unwrap();
    assert_eq!(s, 404);
    assert_eq!(asked(), 2);

    let m = metrics(&gw).await;
    let decided = |action: &str, result: &str| {
        m[&format!(
            "whipcast_auth_decisions_total{{check=\"callback\",action=\"{action}\",result=\"{result}\"}}"
        )]
    };
    assert_eq!(decided("publish", "allow"), 1.0);
    assert_eq!(decided("publish", "deny"), 3.0);
    assert_eq!(decided("publish", "unavailable"), 1.0);
    assert_eq!(decided("play", "allow"), 1.0);
    assert_eq!(decided("play", "deny"), 1.0);
    assert_eq!(m["whipcast_auth_play_cache_hits_total"], 3.0);
    assert_eq!(m["whipcast_publish_refused_total{status=\"503\"}"], 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_without_an_answer_fails_open_only_when_told() {
    let (_op, base) = operator().await;
    let open = TestGateway::start(test_config(&format!(
        "[auth.callback]\nurl = \"{base}/auth\"\ntimeout = \"300ms\"\nfail_open = true\n"
    )))
    .await;
    let (s, _, body) = whip(&open, "slow-2", None).await;
    assert!(allowed(s, &body), "fail-open allows: {s} {body}");
    let m = metrics(&open).await;
    assert_eq!(
        m["whipcast_auth_decisions_total{check=\"callback\",action=\"publish\",result=\"fail_open\"}"],
        1.0
    );
    open.shutdown().await;

    // Unreachable (nothing listens on port 1), fail-closed by default.
    let closed = TestGateway::start(test_config(
        "[auth.callback]\nurl = \"http://127.0.0.1:1/auth\"\ntimeout = \"300ms\"\n",
    ))
    .await;
    let (s, h, _) = whip(&closed, "cam", None).await;
    assert_eq!(s, 503);
    assert!(h.contains_key("retry-after"));
    closed.shutdown().await;
}

/// Base64url without padding (RFC 7515 §2), for the test's JWKS.
fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A fresh ES256 key: its signing key and its JWK.
fn es256_key(kid: &str) -> (EncodingKey, Value) {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn es256(claims: &Value, key: &EncodingKey, kid: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.to_string());
    encode(&h, claims, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_hs256_and_a_rotating_jwks() {
    let (op, base) = operator().await;
    let (k1, jwk1) = es256_key("k1");
    let (k2, jwk2) = es256_key("k2");
    let (stranger, _) = es256_key("k1");
    *op.jwks.lock().unwrap() = json!({"keys": [jwk1.clone()]});
    let gw = TestGateway::start(test_config(&format!(
        "[auth.jwt]\nsecret = \"{SECRET}\"\njwks_url = \"{base}/jwks\"\nleeway = \"2s\"\n\
         jwks_min_refresh = \"1s\"\non_play = true\n"
    )))
    .await;
    let grant = json!({"publish": "cam-*", "play": ["cam-1"]});
    let claims = json!({"sub": "studio", "exp": now() + 60, "whipcast": grant});

    // HS256: valid, wrong stream, expired, bad signature, none, not a JWT.
    let (s, _, body) = whip(&gw, "cam-1", Some(&hs256(&claims, SECRET))).await;
    assert!(allowed(s, &body), "valid HS256: {s} {body}");
    let (s, h, _) = whip(&gw, "other", Some(&hs256(&claims, SECRET))).await;
    assert_eq!(s, 403);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let expired = json!({"exp": now() - 30, "whipcast": grant});
    assert_eq!(
        whip(&gw, "cam-1", Some(&hs256(&expired, SECRET))).await.0,
        401
    );
    let early = json!({"exp": now() + 60, "nbf": now() + 30, "whipcast": grant});
    assert_eq!(
        whip(&gw, "cam-1", Some(&hs256(&early, SECRET))).await.0,
        401
    );
    let forged = hs256(&claims, "another-secret-of-at-least-32-bytes");
    assert_eq!(whip(&gw, "cam-1", Some(&forged)).await.0, 401);
    assert_eq!(whip(&gw, "cam-1", None).await.0, 401);
    assert_eq!(whip(&gw, "cam-1", Some("not-a-jwt")).await.0, 401);

    // ES256 from the JWKS (fetched on first use); a stranger's key under the same kid fails.
    let (s, _, body) = whip(&gw, "cam-2", Some(&es256(&claims, &k1, "k1"))).await;
    assert!(allowed(s, &body), "valid ES256: {s} {body}");
    assert_eq!(op.jwks_fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        whip(&gw, "cam-2", Some(&es256(&claims, &stranger, "k1")))
            .await
            .0,
        401
    );
    // An HS256 token cannot be verified with a public key, and vice versa.
    assert_eq!(
        whip(&gw, "cam-2", Some(&es256(&claims, &k1, "k9"))).await.0,
        401
    );

    // Rotation: k2 is published after start; once the refresh interval passed, a token
    // naming it makes whipcast fetch the set again.
    *op.jwks.lock().unwrap() = json!({"keys": [jwk1, jwk2]});
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, body) = whip(&gw, "cam-3", Some(&es256(&claims, &k2, "k2"))).await;
    assert!(allowed(s, &body), "rotated key: {s} {body}");
    let fetches = op.jwks_fetches.load(Ordering::SeqCst);
    assert!((2..=3).contains(&fetches), "{fetches} fetches");
    // Made-up kids within the interval fetch nothing more.
    for i in 0..5 {
        let t = es256(&claims, &k2, &format!("nope-{i}"));
        assert_eq!(whip(&gw, "cam-3", Some(&t)).await.0, 401);
    }
    assert_eq!(op.jwks_fetches.load(Ordering::SeqCst), fetches);

    // Play: the token's `play` grant, from ?token= or the header.
    let play = |stream: &str, token: Option<String>| {
        let url = match &token {
            Some(t) => format!("{}?token={t}", gw.master_url(stream)),
            None => gw.master_url(stream),
        };
        let gw = &gw;
        async move { gw.get_text(&url).await.unwrap().0 }
    };
    assert_eq!(play("cam-1", None).await, 401);
    assert_eq!(play("cam-1", Some(hs256(&claims, SECRET))).await, 404);
    assert_eq!(play("cam-2", Some(hs256(&claims, SECRET))).await, 403);
    let r = gw
        .http
        .get(gw.master_url("cam-1"))
        .bearer_auth(es256(&claims, &k2, "k2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let m = metrics(&gw).await;
    assert_eq!(
        m["whipcast_auth_decisions_total{check=\"jwt\",action=\"publish\",result=\"allow\"}"],
        3.0
    );
    assert!(m["whipcast_auth_jwks_fetches_total{result=\"allow\"}"] >= 2.0);
    gw.shutdown().await;
}

/// Verifies `sha256=<hex>` over `body` with the receiver's copy of the key.
fn signed(headers: &HeaderMap, body: &[u8]) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let Some(sig) = headers
        .get("x-whipcast-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let Ok(tag) = (0..sig.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(sig.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_records_and_signed_webhooks_are_retried() {
    let (op, base) = operator().await;
    // The first webhook (publish_started) gets a 500 and must come again.
    op.fail_hooks.store(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("whipcast-auth-{:016x}", rand::random::<u64>()));
    let gw = TestGateway::start(test_config(&format!(
        "[record]\ndirectory = \"{}\"\n\
         [auth.callback]\nurl = \"{base}/auth\"\n\
         [auth.webhooks]\nurl = \"{base}/hooks\"\nsecret = \"{HOOK_SECRET}\"\nbackoff = \"100ms\"\n",
        dir.display()
    )))
    .await;
    // Without the override, ?record=1 is refused: record.allow_request is off.
    let r = gw
        .http
        .post(format!("{}?record=1", gw.whip_url("plain-1")))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let publisher = Publisher::start(
        PublisherOptions::whip(&gw.whip_url("rec-1"))
            .with_format(320, 180, 30)
            .with_token("pub-token"),
    )
    .await
    .expect("publisher connects");
    gw.wait_master("rec-1", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let (epoch, outputs) = stream_outputs(&gw, "rec-1").await;
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(
        outputs[0]["kind"], "record",
        "the callback's override records"
    );
    let q = op.questions.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (q["stream"].as_str(), q["token"].as_str()),
        (Some("rec-1"), Some("pub-token"))
    );
    assert_eq!(publisher.stop().await.unwrap(), 200);

    let events = || -> Vec<(String, Value, bool, String)> {
        op.hooks
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| {
                let v: Value = serde_json::from_slice(b).unwrap();
                let event = h["x-whipcast-event"].to_str().unwrap().to_string();
                let id = h["x-whipcast-delivery"].to_str().unwrap().to_string();
                (event, v, signed(h, b), id)
            })
            .collect()
    };
    let delivered = |name: &str| events().iter().filter(|e| e.0 == name).count();
    eventually(
        "recording_finished delivered",
        Duration::from_secs(30),
        || delivered("recording_finished") >= 1,
    )
    .await;
    eventually("publish_ended delivered", Duration::from_secs(10), || {
        delivered("publish_ended") >= 1
    })
    .await;
    let all = events();
    assert!(all.iter().all(|e| e.2), "every body is signed: {all:?}");
    // publish_started: refused once with 500, then delivered with the same id and body.
    let started: Vec<_> = all.iter().filter(|e| e.0 == "publish_started").collect();
    assert_eq!(started.len(), 2, "{started:?}");
    assert_eq!(started[0].3, started[1].3);
    assert_eq!(started[0].1, started[1].1);
    assert_eq!(started[0].1["stream"], "rec-1");
    assert_eq!(started[0].1["signaling"], "whip");
    let ended = all.iter().find(|e| e.0 == "publish_ended").unwrap();
    assert_eq!(ended.1["stream"], "rec-1");
    assert!(!ended.1["reason"].as_str().unwrap().is_empty());
    let rec = all.iter().find(|e| e.0 == "recording_finished").unwrap();
    assert_eq!(rec.1["epoch"], epoch.as_str());
    assert_eq!(rec.1["status"], "finished");
    assert!(rec.1["files"].as_u64().unwrap() > 2, "{}", rec.1);
    // The check can fail: another body under the same signature does not verify.
    let (h, b) = op.hooks.lock().unwrap()[0].clone();
    assert!(signed(&h, &b));
    assert!(!signed(&h, &[&b[..], b" "].concat()));

    let m = metrics(&gw).await;
    let deliveries = |event: &str, result: &str| {
        m[&format!("whipcast_webhook_deliveries_total{{event=\"{event}\",result=\"{result}\"}}")]
    };
    assert_eq!(deliveries("publish_started", "delivered"), 1.0);
    assert_eq!(deliveries("publish_ended", "delivered"), 1.0);
    assert_eq!(deliveries("recording_finished", "delivered"), 1.0);
    assert_eq!(deliveries("publish_started", "failed"), 0.0);
    assert_eq!(m["whipcast_webhook_retries_total"], 1.0);
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
