//! HTTPS with HTTP/2 negotiated by ALPN (browsers only speak h2 over TLS, and LL-HLS wants
//! h2), HTTP/1.1 still offered, and absolute WHIP `Location`s in https.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::test_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_h2_alpn_and_http1_fallback() {
    let dir = std::env::temp_dir().join(format!("whipcast-tls-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        // An end-entity certificate (webpki refuses a CA certificate as the server's).
        .args([
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut cfg = test_config("");
    cfg.server.tls_cert = cert.display().to_string();
    cfg.server.tls_key = key.display().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        whipcast::run(cfg, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = |h1: bool| {
        let b = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(ca.clone())
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .timeout(Duration::from_secs(10));
        if h1 { b.http1_only() } else { b }.build().unwrap()
    };
    let base = format!("https://localhost:{port}");
    let mut up = false;
    let mut last = String::new();
    for _ in 0..100 {
        match client(false).get(format!("{base}/healthz")).send().await {
            Ok(_) => {
                up = true;
                break;
            }
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "https server did not come up: {last}");

    let r = client(false)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN must pick h2");
    let r = client(true)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    // A WHIP session over https gets an https Location (OBS needs it absolute).
    let r = client(false)
        .post(format!("{base}/whip/secure"))
        .header("content-type", "application/sdp")
        .body(include_str!("data/obs-offer.sdp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        loc.starts_with(&format!("https://localhost:{port}/whip/secure/")),
        "{loc}"
    );
    let r = client(false).delete(&loc).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Plain HTTP on the TLS port is refused (not served in clear).
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        plain
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
    );

    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
