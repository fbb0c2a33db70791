//! The object-storage uploader: one task per broadcast, uploading its objects in order
//! (so a playlist is stored only after the segments it lists) with `PUT` requests signed by
//! `rusty-s3` and sent with `reqwest`. A failed upload is retried with exponential backoff
//! for `s3.retry_for`; nothing behind it is uploaded meanwhile, and playlists queued twice
//! are uploaded once (the newest). Retries and give-ups are logged and counted in
//! `/api/streams`; the live path only ever does a `try_send`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

use super::{Object, ObjectKind, OutputError, OutputStatus, S3_QUEUE, WriterGuard};
use crate::StreamKey;
use crate::config::S3Config;

/// Lifetime of a request signature (the request is sent at once; this only needs to cover
/// clock skew and a slow send).
const SIGNATURE_TTL: Duration = Duration::from_secs(600);

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why one upload attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The store answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the error document.
        body: String,
    },
    /// No answer (connection refused, reset, timeout).
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// The configured bucket and its client; shared by every broadcast's uploader.
pub struct Store {
    bucket: Bucket,
    credentials: Credentials,
    client: reqwest::Client,
    prefix: String,
    retry_for: Duration,
    acl: String,
    target_duration: u64,
}

impl Store {
    /// Builds the bucket URL and the client; credentials from the config or the standard
    /// AWS environment variables.
    pub fn new(cfg: &S3Config, target_duration: u64) -> Result<Self, OutputError> {
        let endpoint =
            url::Url::parse(&cfg.endpoint).map_err(|e| OutputError::Bucket(e.to_string()))?;
        let style = if cfg.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| OutputError::Bucket(e.to_string()))?;
        let credentials = if cfg.access_key.is_empty() {
            Credentials::from_env().ok_or(OutputError::NoCredentials)?
        } else {
            Credentials::new(cfg.access_key.clone(), cfg.secret_key.clone())
        };
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| OutputError::Client(e.to_string()))?;
        Ok(Self {
            bucket,
            credentials,
            client,
            prefix: cfg.prefix.trim_matches('/').to_string(),
            retry_for: cfg.retry_for,
            acl: cfg.acl.clone(),
            target_duration,
        })
    }

    /// Key prefix of a stream's objects: `<prefix>/<stream>/`.
    fn stream_prefix(&self, stream: &StreamKey) -> String {
        if self.prefix.is_empty() {
            format!("{stream}/")
        } else {
            format!("{}/{stream}/", self.prefix)
        }
    }

    /// `s3://bucket/prefix/stream/`, for logs and the API.
    pub fn location(&self, stream: &StreamKey) -> String {
        format!("s3://{}/{}", self.bucket.name(), self.stream_prefix(stream))
    }

    async fn put(&self, key: &str, obj: &Object) -> Result<(), UploadError> {
        let content_type = obj.kind.content_type();
        let cache_control = obj.kind.cache_control(self.target_duration);
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        action.headers_mut().insert("content-type", content_type);
        action
            .headers_mut()
            .insert("cache-control", cache_control.clone());
        if !self.acl.is_empty() {
            action.headers_mut().insert("x-amz-acl", self.acl.as_str());
        }
        let url = action.sign(SIGNATURE_TTL);
        let mut req = self.client.put(url);
        if !self.acl.is_empty() {
            req = req.header("x-amz-acl", &self.acl);
        }
        let resp = req
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CACHE_CONTROL, cache_control)
            .header(reqwest::header::CONTENT_LENGTH, obj.body.len())
            .body(obj.body.clone())
            .send()
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(UploadError::Status {
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        })
    }
}

/// Starts the uploader of one broadcast.
pub fn spawn(
    store: Arc<Store>,
    stream: &StreamKey,
    epoch: &str,
    rx: mpsc::Receiver<Object>,
    status: OutputStatus,
    guard: WriterGuard,
) {
    let prefix = store.stream_prefix(stream);
    let span = info_span!("s3", stream = %stream, epoch = %epoch);
    tokio::spawn(
        async move {
            run(store, prefix, rx, status).await;
            drop(guard);
        }
        .instrument(span),
    );
}

/// Queues `obj`; a playlist replaces an older copy of itself still waiting. A
/// multivariant playlist queued after that older copy may name it, so it moves behind the
/// new copy: nothing is ever stored before what it refers to.
fn enqueue(queue: &mut VecDeque<Object>, obj: Object) {
    let older = obj
        .kind
        .superseded_by_newer()
        .then(|| queue.iter().position(|q| q.path == obj.path))
        .flatten();
    let Some(i) = older else {
        queue.push_back(obj);
        return;
    };
    queue.remove(i);
    let master = queue
        .iter()
        .skip(i)
        .position(|q| q.kind == ObjectKind::MasterPlaylist)
        .and_then(|j| queue.remove(i + j));
    queue.push_back(obj);
    if let Some(m) = master {
        enqueue(queue, m);
    }
}

async fn run(
    store: Arc<Store>,
    prefix: String,
    mut rx: mpsc::Receiver<Object>,
    status: OutputStatus,
) {
    let mut queue: VecDeque<Object> = VecDeque::new();
    let mut open = true;
    loop {
        if queue.is_empty() && open {
            match rx.recv().await {
                Some(obj) => enqueue(&mut queue, obj),
                None => open = false,
            }
        }
        while open && queue.len() < S3_QUEUE {
            match rx.try_recv() {
                Ok(obj) => enqueue(&mut queue, obj),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let Some(obj) = queue.pop_front() else {
            if open {
                continue;
            }
            break;
        };
        upload(&store, &format!("{prefix}{}", obj.path), &obj, &status).await;
    }
    status.finish();
    let s = status.snapshot();
    info!(
        objects = s.objects,
        bytes = s.bytes,
        retries = s.retries,
        dropped = s.dropped,
        "upload complete"
    );
}

/// Uploads one object, retrying with exponential backoff for the retry budget.
async fn upload(store: &Store, key: &str, obj: &Object, status: &OutputStatus) {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match store.put(key, obj).await {
            Ok(()) => {
                status.wrote(obj.body.len());
                if attempts > 1 {
                    info!(key, attempts, "upload succeeded after retries");
                }
                return;
            }
            Err(e) => {
                let why = e.to_string();
                status.retried(format!("{key}: {why}"));
                if started.elapsed() + backoff > store.retry_for {
                    status.dropped();
                    warn!(key, attempts, error = %why, "upload given up after the retry budget");
                    return;
                }
                if attempts == 1 {
                    warn!(key, error = %why, "upload failed; retrying with backoff");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn obj(path: &str, kind: ObjectKind) -> Object {
        Object {
            path: path.into(),
            kind,
            body: Bytes::new(),
        }
    }

    #[test]
    fn queued_playlists_keep_only_the_newest_in_order() {
        let mut q = VecDeque::new();
        enqueue(&mut q, obj("a/seg-e-1.m4s", ObjectKind::Segment));
        enqueue(&mut q, obj("a/index.m3u8", ObjectKind::MediaPlaylist));
        enqueue(&mut q, obj("master.m3u8", ObjectKind::MasterPlaylist));
        enqueue(&mut q, obj("a/seg-e-2.m4s", ObjectKind::Segment));
        enqueue(&mut q, obj("a/index.m3u8", ObjectKind::MediaPlaylist));
        let order: Vec<&str> = q.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            order,
            [
                "a/seg-e-1.m4s",
                "a/seg-e-2.m4s",
                "a/index.m3u8",
                "master.m3u8"
            ]
        );
    }

    #[test]
    fn keys_and_location() {
        let cfg = S3Config {
            enabled: true,
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "live".into(),
            prefix: "/hls/".into(),
            access_key: "k".into(),
            secret_key: "s".into(),
            ..S3Config::default()
        };
        let store = Store::new(&cfg, 2).expect("store");
        let key = StreamKey::parse("cam").expect("valid");
        assert_eq!(store.stream_prefix(&key), "hls/cam/");
        assert_eq!(store.location(&key), "s3://live/hls/cam/");
        let bad = S3Config {
            endpoint: "ftp://x".into(),
            ..cfg
        };
        assert!(Store::new(&bad, 2).is_err());
    }
}
