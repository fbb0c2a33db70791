//! A rendered playlist as the origin serves it: the text, its gzip form, a strong entity
//! tag and its modification time, computed once per change, shared by every request.
//! Header values are kept as ready-made bytes, so serving a playlist formats nothing.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::time::SystemTime;

use bytes::Bytes;

/// One rendered playlist.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The playlist text.
    pub body: Bytes,
    /// The same, gzip-compressed (Apple requires gzip for playlists, AUTH 10.1).
    pub gzip: Bytes,
    /// Strong entity tag of `body` (quoted).
    pub etag: Bytes,
    /// Strong entity tag of `gzip`: `etag` with `-gz` appended inside the quotes (a strong
    /// tag must differ between content codings, RFC 9110 §8.8.3).
    pub gzip_etag: Bytes,
    /// When this content was produced, as an HTTP-date (`Last-Modified`; Apple treats a
    /// live playlist as stale when it is more than 3 × target duration older than `Date`,
    /// AUTH 8.24).
    pub last_modified: Bytes,
}

impl Doc {
    /// Renders the derived forms of `body`.
    pub fn new(body: Bytes, modified: SystemTime) -> Doc {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let tag = format!("{:016x}-{:x}", h.finish(), body.len());
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 3),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        let gzip = enc
            .write_all(&body)
            .and_then(|()| enc.finish())
            .map(Bytes::from)
            .unwrap_or_default();
        Doc {
            body,
            gzip,
            etag: Bytes::from(format!("\"{tag}\"")),
            gzip_etag: Bytes::from(format!("\"{tag}-gz\"")),
            last_modified: Bytes::from(httpdate::fmt_http_date(modified)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn gzip_round_trips_and_tags_differ() {
        let text = Bytes::from("#EXTM3U\n#EXT-X-VERSION:6\n".repeat(50));
        let d = Doc::new(text.clone(), SystemTime::UNIX_EPOCH);
        let mut out = String::new();
        flate2::read::GzDecoder::new(d.gzip.as_ref())
            .read_to_string(&mut out)
            .expect("gunzip");
        assert_eq!(out.as_bytes(), text.as_ref());
        assert!(d.gzip.len() < text.len() / 4);
        assert!(d.etag.starts_with(b"\"") && d.etag.ends_with(b"\""));
        assert_ne!(d.etag, d.gzip_etag);
        assert!(d.gzip_etag.ends_with(b"-gz\""));
        assert_eq!(
            &d.gzip_etag[..d.gzip_etag.len() - 4],
            &d.etag[..d.etag.len() - 1]
        );
        assert_eq!(d.last_modified.as_ref(), b"Thu, 01 Jan 1970 00:00:00 GMT");
        // Same content, same tag (whenever made); different content, different tag.
        let later = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(60);
        assert_eq!(Doc::new(text, later).etag, d.etag);
        assert_ne!(Doc::new(Bytes::from("x"), later).etag, d.etag);
    }
}
