//! Every page of a Parquet file is checked before the `parquet` crate decodes any of it: the
//! decoder allocates (and with Snappy zero-fills) each page's *declared* uncompressed size, and a
//! gzip page decompresses to its end whatever it declares, so a customer's 1 KiB file declaring a
//! 2 GiB page, or one gzip bomb, would take the worker's memory. [`check`] walks each column
//! chunk's page headers (Thrift compact protocol, parsed here by a reader that cannot panic or
//! recurse without bound), and refuses:
//! * a codec other than none, Snappy or Zstd (gzip's decoder is not bounded by the page header);
//! * a page declaring more than [`MAX_PAGE_BYTES`] uncompressed;
//! * a file whose columns' largest pages (a dictionary page and a data page of each column are
//!   held at once while a row group is read) add up to more than [`MAX_WORKING_BYTES`];
//! * a page header that is malformed or leaves its column chunk.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;

/// The largest uncompressed page accepted (writers default to 1 MiB data pages).
pub const MAX_PAGE_BYTES: i64 = 64 << 20;
/// The most page bytes the reader may hold at once over all columns of a row group.
pub const MAX_WORKING_BYTES: i64 = 512 << 20;
/// The largest page header read (statistics of long strings make headers long).
const MAX_HEADER_BYTES: usize = 1 << 20;
/// The first read of a header.
const FIRST_HEADER_READ: usize = 16 << 10;
/// Nesting of Thrift structs, lists and maps beyond which a header is refused.
const MAX_DEPTH: u32 = 32;

/// Checks every page header of `file`, whose footer is `metadata`, before decoding (module doc).
pub fn check(file: &File, metadata: &ParquetMetaData) -> Result<(), String> {
    for (g, group) in metadata.row_groups().iter().enumerate() {
        let mut working: i64 = 0;
        for (c, column) in group.columns().iter().enumerate() {
            let name = column.column_path().string();
            let at = |what: String| format!("row group {g}, column {c} ({name}): {what}");
            match column.compression() {
                Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::ZSTD(_) => {}
                other => {
                    return Err(at(format!(
                        "{other} pages are not accepted (their decoder is not bounded); save the file with Snappy or Zstd compression"
                    )));
                }
            }
            let start = match column.dictionary_page_offset() {
                Some(d) if d > 0 => d.min(column.data_page_offset()),
                _ => column.data_page_offset(),
            };
            let largest = chunk_pages(file, start, column.compressed_size()).map_err(at)?;
            working = working.saturating_add(largest.saturating_mul(2));
        }
        if working > MAX_WORKING_BYTES {
            return Err(format!(
                "row group {g}: its columns' pages need {working} bytes at once, over the {MAX_WORKING_BYTES} accepted; write smaller pages or fewer columns"
            ));
        }
    }
    Ok(())
}

/// Walks the pages of one column chunk (`len` bytes from `start`); the largest declared page.
fn chunk_pages(file: &File, start: i64, len: i64) -> Result<i64, String> {
    let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
        return Err(format!("a negative offset or size ({start}, {len})"));
    };
    let end = start
        .checked_add(len)
        .ok_or_else(|| "the column chunk's range overflows".to_string())?;
    let mut pos = start;
    let mut largest = 0i64;
    while pos < end {
        let header = read_header(file, pos, end)?;
        if header.uncompressed > MAX_PAGE_BYTES {
            return Err(format!(
                "the page at byte {pos} declares {} uncompressed bytes, over the {MAX_PAGE_BYTES} accepted",
                header.uncompressed
            ));
        }
        largest = largest.max(header.uncompressed);
        pos = pos
            .checked_add(header.len)
            .and_then(|p| p.checked_add(header.compressed))
            .filter(|p| *p <= end)
            .ok_or_else(|| format!("the page at byte {pos} runs past its column chunk"))?;
    }
    Ok(largest)
}

/// The sizes a page header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSizes {
    /// The header's own length in bytes.
    pub len: u64,
    /// `uncompressed_page_size`.
    pub uncompressed: i64,
    /// `compressed_page_size`: the page's bytes after the header.
    pub compressed: u64,
}

/// Reads the page header at `pos` (before `end`), growing the read up to [`MAX_HEADER_BYTES`].
fn read_header(file: &File, pos: u64, end: u64) -> Result<PageSizes, String> {
    let available = usize::try_from(end.saturating_sub(pos)).unwrap_or(usize::MAX);
    let mut want = FIRST_HEADER_READ.min(available);
    loop {
        let mut buf = vec![0u8; want];
        let n = read_full_at(file, &mut buf, pos)
            .map_err(|e| format!("reading the page header at byte {pos}: {e}"))?;
        buf.truncate(n);
        match page_sizes(&buf) {
            Ok(sizes) => return Ok(sizes),
            Err(HeaderError::Short) if n == want && want < MAX_HEADER_BYTES.min(available) => {
                want = (want * 8).min(MAX_HEADER_BYTES).min(available);
            }
            Err(HeaderError::Short) => {
                return Err(format!(
                    "the page header at byte {pos} is truncated or over {MAX_HEADER_BYTES} bytes"
                ));
            }
            Err(HeaderError::Bad(why)) => {
                return Err(format!("the page header at byte {pos} is malformed: {why}"));
            }
        }
    }
}

fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        match file.read_at(rest, pos + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Why a header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes end inside the header.
    Short,
    /// Not a valid page header.
    Bad(String),
}

/// Parses a Thrift-compact `PageHeader` at the start of `bytes`: its length and the sizes of
/// fields 2 (`uncompressed_page_size`) and 3 (`compressed_page_size`), both required.
pub fn page_sizes(bytes: &[u8]) -> Result<PageSizes, HeaderError> {
    let mut r = Compact { bytes, pos: 0 };
    let (mut uncompressed, mut compressed) = (None, None);
    let mut last_id: i16 = 0;
    while let Some((id, ty)) = r.field_header(&mut last_id)? {
        match (id, ty) {
            (2, I32) => uncompressed = Some(r.zigzag()?),
            (3, I32) => compressed = Some(r.zigzag()?),
            _ => r.skip(ty, 0)?,
        }
    }
    let (Some(uncompressed), Some(compressed)) = (uncompressed, compressed) else {
        return Err(HeaderError::Bad("no page sizes".into()));
    };
    let compressed = u64::try_from(compressed)
        .map_err(|_| HeaderError::Bad(format!("compressed_page_size {compressed}")))?;
    if uncompressed < 0 {
        return Err(HeaderError::Bad(format!(
            "uncompressed_page_size {uncompressed}"
        )));
    }
    Ok(PageSizes {
        len: r.pos as u64,
        uncompressed,
        compressed,
    })
}

// Thrift compact protocol type ids.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// A cursor over Thrift compact bytes; every read is checked.
struct Compact<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, HeaderError> {
        let b = *self.bytes.get(self.pos).ok_or(HeaderError::Short)?;
        self.pos += 1;
        Ok(b)
    }

    fn advance(&mut self, n: u64) -> Result<(), HeaderError> {
        let n = usize::try_from(n).map_err(|_| HeaderError::Short)?;
        let next = self.pos.checked_add(n).ok_or(HeaderError::Short)?;
        if next > self.bytes.len() {
            return Err(HeaderError::Short);
        }
        self.pos = next;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, HeaderError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(HeaderError::Bad("a varint over 10 bytes".into()))
    }

    fn zigzag(&mut self) -> Result<i64, HeaderError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// The next field's id and type, or `None` at the struct's stop byte.
    fn field_header(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, HeaderError> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let (delta, ty) = (b >> 4, b & 0x0f);
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| HeaderError::Bad("a field id".into()))?
        } else {
            last_id
                .checked_add(i16::from(delta))
                .ok_or_else(|| HeaderError::Bad("a field id".into()))?
        };
        *last_id = id;
        Ok(Some((id, ty)))
    }

    /// Skips one value of type `ty` (`depth`: the nesting so far).
    fn skip(&mut self, ty: u8, depth: u32) -> Result<(), HeaderError> {
        if depth > MAX_DEPTH {
            return Err(HeaderError::Bad("nested too deeply".into()));
        }
        match ty {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.advance(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            UUID => self.advance(16),
            BINARY => {
                let len = self.varint()?;
                self.advance(len)
            }
            LIST | SET => {
                let head = self.byte()?;
                let elem = head & 0x0f;
                let n = match head >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.skip_n(n, elem, depth)
            }
            MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                for _ in 0..n {
                    self.skip_elem(kinds >> 4, depth)?;
                    self.skip_elem(kinds & 0x0f, depth)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last_id = 0;
                while let Some((_, t)) = self.field_header(&mut last_id)? {
                    self.skip(t, depth + 1)?;
                }
                Ok(())
            }
            other => Err(HeaderError::Bad(format!("unknown Thrift type {other}"))),
        }
    }

    /// Skips `n` elements of a list; each takes at least a byte, so a huge `n` ends at the
    /// buffer's end (as [`HeaderError::Short`]) rather than looping on.
    fn skip_n(&mut self, n: u64, elem: u8, depth: u32) -> Result<(), HeaderError> {
        for _ in 0..n {
            let before = self.pos;
            self.skip_elem(elem, depth)?;
            if self.pos == before {
                return Err(HeaderError::Bad("an empty list element".into()));
            }
        }
        Ok(())
    }

    /// A collection element: booleans take one byte there (in a struct field, none).
    fn skip_elem(&mut self, ty: u8, depth: u32) -> Result<(), HeaderError> {
        match ty {
            BOOL_TRUE | BOOL_FALSE => self.advance(1),
            other => self.skip(other, depth + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header: type DATA_PAGE (0), the two sizes, a data_page_header struct with num_values.
    fn header(uncompressed: i64, compressed: i64) -> Vec<u8> {
        let zz = |v: i64| {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            let mut out = vec![];
            loop {
                let b = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    out.push(b);
                    return out;
                }
                out.push(b | 0x80);
            }
        };
        let mut h = vec![0x15];
        h.extend(zz(0));
        h.push(0x15);
        h.extend(zz(uncompressed));
        h.push(0x15);
        h.extend(zz(compressed));
        h.push(0x2c); // field 5 (delta 2), struct
        h.push(0x15);
        h.extend(zz(7)); // num_values
        h.push(0x00);
        h.push(0x00);
        h
    }

    #[test]
    fn a_header_gives_its_length_and_sizes() {
        let h = header(2 << 30, 20);
        let sizes = page_sizes(&h).unwrap();
        assert_eq!(sizes.len as usize, h.len());
        assert_eq!((sizes.uncompressed, sizes.compressed), (2 << 30, 20));
    }

    #[test]
    fn bad_headers_are_refused_never_a_panic() {
        let h = header(100, 20);
        for cut in 0..h.len() {
            assert_eq!(
                page_sizes(&h[..cut]),
                Err(HeaderError::Short),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            page_sizes(&header(-1, 20)),
            Err(HeaderError::Bad(_))
        ));
        assert!(matches!(
            page_sizes(&header(1, -20)),
            Err(HeaderError::Bad(_))
        ));
        assert!(matches!(page_sizes(&[0x00]), Err(HeaderError::Bad(_))));
        // 40 nested structs
        let mut deep = vec![0x1c; 40];
        deep.extend([0u8; 41]);
        assert_eq!(
            page_sizes(&deep),
            Err(HeaderError::Bad("nested too deeply".into()))
        );
        // a list claiming 2^32 elements ends at the buffer's end
        assert_eq!(
            page_sizes(&[0x19, 0xf5, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(HeaderError::Short)
        );
        // random bytes: an answer, never a panic
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = page_sizes(&bytes);
        }
    }
}
