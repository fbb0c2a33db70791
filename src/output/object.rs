//! What the packager hands to the writers: an [`Object`] (a path under the broadcast root
//! and its bytes) and its [`ObjectKind`], which decides the headers a writer sends with it
//! (`Content-Type`, `Cache-Control`) and whether a newer write supersedes it. Plain data:
//! the writers (`record`, `s3`) do the I/O.

use bytes::Bytes;

/// What a written object is: decides its `Content-Type` and `Cache-Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// CMAF init section (`init-{epoch}.mp4`).
    Init,
    /// A whole CMAF segment (`seg-{epoch}-{n}.m4s`).
    Segment,
    /// A rendition's media playlist.
    MediaPlaylist,
    /// The multivariant playlist.
    MasterPlaylist,
}

impl ObjectKind {
    /// `Content-Type` (AUTH 10.4).
    pub fn content_type(self) -> &'static str {
        match self {
            ObjectKind::Init => "video/mp4",
            ObjectKind::Segment => "video/iso.segment",
            ObjectKind::MediaPlaylist | ObjectKind::MasterPlaylist => {
                "application/vnd.apple.mpegurl"
            }
        }
    }

    /// `Cache-Control` for a CDN in front of the bucket: media names carry the broadcast
    /// epoch and are never reused, so they are immutable; playlists change every segment
    /// and get half a target duration (HLS2 App. B.1), also once ended, since the same
    /// name may be published again at once.
    pub fn cache_control(self, target_duration: u64) -> String {
        match self {
            ObjectKind::Init | ObjectKind::Segment => {
                "public, max-age=31536000, immutable".to_string()
            }
            ObjectKind::MediaPlaylist | ObjectKind::MasterPlaylist => {
                format!("public, max-age={}", (target_duration / 2).max(1))
            }
        }
    }

    /// Whether a later object of the same path makes this one obsolete (playlists).
    pub fn superseded_by_newer(self) -> bool {
        matches!(self, ObjectKind::MediaPlaylist | ObjectKind::MasterPlaylist)
    }
}

/// One object to write, with its path relative to the broadcast root.
#[derive(Debug, Clone)]
pub struct Object {
    /// e.g. `360p/seg-1a2b3c4d-7.m4s`; only `[A-Za-z0-9._/-]`.
    pub path: String,
    /// What it is.
    pub kind: ObjectKind,
    /// The bytes.
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_per_kind() {
        assert_eq!(ObjectKind::Segment.content_type(), "video/iso.segment");
        assert_eq!(ObjectKind::Init.content_type(), "video/mp4");
        assert_eq!(
            ObjectKind::MediaPlaylist.content_type(),
            "application/vnd.apple.mpegurl"
        );
        assert!(ObjectKind::Segment.cache_control(2).contains("immutable"));
        assert_eq!(
            ObjectKind::MasterPlaylist.cache_control(2),
            "public, max-age=1"
        );
        assert_eq!(
            ObjectKind::MediaPlaylist.cache_control(6),
            "public, max-age=3"
        );
        assert!(ObjectKind::MediaPlaylist.superseded_by_newer());
        assert!(!ObjectKind::Segment.superseded_by_newer());
    }
}
