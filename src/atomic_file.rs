//! Whole-file writes that never leave a partial file under the final name: the recordings'
//! segments and playlists (which must survive a power loss in order) and the DVR spill
//! files (a cache: lost with the process anyway).

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;

/// How far a write must have gone when [`write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// On disk, with the rename: a recording.
    Synced,
    /// In the page cache: a file the process will not need after a crash.
    Cache,
}

/// Writes `data` to `path` so that `path` is either absent, the old content or the new
/// content, never a part: write a temporary file beside it, then rename it into place.
/// [`Durability::Synced`] also flushes the file and then the directory to disk before
/// returning.
pub(crate) fn write(path: &Path, data: &[u8], durability: Durability) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("object path has no directory"))?;
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("object path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if durability == Durability::Cache {
            drop(f);
            return fs::rename(&tmp, path);
        }
        f.sync_data()?;
        fs::rename(&tmp, path)?;
        // The rename lives in the directory: sync it too, so that after a power loss a
        // playlist never survives without the segments renamed into place before it. Not
        // an error when it fails: the file is in place, and some filesystems cannot sync
        // a directory (EINVAL); stopping the recording for that would lose more.
        let _ = File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tempdir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("whipcast-atomic-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&d).expect("tempdir");
        d
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let d = tempdir();
        let p = d.join("360p/index.m3u8");
        write(&p, b"one", Durability::Synced).expect("write");
        write(&p, b"two", Durability::Cache).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let names: Vec<String> = fs::read_dir(d.join("360p"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["index.m3u8"]);
        fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn write_into_a_file_fails() {
        let d = tempdir();
        fs::write(d.join("blocker"), b"x").expect("file");
        let err = write(&d.join("blocker/a/b.m4s"), b"x", Durability::Synced)
            .expect_err("not a directory");
        assert!(!err.to_string().is_empty());
        fs::remove_dir_all(&d).expect("cleanup");
    }
}
