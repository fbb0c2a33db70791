//! ISO base media file format boxes (ISO/IEC 14496-12 §4.2): iterating over the boxes in
//! a buffer, finding a child box by path, and a big-endian reader over a box body. Every
//! length is checked: a box or field running past its parent is an [`Fmp4Error`], never a
//! panic.

use super::fmp4::Fmp4Error;

/// A box: its type and its payload (after the header).
pub(super) struct Mp4Box<'a> {
    pub(super) kind: [u8; 4],
    pub(super) body: &'a [u8],
    /// Offset of the box's first byte in the buffer iterated over.
    pub(super) start: usize,
}

/// Iterates over the boxes in `buf`.
pub(super) fn boxes(buf: &[u8]) -> impl Iterator<Item = Result<Mp4Box<'_>, Fmp4Error>> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let start = pos;
        let rest = &buf[pos..];
        if rest.len() < 8 {
            pos = buf.len();
            return Some(Err(Fmp4Error::Truncated("box header")));
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (header, size) = match size32 {
            0 => (8, rest.len() as u64),
            1 => {
                if rest.len() < 16 {
                    pos = buf.len();
                    return Some(Err(Fmp4Error::Truncated("box header")));
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[8..16]);
                (16, u64::from_be_bytes(b))
            }
            n => (8, n),
        };
        if size < header as u64 || size > rest.len() as u64 {
            pos = buf.len();
            return Some(Err(Fmp4Error::Truncated("box")));
        }
        pos += size as usize;
        Some(Ok(Mp4Box {
            kind,
            body: &rest[header..size as usize],
            start,
        }))
    })
}

/// The first child of type `kind`.
pub(super) fn child<'a>(buf: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, Fmp4Error> {
    for b in boxes(buf) {
        let b = b?;
        if &b.kind == kind {
            return Ok(Some(b.body));
        }
    }
    Ok(None)
}

/// The box at `path` below `buf`, each step the first child of that type.
pub(super) fn find<'a>(
    buf: &'a [u8],
    path: &[&[u8; 4]],
    name: &'static str,
) -> Result<&'a [u8], Fmp4Error> {
    let mut cur = buf;
    for kind in path {
        cur = child(cur, kind)?.ok_or(Fmp4Error::Missing(name))?;
    }
    Ok(cur)
}

/// A big-endian reader over a box body.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Fmp4Error> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(Fmp4Error::Truncated(self.what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(super) fn u8(&mut self) -> Result<u8, Fmp4Error> {
        Ok(self.bytes(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, Fmp4Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32, Fmp4Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, Fmp4Error> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    /// A full box's version and flags.
    pub(super) fn version_flags(&mut self) -> Result<(u8, u32), Fmp4Error> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}
