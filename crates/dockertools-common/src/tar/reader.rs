//! A tar reader with the semantics of Go's `archive/tar` (the reader behind Docker's tarsum).
//!
//! It returns one [`Entry`] per file, with GNU long names and link targets, PAX records
//! (`path`, `linkpath`, `uname`, `gname`, `uid`, `gid`, `size`, `SCHILY.xattr.*`) and the ustar
//! prefix applied, and streams each entry's logical data (sparse files expanded).
//! PAX global headers are returned as entries.
//! Memory is bounded whatever the input: PAX and long-name payloads and sparse maps are
//! limited to 1 MiB each, as in Go, and file data is streamed, never held.
//! Time is linear in the input and the data returned: records are found through an index and
//! sparse holes are walked in order.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::{Header, BLOCK};

/// PAX records in first-seen order, last value per key.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Longest PAX or GNU long-name payload accepted, as in Go.
const MAX_SPECIAL: u64 = 1 << 20;

/// Header formats an entry could be re-encoded in (Go's `tar.Format` bits).
pub mod format {
    /// Old V7 header.
    pub const V7: u8 = 1;
    /// POSIX ustar.
    pub const USTAR: u8 = 2;
    /// POSIX PAX.
    pub const PAX: u8 = 4;
    /// GNU.
    pub const GNU: u8 = 8;
    /// Schily's star.
    pub const STAR: u8 = 16;
}

/// What went wrong while reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ReadErrorKind {
    /// Reading the input failed.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The input ended inside a header, a payload or file data.
    #[error("unexpected end of input")]
    UnexpectedEof,
    /// A block that is not a valid tar header (bad checksum, garbage, compressed data).
    #[error("invalid tar header (bad checksum or not a tar archive)")]
    BadHeader,
    /// A numeric field that is not a valid number.
    #[error("invalid numeric field {0}")]
    BadNumber(&'static str),
    /// A zero block followed by a non-zero block.
    #[error("zero block followed by a non-zero block")]
    ZeroThenHeader,
    /// A negative data size.
    #[error("negative size")]
    NegativeSize,
    /// A malformed PAX record.
    #[error("malformed PAX record")]
    BadPax,
    /// A PAX or long-name payload over 1 MiB.
    #[error("extended header payload larger than 1 MiB")]
    SpecialTooLong,
    /// An invalid sparse map or sparse data that does not match it.
    #[error("invalid sparse file: {0}")]
    BadSparse(&'static str),
    /// A sparse map over 1 MiB (Go's limit, which bounds the memory a map takes).
    #[error("sparse map larger than 1 MiB")]
    SparseMapTooLong,
    /// Entry data read whole into memory ([`Reader::read_to_vec`]) that is over the caller's limit.
    #[error("entry data of {size} bytes is larger than the limit of {}", show_size(*.limit))]
    DataTooLarge {
        /// The entry's logical data size.
        size: u64,
        /// The limit it went over.
        limit: u64,
    },
}

/// A byte count as people write it: `64 MiB`, `256 KiB`, or `1000 bytes`.
fn show_size(n: u64) -> String {
    match n {
        0 => "0 bytes".to_string(),
        n if n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// An error with the position where it happened.
#[derive(Debug, thiserror::Error)]
#[error("entry {index} at byte offset {offset}: {kind}")]
pub struct ReadError {
    /// Index of the entry being read (0-based, in archive order).
    pub index: u64,
    /// Byte offset of that entry's first header block.
    pub offset: u64,
    /// What went wrong.
    #[source]
    pub kind: ReadErrorKind,
}

/// One entry as Go's reader returns it.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// Index in archive order (0-based; PAX and long-name headers are not entries).
    pub index: u64,
    /// Byte offset of the entry's first header block (its PAX or long-name header, if any).
    pub offset: u64,
    /// Name after long-name, PAX and prefix handling.
    pub name: Vec<u8>,
    /// The whole mode field, type bits included.
    pub mode: i64,
    /// Owner id.
    pub uid: i64,
    /// Group id.
    pub gid: i64,
    /// Logical size (for sparse files, the expanded size).
    pub size: i64,
    /// Modification time in seconds.
    pub mtime: i64,
    /// Typeflag (NUL already mapped to `0` or `5`).
    pub typeflag: u8,
    /// Link target.
    pub linkname: Vec<u8>,
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Device major number.
    pub devmajor: i64,
    /// Device minor number.
    pub devminor: i64,
    /// `SCHILY.xattr.*` records (key without the prefix), sorted by key.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// All PAX records that applied to this entry, in first-seen order, last value per key.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// Formats the entry may be written in (Go's `Header.Format`); 0 is "unknown".
    pub format: u8,
    /// Whether the access or change time was set (GNU or PAX), which rules out ustar.
    pub has_atime_ctime: bool,
}

impl Entry {
    /// The header that writes this entry again as read: permission bits of the mode, negative
    /// numbers as 0, and every PAX record it had (carried first by the PAX dialect).
    pub fn to_header(&self) -> Header {
        let unsigned = |n: i64| n.max(0) as u64;
        Header {
            name: self.name.clone(),
            mode: (self.mode & 0o7777) as u32,
            uid: unsigned(self.uid),
            gid: unsigned(self.gid),
            size: unsigned(self.size),
            mtime: self.mtime,
            typeflag: self.typeflag,
            linkname: self.linkname.clone(),
            uname: self.uname.clone(),
            gname: self.gname.clone(),
            devmajor: unsigned(self.devmajor),
            devminor: unsigned(self.devminor),
            pax_records: self.pax.clone(),
        }
    }

    /// Whether Go's writer would refuse to re-encode this header (tarsum re-encodes every entry).
    pub fn writer_rejects(&self) -> bool {
        let ends_slash = self.name.last() == Some(&b'/');
        if matches!(self.typeflag, b'0' | b'3' | b'4' | b'6' | b'S') && ends_slash {
            return true;
        }
        let header_only = matches!(self.typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        if !header_only && self.size < 0 {
            return true;
        }
        let mut allowed = self.string_formats() & self.number_formats();
        if self.has_atime_ctime {
            allowed &= !format::USTAR;
        }
        if self.typeflag == b'g' {
            allowed &= format::PAX;
        }
        if !self.xattrs.is_empty() || !self.pax.is_empty() {
            allowed &= format::PAX;
        }
        let mut want = self.format;
        if want != 0 {
            if want & format::PAX != 0 {
                want |= format::USTAR;
            }
            allowed &= want;
        }
        allowed == 0
    }

    /// The formats (of ustar, PAX and GNU) whose fields hold the entry's names.
    fn string_formats(&self) -> u8 {
        let mut allowed = format::USTAR | format::PAX | format::GNU;
        let strings: [(&[u8], usize, bool, bool); 4] = [
            (&self.name, 100, true, true),
            (&self.linkname, 100, true, false),
            (&self.uname, 32, false, false),
            (&self.gname, 32, false, false),
        ];
        for (s, size, long_gnu_ok, ustar_split) in strings {
            let too_long = s.len() > size;
            if s.contains(&0) || (too_long && !long_gnu_ok) {
                allowed &= !format::GNU;
            }
            if (!s.is_ascii() || too_long) && !(ustar_split && splits_ustar(s)) {
                allowed &= !format::USTAR;
            }
        }
        allowed
    }

    /// The formats (of ustar, PAX and GNU) whose fields, or records, hold the entry's numbers.
    fn number_formats(&self) -> u8 {
        let mut allowed = format::USTAR | format::PAX | format::GNU;
        let octal_fits = |n: i64, size: u32| n >= 0 && (n as u128) < 1u128 << (3 * (size - 1));
        let b256_fits = |n: i64, size: u32| {
            size >= 9 || {
                let bits = 8 * (size - 1);
                n >= -(1i64 << bits) && n < 1i64 << bits
            }
        };
        // Numbers PAX can carry in records: uid, gid, size, mtime. Mode and device numbers it
        // cannot.
        for (n, size, pax_ok) in [
            (self.mode, 8, false),
            (self.uid, 8, true),
            (self.gid, 8, true),
            (self.size, 12, true),
            (self.devmajor, 8, false),
            (self.devminor, 8, false),
            (self.mtime, 12, true),
        ] {
            if !b256_fits(n, size) {
                allowed &= !format::GNU;
            }
            if !octal_fits(n, size) {
                allowed &= !format::USTAR;
                if !pax_ok {
                    allowed &= !format::PAX;
                }
            }
        }
        allowed
    }
}

fn splits_ustar(name: &[u8]) -> bool {
    let len = name.len();
    if len <= 100 || !name.is_ascii() {
        return false;
    }
    let limit = (len - 1).min(156);
    let Some(i) = name[..limit].iter().rposition(|&b| b == b'/') else {
        return false;
    };
    let nlen = len - i - 1;
    i > 0 && nlen <= 100 && nlen != 0
}

fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(i) => &field[..i],
        None => field,
    }
}

fn parse_octal(field: &[u8]) -> Option<i64> {
    let start = field.iter().position(|&b| b != b' ' && b != 0);
    let Some(start) = start else { return Some(0) };
    let end = field
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(start, |e| e + 1);
    let digits = cstr(&field[start..end]);
    if digits.is_empty() {
        return None;
    }
    let mut x: u64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        x = x.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(x as i64)
}

fn parse_numeric(field: &[u8]) -> Option<i64> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in field.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 > 0 {
                    return None;
                }
                x = x << 8 | u64::from(c);
            }
            if x >> 63 > 0 {
                return None;
            }
            return Some(if inv == 0xff { !(x as i64) } else { x as i64 });
        }
    }
    parse_octal(field)
}

/// Go's `strconv.ParseInt(s, 10, 64)`.
fn parse_dec(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut x: i128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        x = x * 10 + i128::from(d - b'0');
        if x > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -x } else { x };
    i64::try_from(v).ok()
}

fn valid_pax_time(s: &[u8]) -> bool {
    let (secs, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    parse_dec(secs).is_some() && frac.iter().all(u8::is_ascii_digit)
}

fn block_format(b: &[u8; BLOCK]) -> u8 {
    let Some(value) = parse_octal(&b[148..156]) else {
        return 0;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    if value != unsigned && value != signed {
        return 0;
    }
    let magic = &b[257..263];
    let version = &b[263..265];
    if magic == b"ustar\0" && &b[508..512] == b"tar\0" {
        format::STAR
    } else if magic == b"ustar\0" {
        format::USTAR | format::PAX
    } else if magic == b"ustar " && version == b" \0" {
        format::GNU
    } else {
        format::V7
    }
}

/// Largest number of regions in a sparse map (Go's limit; 1 MiB of map text holds fewer).
const MAX_SPARSE_REGIONS: usize = 1 << 20;

/// Where a sparse file's holes are, and how far it has been read.
struct Sparse {
    /// Holes as (offset, end), in order, never empty: the last one ends at the logical size.
    holes: Vec<(i64, i64)>,
    /// Index of the hole at or after `pos`; the list is walked, never shifted.
    next: usize,
    pos: i64,
}

impl Sparse {
    /// Checks the data regions as Go does (in order, not overlapping, inside `size`) and turns
    /// them into holes; `None` for an invalid map.
    fn new(map: &[(i64, i64)], size: i64) -> Option<Sparse> {
        if size < 0 {
            return None;
        }
        let mut pre_end = 0i64;
        for &(off, len) in map {
            let end = off.checked_add(len)?;
            if off < 0 || len < 0 || end > size || pre_end > off {
                return None;
            }
            pre_end = end;
        }
        // Empty regions are dropped and adjacent ones joined, so holes are never empty,
        // except the last one when the data runs to the end.
        let mut holes = Vec::new();
        let mut pre = 0i64;
        for &(off, len) in map {
            if len == 0 {
                continue;
            }
            if off > pre {
                holes.push((pre, off));
            }
            pre = off + len;
        }
        holes.push((pre, size));
        Some(Sparse {
            holes,
            next: 0,
            pos: 0,
        })
    }

    /// The hole at or after the current position.
    fn hole(&self) -> (i64, i64) {
        let last = self.holes.last().copied().unwrap_or_default();
        self.holes.get(self.next).copied().unwrap_or(last)
    }

    /// Moves the position on by `n` bytes, past the current hole if it ends there.
    fn advance(&mut self, n: usize) {
        self.pos += n as i64;
        if self.pos >= self.hole().1 && self.next + 1 < self.holes.len() {
            self.next += 1;
        }
    }
}

/// The numbers of a GNU 1.0 sparse map, read token by token as its blocks arrive.
#[derive(Default)]
struct MapTokens {
    /// Bytes of the token being read (since the last newline).
    cur: Vec<u8>,
    /// Tokens completed so far.
    done: u64,
    /// The number of regions, once the first token is complete.
    count: Option<u64>,
    /// A region's offset waiting for its length.
    offset: Option<i64>,
    map: Vec<(i64, i64)>,
    /// The first error among the region tokens.
    failed: Option<ReadErrorKind>,
}

impl MapTokens {
    /// Whether every number the count announces has been read.
    fn complete(&self) -> bool {
        matches!(self.count, Some(c) if self.done > 2 * c)
    }

    /// Takes the next piece of the map, a line with or without its newline; an error when
    /// the count itself is bad (Go stops reading there).
    fn feed(&mut self, piece: &[u8]) -> Option<ReadErrorKind> {
        if self.complete() {
            // What follows the last number in its block is padding, never parsed.
            return None;
        }
        let Some((&b'\n', text)) = piece.split_last() else {
            self.cur.extend_from_slice(piece);
            return None;
        };
        self.cur.extend_from_slice(text);
        self.done += 1;
        let value = parse_dec(&self.cur);
        self.cur.clear();
        if self.count.is_none() {
            // Go refuses a count whose double overflows.
            match value.filter(|n| (0..1 << 62).contains(n)) {
                Some(n) => self.count = Some(n as u64),
                None => return Some(ReadErrorKind::BadSparse("bad sparse map")),
            }
        } else if self.failed.is_none() {
            self.region_token(value);
        }
        None
    }

    fn region_token(&mut self, value: Option<i64>) {
        let Some(v) = value else {
            self.failed = Some(ReadErrorKind::BadSparse("bad sparse map"));
            return;
        };
        match self.offset.take() {
            None => self.offset = Some(v),
            Some(_) if self.map.len() >= MAX_SPARSE_REGIONS => {
                self.failed = Some(ReadErrorKind::SparseMapTooLong);
            }
            Some(off) => self.map.push((off, v)),
        }
    }

    fn finish(self) -> Result<Vec<(i64, i64)>, ReadErrorKind> {
        match self.failed {
            Some(kind) => Err(kind),
            None => Ok(self.map),
        }
    }
}

/// A GNU header's access and change times: whether they are set (into `e`), and the format and
/// name prefix that follow. Times that do not parse mean the field is an old-style prefix, as Go
/// reads it, and the entry cannot be re-encoded as it was.
fn gnu_times<'b>(e: &mut Entry, blk: &'b [u8; BLOCK]) -> (u8, &'b [u8]) {
    let atime = &blk[345..357];
    let ctime = &blk[357..369];
    let mut times_ok = true;
    if atime[0] != 0 {
        times_ok &= parse_numeric(atime).is_some();
        e.has_atime_ctime = true;
    }
    if ctime[0] != 0 {
        times_ok &= parse_numeric(ctime).is_some();
        e.has_atime_ctime = true;
    }
    if times_ok {
        return (format::GNU, &[]);
    }
    e.has_atime_ctime = false;
    let p = cstr(&blk[345..500]);
    (0, if p.is_ascii() { p } else { &[] })
}

/// Reads entries from a tar stream.
pub struct Reader<R: Read> {
    r: R,
    offset: u64,
    index: u64,
    /// Physical data bytes left in the current entry.
    phys_left: u64,
    pad: u64,
    /// Logical bytes left in the current entry.
    logical_left: u64,
    sparse: Option<Sparse>,
    cur_offset: u64,
    done: bool,
    returned: bool,
}

enum Fill {
    Full,
    Empty,
    Partial,
}

impl<R: Read> Reader<R> {
    /// Starts reading `r` (wrap a slow reader in a `BufReader`).
    pub fn new(r: R) -> Self {
        Reader {
            r,
            offset: 0,
            index: 0,
            phys_left: 0,
            pad: 0,
            logical_left: 0,
            sparse: None,
            cur_offset: 0,
            done: false,
            returned: false,
        }
    }

    /// Bytes consumed from the input so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn err(&self, kind: ReadErrorKind) -> ReadError {
        ReadError {
            index: self.index,
            offset: self.cur_offset,
            kind,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<Fill, ReadError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(ReadErrorKind::Io(e))),
            }
        }
        self.offset += n as u64;
        Ok(if n == buf.len() {
            Fill::Full
        } else if n == 0 {
            Fill::Empty
        } else {
            Fill::Partial
        })
    }

    fn must_fill(&mut self, buf: &mut [u8]) -> Result<(), ReadError> {
        match self.fill(buf)? {
            Fill::Full => Ok(()),
            _ => Err(self.err(ReadErrorKind::UnexpectedEof)),
        }
    }

    fn skip(&mut self, mut n: u64) -> Result<Fill, ReadError> {
        let mut scratch = [0u8; 8192];
        let mut any = false;
        while n > 0 {
            let want = n.min(scratch.len() as u64) as usize;
            match self.fill(&mut scratch[..want])? {
                Fill::Full => {}
                Fill::Empty if !any => return Ok(Fill::Empty),
                _ => return Ok(Fill::Partial),
            }
            any = true;
            n -= want as u64;
        }
        Ok(Fill::Full)
    }

    /// Reads the payload of a PAX or long-name header (its declared size, capped at 1 MiB).
    fn special(&mut self, size: i64) -> Result<Vec<u8>, ReadError> {
        if size < 0 {
            return Err(self.err(ReadErrorKind::NegativeSize));
        }
        let size = size as u64;
        if size > MAX_SPECIAL {
            return Err(self.err(ReadErrorKind::SpecialTooLong));
        }
        let mut buf = vec![0u8; size as usize];
        self.must_fill(&mut buf)?;
        self.phys_left = 0;
        self.logical_left = 0;
        self.pad = super::block_padding(size) as u64;
        Ok(buf)
    }

    fn parse_pax(&self, buf: &[u8]) -> Result<Records, ReadError> {
        let bad = || self.err(ReadErrorKind::BadPax);
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut sparse_map: Vec<Vec<u8>> = Vec::new();
        // Where each key is in `out`: a payload can hold 200,000 records, so no linear search.
        let mut seen: BTreeMap<&[u8], usize> = BTreeMap::new();
        let mut s = buf;
        while !s.is_empty() {
            let sp = s.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            let n = parse_dec(&s[..sp]).ok_or_else(bad)?;
            if n < 5 || n as u64 > s.len() as u64 {
                return Err(bad());
            }
            let n = n as usize;
            if n <= sp + 1 {
                return Err(bad());
            }
            let rec = &s[sp + 1..n - 1];
            if s[n - 1] != b'\n' {
                return Err(bad());
            }
            let eq = rec.iter().position(|&b| b == b'=').ok_or_else(bad)?;
            let (k, v) = (&rec[..eq], &rec[eq + 1..]);
            let valid = !k.is_empty()
                && match k {
                    b"path" | b"linkpath" | b"uname" | b"gname" => !v.contains(&0),
                    _ => !k.contains(&0),
                };
            if !valid {
                return Err(bad());
            }
            if k == b"GNU.sparse.offset" || k == b"GNU.sparse.numbytes" {
                let expect_offset = sparse_map.len() % 2 == 0;
                if expect_offset != (k == b"GNU.sparse.offset") || v.contains(&b',') {
                    return Err(bad());
                }
                sparse_map.push(v.to_vec());
            } else if let Some(slot) = seen.get(k).and_then(|&i| out.get_mut(i)) {
                slot.1 = v.to_vec();
            } else {
                seen.insert(k, out.len());
                out.push((k.to_vec(), v.to_vec()));
            }
            s = &s[n..];
        }
        if !sparse_map.is_empty() {
            let joined = sparse_map.join(&b","[..]);
            let key: &[u8] = b"GNU.sparse.map";
            if let Some(slot) = seen.get(key).and_then(|&i| out.get_mut(i)) {
                slot.1 = joined;
            } else {
                out.push((key.to_vec(), joined));
            }
        }
        Ok(out)
    }

    /// Applies one PAX header's records (unique keys, as [`Self::parse_pax`] returns them) to a
    /// fresh entry.
    fn merge_pax(&self, e: &mut Entry, pax: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ReadError> {
        let bad = || self.err(ReadErrorKind::BadPax);
        e.pax = pax.to_vec();
        for (k, v) in pax {
            // Go keeps every record, empty ones included, in `PAXRecords`, and tarsum (moby
            // since v25) hashes the xattrs found there; only the header fields ignore empty values.
            if let Some(x) = k.strip_prefix(b"SCHILY.xattr.") {
                e.xattrs.insert(x.to_vec(), v.clone());
            }
            if v.is_empty() {
                continue;
            }
            match k.as_slice() {
                b"path" => e.name = v.clone(),
                b"linkpath" => e.linkname = v.clone(),
                b"uname" => e.uname = v.clone(),
                b"gname" => e.gname = v.clone(),
                b"uid" => e.uid = parse_dec(v).ok_or_else(bad)?,
                b"gid" => e.gid = parse_dec(v).ok_or_else(bad)?,
                b"size" => e.size = parse_dec(v).ok_or_else(bad)?,
                b"mtime" => {
                    if !valid_pax_time(v) {
                        return Err(bad());
                    }
                    let secs = v.split(|&b| b == b'.').next().unwrap_or_default();
                    e.mtime = parse_dec(secs).ok_or_else(bad)?;
                }
                b"atime" | b"ctime" => {
                    if !valid_pax_time(v) {
                        return Err(bad());
                    }
                    e.has_atime_ctime = true;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads the next header block; `Ok(None)` at a normal end of archive (the end of the
    /// input, or two zero blocks).
    fn header_block(&mut self) -> Result<Option<[u8; BLOCK]>, ReadError> {
        let mut blk = [0u8; BLOCK];
        match self.fill(&mut blk)? {
            Fill::Full => {}
            Fill::Empty => return Ok(None),
            Fill::Partial => return Err(self.err(ReadErrorKind::UnexpectedEof)),
        }
        if blk.iter().all(|&b| b == 0) {
            match self.fill(&mut blk)? {
                Fill::Full => {}
                Fill::Empty => return Ok(None),
                Fill::Partial => return Err(self.err(ReadErrorKind::UnexpectedEof)),
            }
            if blk.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            return Err(self.err(ReadErrorKind::ZeroThenHeader));
        }
        Ok(Some(blk))
    }

    /// Reads one header block; `Ok(None)` at a normal end of archive.
    fn header(&mut self) -> Result<Option<(Entry, [u8; BLOCK], u8)>, ReadError> {
        let Some(blk) = self.header_block()? else {
            return Ok(None);
        };
        let fmt = block_format(&blk);
        if fmt == 0 {
            return Err(self.err(ReadErrorKind::BadHeader));
        }
        let num = |field: &[u8], name: &'static str| {
            parse_numeric(field).ok_or_else(|| self.err(ReadErrorKind::BadNumber(name)))
        };
        let mut e = Entry {
            typeflag: blk[156],
            name: cstr(&blk[0..100]).to_vec(),
            linkname: cstr(&blk[157..257]).to_vec(),
            size: num(&blk[124..136], "size")?,
            mode: num(&blk[100..108], "mode")?,
            uid: num(&blk[108..116], "uid")?,
            gid: num(&blk[116..124], "gid")?,
            mtime: num(&blk[136..148], "mtime")?,
            ..Entry::default()
        };
        e.format = if fmt > format::V7 {
            self.ustar_fields(&mut e, &blk, fmt)?
        } else {
            format::V7
        };
        Ok(Some((e, blk, fmt)))
    }

    /// Reads the fields past the V7 header of a block in format `fmt` into `e` (owner names,
    /// device numbers, the name prefix, GNU and star times); returns the formats the entry may
    /// be re-encoded in, as Go's reader decides them.
    fn ustar_fields(&self, e: &mut Entry, blk: &[u8; BLOCK], fmt: u8) -> Result<u8, ReadError> {
        let num = |field: &[u8], name: &'static str| {
            parse_numeric(field).ok_or_else(|| self.err(ReadErrorKind::BadNumber(name)))
        };
        e.uname = cstr(&blk[265..297]).to_vec();
        e.gname = cstr(&blk[297..329]).to_vec();
        e.devmajor = num(&blk[329..337], "devmajor")?;
        e.devminor = num(&blk[337..345], "devminor")?;
        let mut hdr_format = 0;
        let mut prefix: &[u8] = &[];
        if fmt & (format::USTAR | format::PAX) != 0 {
            hdr_format = fmt;
            prefix = cstr(&blk[345..500]);
            let ends_nul = |r: std::ops::Range<usize>| blk[r.end - 1] == 0;
            if !blk.is_ascii()
                || !(ends_nul(124..136)
                    && ends_nul(100..108)
                    && ends_nul(108..116)
                    && ends_nul(116..124)
                    && ends_nul(136..148)
                    && ends_nul(329..337)
                    && ends_nul(337..345))
            {
                hdr_format = 0;
            }
        } else if fmt == format::STAR {
            prefix = cstr(&blk[345..476]);
            num(&blk[476..488], "atime")?;
            num(&blk[488..500], "ctime")?;
            e.has_atime_ctime = true;
        } else if fmt == format::GNU {
            (hdr_format, prefix) = gnu_times(e, blk);
        }
        if !prefix.is_empty() {
            let mut name = prefix.to_vec();
            name.push(b'/');
            name.extend_from_slice(&e.name);
            e.name = name;
        }
        Ok(hdr_format)
    }

    fn set_regular(&mut self, e: &Entry) -> Result<(), ReadError> {
        let nb = if matches!(e.typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
            0
        } else {
            e.size
        };
        if nb < 0 {
            return Err(self.err(ReadErrorKind::NegativeSize));
        }
        self.phys_left = nb as u64;
        self.logical_left = nb as u64;
        self.pad = super::block_padding(nb as u64) as u64;
        self.sparse = None;
        Ok(())
    }

    /// Returns the next entry, skipping whatever was not read of the previous one.
    /// `Ok(None)` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ReadError> {
        if self.done {
            return Ok(None);
        }
        if self.returned {
            // The rest of the returned entry is still that entry's: an error there names it.
            match self.skip_rest() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
            self.index += 1;
        }
        let r = self.next_inner();
        match &r {
            Ok(Some(_)) => self.returned = true,
            _ => self.done = true,
        }
        r
    }

    /// Discards the rest of the current entry's data and its padding; false when the archive
    /// ends inside the padding (Go: a short read inside data is an error, inside the padding
    /// it is the end).
    fn skip_rest(&mut self) -> Result<bool, ReadError> {
        let (data, pad) = (self.phys_left, self.pad);
        self.phys_left = 0;
        self.pad = 0;
        self.logical_left = 0;
        self.sparse = None;
        if data > 0 && !matches!(self.skip(data)?, Fill::Full) {
            return Err(self.err(ReadErrorKind::UnexpectedEof));
        }
        Ok(pad == 0 || matches!(self.skip(pad)?, Fill::Full))
    }

    fn next_inner(&mut self) -> Result<Option<Entry>, ReadError> {
        let mut pax: Option<Vec<(Vec<u8>, Vec<u8>)>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut fmt_acc = format::USTAR | format::PAX | format::GNU;
        let mut first = true;
        loop {
            // Discard the rest of a special header's payload.
            if !self.skip_rest()? {
                return Ok(None);
            }
            if first {
                self.cur_offset = self.offset;
                first = false;
            }
            let Some((mut e, blk, raw_fmt)) = self.header()? else {
                return Ok(None);
            };
            self.set_regular(&e)?;
            fmt_acc &= e.format;
            match e.typeflag {
                b'x' | b'g' => {
                    fmt_acc &= format::PAX;
                    let buf = self.special(e.size)?;
                    let recs = self.parse_pax(&buf)?;
                    if e.typeflag == b'g' {
                        return Ok(Some(self.global_entry(e.name, &recs, fmt_acc)));
                    }
                    pax = Some(recs);
                }
                b'L' | b'K' => {
                    fmt_acc &= format::GNU;
                    let buf = self.special(e.size)?;
                    let s = cstr(&buf).to_vec();
                    if e.typeflag == b'L' {
                        long_name = Some(s);
                    } else {
                        long_link = Some(s);
                    }
                }
                _ => {
                    if let Some(recs) = &pax {
                        self.merge_pax(&mut e, recs)?;
                    }
                    if let Some(n) = long_name.take().filter(|n| !n.is_empty()) {
                        e.name = n;
                    }
                    if let Some(l) = long_link.take().filter(|l| !l.is_empty()) {
                        e.linkname = l;
                    }
                    if e.typeflag == 0 {
                        e.typeflag = if e.name.last() == Some(&b'/') {
                            b'5'
                        } else {
                            b'0'
                        };
                    }
                    self.set_regular(&e)?;
                    e.format = fmt_acc;
                    self.sparse_setup(&mut e, &blk, raw_fmt)?;
                    if e.format & format::USTAR != 0 && e.format & format::PAX != 0 {
                        e.format &= format::USTAR;
                    }
                    e.index = self.index;
                    e.offset = self.cur_offset;
                    return Ok(Some(e));
                }
            }
        }
    }

    /// A PAX global header as Go returns it: its name and records, nothing else.
    fn global_entry(&mut self, name: Vec<u8>, recs: &[(Vec<u8>, Vec<u8>)], format: u8) -> Entry {
        let mut g = Entry {
            index: self.index,
            offset: self.cur_offset,
            name,
            typeflag: b'g',
            format,
            ..Entry::default()
        };
        // Go ignores a bad record in a global header (an unparsable uid, say): the header comes
        // back without records, keeping the name and xattrs applied before the bad record.
        // Go applies them in map order, which is random; archive order, kept here, is one of
        // its outcomes (the most frequent one), and the only one when nothing else precedes.
        if self.merge_pax(&mut g, recs).is_err() {
            g.pax.clear();
        }
        // Only the name and the records survive on a global header.
        g.linkname.clear();
        g.uname.clear();
        g.gname.clear();
        g.uid = 0;
        g.gid = 0;
        g.size = 0;
        g.mtime = 0;
        g.has_atime_ctime = false;
        self.phys_left = 0;
        self.logical_left = 0;
        g
    }

    fn sparse_setup(
        &mut self,
        e: &mut Entry,
        blk: &[u8; BLOCK],
        raw_fmt: u8,
    ) -> Result<(), ReadError> {
        let map = if e.typeflag == b'S' {
            if raw_fmt != format::GNU {
                return Err(self.err(ReadErrorKind::BadHeader));
            }
            e.format &= format::GNU;
            e.size = parse_numeric(&blk[483..495])
                .ok_or_else(|| self.err(ReadErrorKind::BadSparse("real size")))?;
            Some(self.old_gnu_sparse_map(blk)?)
        } else {
            self.pax_sparse(e)?
        };
        let Some(map) = map else { return Ok(()) };
        let header_only = matches!(e.typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        let sparse = Sparse::new(&map, e.size);
        let Some(sparse) = sparse.filter(|_| !header_only) else {
            return Err(self.err(ReadErrorKind::BadSparse("bad sparse map")));
        };
        self.logical_left = e.size as u64;
        self.sparse = Some(sparse);
        Ok(())
    }

    /// Reads the old GNU sparse map: four regions in the header, then extension blocks of 21
    /// while the "extended" flag is set, at most 1 MiB of them in all (Go's limit).
    fn old_gnu_sparse_map(&mut self, blk: &[u8; BLOCK]) -> Result<Vec<(i64, i64)>, ReadError> {
        let bad = |s: &Self, what: &'static str| s.err(ReadErrorKind::BadSparse(what));
        let mut map = Vec::new();
        let mut area: [u8; BLOCK] = [0; BLOCK];
        // The header's sparse area (4 regions and the flag) is at 386..483.
        area[..97].copy_from_slice(&blk[386..483]);
        let mut entries = 4;
        // Go counts the sparse areas read so far (97 bytes in the header, a whole block per
        // extension) and fails once they reach 1 MiB, before parsing the block that got there:
        // at most 2047 extension blocks, 42,991 regions.
        let mut total = 97usize;
        loop {
            for ent in area.chunks_exact(24).take(entries) {
                if ent[0] == 0 {
                    break;
                }
                let off = parse_numeric(&ent[..12]).ok_or_else(|| bad(self, "offset"))?;
                let len = parse_numeric(&ent[12..]).ok_or_else(|| bad(self, "length"))?;
                self.push_region(&mut map, off, len)?;
            }
            if area[entries * 24] == 0 {
                return Ok(map);
            }
            self.must_fill(&mut area)?;
            entries = 21;
            total += BLOCK;
            if total >= MAX_SPECIAL as usize {
                return Err(self.err(ReadErrorKind::SparseMapTooLong));
            }
        }
    }

    /// Appends one data region, refusing more than Go's 2^20 (never reached within 1 MiB).
    fn push_region(&self, map: &mut Vec<(i64, i64)>, off: i64, len: i64) -> Result<(), ReadError> {
        if map.len() >= MAX_SPARSE_REGIONS {
            return Err(self.err(ReadErrorKind::SparseMapTooLong));
        }
        map.push((off, len));
        Ok(())
    }

    /// Reads the GNU PAX sparse records (formats 0.0, 0.1 and 1.0); `None` when not sparse.
    fn pax_sparse(&mut self, e: &mut Entry) -> Result<Option<Vec<(i64, i64)>>, ReadError> {
        let bad = |s: &Self| s.err(ReadErrorKind::BadSparse("bad sparse map"));
        let get = |k: &[u8]| {
            e.pax
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let major = get(b"GNU.sparse.major");
        let minor = get(b"GNU.sparse.minor");
        let is1x0 = if major == b"0" && (minor == b"0" || minor == b"1") {
            false
        } else if major == b"1" && minor == b"0" {
            true
        } else if !major.is_empty() || !minor.is_empty() {
            return Ok(None);
        } else if !get(b"GNU.sparse.map").is_empty() {
            false
        } else {
            return Ok(None);
        };
        e.format &= format::PAX;
        let name = get(b"GNU.sparse.name");
        if !name.is_empty() {
            e.name = name;
        }
        let mut size = get(b"GNU.sparse.size");
        if size.is_empty() {
            size = get(b"GNU.sparse.realsize");
        }
        if !size.is_empty() {
            e.size = parse_dec(&size).ok_or_else(|| bad(self))?;
        }
        if is1x0 {
            return self.sparse_map_1x0().map(Some);
        }
        let count = parse_dec(&get(b"GNU.sparse.numblocks"))
            .filter(|&n| (0..1 << 62).contains(&n))
            .ok_or_else(|| bad(self))?;
        let raw = get(b"GNU.sparse.map");
        let mut parts = raw.split(|&b| b == b',');
        let expected = 2 * count as usize;
        // An empty record is no numbers at all, not one empty number.
        let found = if raw.is_empty() {
            0
        } else {
            raw.iter().filter(|&&b| b == b',').count() + 1
        };
        if found != expected {
            return Err(bad(self));
        }
        let mut map = Vec::new();
        for _ in 0..count {
            let mut next = || parts.next().and_then(parse_dec).ok_or_else(|| bad(self));
            let (off, len) = (next()?, next()?);
            self.push_region(&mut map, off, len)?;
        }
        Ok(Some(map))
    }

    /// Reads the GNU 1.0 sparse map at the start of the data: newline-terminated decimal
    /// numbers (the count, then offset and length pairs), padded to whole blocks.
    /// Like Go, it reads whole blocks until it has every number, at most 1 MiB of them,
    /// and parses as it goes, so memory stays within the map's own 1 MiB.
    fn sparse_map_1x0(&mut self) -> Result<Vec<(i64, i64)>, ReadError> {
        let mut tok = MapTokens::default();
        let mut blk = [0u8; BLOCK];
        let mut total = 0usize;
        while !tok.complete() {
            total += BLOCK;
            if total > MAX_SPECIAL as usize {
                return Err(self.err(ReadErrorKind::SparseMapTooLong));
            }
            if self.phys_left < BLOCK as u64 {
                return Err(self.err(ReadErrorKind::UnexpectedEof));
            }
            self.must_fill(&mut blk)?;
            self.phys_left -= BLOCK as u64;
            for line in blk.split_inclusive(|&c| c == b'\n') {
                if let Some(kind) = tok.feed(line) {
                    return Err(self.err(kind));
                }
            }
        }
        // Go parses the regions only once it has read them all, so a bad number is reported
        // after the block reading above has succeeded.
        tok.finish().map_err(|kind| self.err(kind))
    }

    /// Reads the current entry's logical data into `buf`; `Ok(0)` at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        if self.logical_left == 0 || buf.is_empty() {
            if self.logical_left == 0 && self.sparse.is_some() && self.phys_left > 0 {
                return Err(self.err(ReadErrorKind::BadSparse("more data than the sparse map")));
            }
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.logical_left) as usize;
        let Some(sp) = self.sparse.as_ref() else {
            let n = self.read_phys(&mut buf[..want])?;
            self.logical_left -= n as u64;
            return Ok(n);
        };
        // One fragment per call: data up to the next hole, or the zeros of the hole.
        let (hole_start, hole_end) = sp.hole();
        let pos = sp.pos;
        let n = if pos < hole_start {
            let take = want.min(usize::try_from(hole_start - pos).unwrap_or(usize::MAX));
            if self.phys_left < take as u64 {
                return Err(self.err(ReadErrorKind::BadSparse("less data than the sparse map")));
            }
            self.read_phys(&mut buf[..take])?
        } else {
            let take = want.min(usize::try_from(hole_end - pos).unwrap_or(usize::MAX));
            buf[..take].fill(0);
            take
        };
        self.logical_left -= n as u64;
        if let Some(sp) = self.sparse.as_mut() {
            sp.advance(n);
        }
        if self.logical_left == 0 && self.phys_left > 0 {
            return Err(self.err(ReadErrorKind::BadSparse("more data than the sparse map")));
        }
        Ok(n)
    }

    fn read_phys(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        let want = (buf.len() as u64).min(self.phys_left) as usize;
        if want == 0 {
            return Ok(0);
        }
        loop {
            match self.r.read(&mut buf[..want]) {
                Ok(0) => return Err(self.err(ReadErrorKind::UnexpectedEof)),
                Ok(n) => {
                    self.offset += n as u64;
                    self.phys_left -= n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(ReadErrorKind::Io(e))),
            }
        }
    }

    /// The current entry's data as a [`Read`]er (its errors are [`ReadError`]s inside
    /// `io::Error`s of kind `Other`).
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { r: self }
    }

    /// Reads the rest of the current entry's data into a vector (for small members such as JSON).
    pub fn read_to_vec(&mut self, limit: u64) -> Result<Vec<u8>, ReadError> {
        if self.logical_left > limit {
            let size = self.logical_left;
            return Err(self.err(ReadErrorKind::DataTooLarge { size, limit }));
        }
        let mut out = vec![0u8; self.logical_left as usize];
        let mut n = 0;
        while n < out.len() {
            let k = self.read_data(&mut out[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        out.truncate(n);
        // One more read reports what the loop above cannot see: sparse data left over.
        let mut probe = [0u8; 1];
        if self.read_data(&mut probe)? != 0 {
            return Err(self.err(ReadErrorKind::BadSparse("more data than declared")));
        }
        Ok(out)
    }
}

/// The current entry's data ([`Reader::data`]).
pub struct EntryData<'a, R: Read> {
    r: &'a mut Reader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read_data(buf).map_err(io::Error::other)
    }
}

impl<R: Read + io::Seek> Reader<R> {
    /// Skips the rest of the current entry's data by seeking instead of reading
    /// (plain, non-sparse data only). The caller checks the archive is long enough.
    pub fn seek_past_data(&mut self) -> Result<(), ReadError> {
        if self.sparse.is_some() || self.phys_left == 0 {
            return Ok(());
        }
        let n = self.phys_left;
        let delta = i64::try_from(n).map_err(|_| self.err(ReadErrorKind::UnexpectedEof))?;
        self.r
            .seek(io::SeekFrom::Current(delta))
            .map_err(|e| self.err(ReadErrorKind::Io(e)))?;
        self.offset += n;
        self.phys_left = 0;
        self.logical_left = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::{put_checksum, put_octal};

    /// Header magic and version of the two dialects the tests write.
    const USTAR: &[u8; 8] = b"ustar\x0000";
    const GNU: &[u8; 8] = b"ustar  \0";

    /// One header block: `name`, mode 0644, the given size and typeflag, mtime 1.
    fn block(name: &[u8], size: u64, typeflag: u8, magic: &[u8; 8]) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        put_octal(&mut b[100..108], 0o644);
        put_octal(&mut b[108..116], 0);
        put_octal(&mut b[116..124], 0);
        put_octal(&mut b[124..136], size);
        put_octal(&mut b[136..148], 1);
        b[156] = typeflag;
        b[257..265].copy_from_slice(magic);
        put_checksum(&mut b);
        b
    }

    /// A header followed by its data, padded to whole blocks.
    fn entry(out: &mut Vec<u8>, name: &[u8], typeflag: u8, magic: &[u8; 8], data: &[u8]) {
        out.extend_from_slice(&block(name, data.len() as u64, typeflag, magic));
        data_blocks(out, data);
    }

    fn data_blocks(out: &mut Vec<u8>, data: &[u8]) {
        out.extend_from_slice(data);
        out.resize(out.len() + crate::tar::block_padding(data.len() as u64), 0);
    }

    /// A PAX payload: `<len> <key>=<value>\n` per record, the length counting itself.
    fn pax(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = k.len() + v.len() + 3;
            let mut len = body + body.to_string().len();
            if len.to_string().len() + body != len {
                len += 1;
            }
            out.extend_from_slice(len.to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(k);
            out.push(b'=');
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out
    }

    fn end(mut out: Vec<u8>) -> Vec<u8> {
        out.resize(out.len() + 2 * BLOCK, 0);
        out
    }

    /// Contents of a sparse test file: `n` one-byte regions at odd offsets, zeros elsewhere.
    fn sparse_regions(n: usize) -> (Vec<(u64, u64)>, Vec<u8>, Vec<u8>) {
        let regions: Vec<(u64, u64)> = (0..n as u64).map(|i| (2 * i + 1, 1)).collect();
        let data: Vec<u8> = (0..n).map(|i| b'A' + (i % 26) as u8).collect();
        let mut logical = vec![0u8; 2 * n + 1];
        for (i, &d) in data.iter().enumerate() {
            logical[2 * i + 1] = d;
        }
        (regions, data, logical)
    }

    /// An old GNU sparse entry ('S') with the regions in the header and extension blocks.
    fn old_gnu_sparse(out: &mut Vec<u8>, name: &[u8], n: usize) -> Vec<u8> {
        let (regions, data, logical) = sparse_regions(n);
        let mut b = block(name, data.len() as u64, b'S', GNU);
        put_octal(&mut b[483..495], logical.len() as u64);
        let (first, mut rest) = regions.split_at(n.min(4));
        for (i, &(off, len)) in first.iter().enumerate() {
            put_octal(&mut b[386 + 24 * i..398 + 24 * i], off);
            put_octal(&mut b[398 + 24 * i..410 + 24 * i], len);
        }
        b[482] = u8::from(!rest.is_empty());
        put_checksum(&mut b);
        out.extend_from_slice(&b);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(21));
            let mut ext = [0u8; BLOCK];
            for (i, &(off, len)) in chunk.iter().enumerate() {
                put_octal(&mut ext[24 * i..24 * i + 12], off);
                put_octal(&mut ext[24 * i + 12..24 * i + 24], len);
            }
            ext[504] = u8::from(!tail.is_empty());
            out.extend_from_slice(&ext);
            rest = tail;
        }
        data_blocks(out, &data);
        logical
    }

    /// The GNU 1.0 map text for `regions`: the count, then offset and length, one per line.
    fn map_1x0(regions: &[(u64, u64)]) -> Vec<u8> {
        let mut m = format!("{}\n", regions.len()).into_bytes();
        for (off, len) in regions {
            m.extend_from_slice(format!("{off}\n{len}\n").as_bytes());
        }
        m
    }

    /// A PAX sparse entry in format 1.0 whose map text is `map` (padded to whole blocks).
    fn pax_sparse_1x0(out: &mut Vec<u8>, map: &[u8], data: &[u8], real: usize) {
        let recs = pax(&[
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.name", b"sparse-1.0"),
            (b"GNU.sparse.realsize", real.to_string().as_bytes()),
        ]);
        entry(out, b"PaxHeaders/s", b'x', USTAR, &recs);
        let mut body = map.to_vec();
        body.resize(body.len() + crate::tar::block_padding(map.len() as u64), 0);
        body.extend_from_slice(data);
        entry(out, b"GNUSparseFile.0/s", b'0', USTAR, &body);
    }

    /// A PAX sparse entry in format 0.1 (the map in one record) or 0.0 (a record per number).
    fn pax_sparse_0x(out: &mut Vec<u8>, minor: &[u8], n: usize) -> Vec<u8> {
        let (regions, data, logical) = sparse_regions(n);
        let count = n.to_string();
        let real = logical.len().to_string();
        let numbers: Vec<(String, String)> = regions
            .iter()
            .map(|(o, l)| (o.to_string(), l.to_string()))
            .collect();
        let joined = numbers
            .iter()
            .map(|(o, l)| format!("{o},{l}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut recs: Vec<(&[u8], &[u8])> = vec![
            (b"GNU.sparse.major", b"0"),
            (b"GNU.sparse.minor", minor),
            (b"GNU.sparse.name", b"sparse-0.x"),
            (b"GNU.sparse.size", real.as_bytes()),
            (b"GNU.sparse.numblocks", count.as_bytes()),
        ];
        if minor == b"1" {
            recs.push((b"GNU.sparse.map", joined.as_bytes()));
        } else {
            for (o, l) in &numbers {
                recs.push((b"GNU.sparse.offset", o.as_bytes()));
                recs.push((b"GNU.sparse.numbytes", l.as_bytes()));
            }
        }
        entry(out, b"PaxHeaders/s", b'x', USTAR, &pax(&recs));
        entry(out, b"GNUSparseFile.0/s", b'0', USTAR, &data);
        logical
    }

    /// Every kind of entry the reader handles, in one archive each.
    fn archives() -> Vec<(&'static str, Vec<u8>)> {
        let long = [b'n'; 150];
        let mut gnu = Vec::new();
        entry(&mut gnu, b"././@LongLink", b'L', GNU, &long);
        entry(&mut gnu, b"short", b'0', GNU, &[7u8; 1000]);
        entry(&mut gnu, b"././@LongLink", b'K', GNU, &[b'k'; 120]);
        entry(&mut gnu, b"link", b'2', GNU, b"");
        entry(&mut gnu, b"dir/", b'5', GNU, b"");
        let mut paxed = Vec::new();
        let recs = pax(&[
            (b"path", &[b'p'; 300][..]),
            (b"uid", b"4242"),
            (b"SCHILY.xattr.user.a", b"1"),
            (b"SCHILY.xattr.user.empty", b""),
        ]);
        entry(&mut paxed, b"PaxHeaders/x", b'x', USTAR, &recs);
        entry(&mut paxed, b"x", b'0', USTAR, &[3u8; 5000]);
        entry(
            &mut paxed,
            b"global",
            b'g',
            USTAR,
            &pax(&[(b"comment", b"hi")]),
        );
        entry(&mut paxed, b"after-global", b'0', USTAR, b"tail");
        let mut old = Vec::new();
        old_gnu_sparse(&mut old, b"old-sparse", 30);
        let (mut p00, mut p01) = (Vec::new(), Vec::new());
        pax_sparse_0x(&mut p00, b"0", 9);
        pax_sparse_0x(&mut p01, b"1", 9);
        let (regions, data, logical) = sparse_regions(40);
        let mut p10 = Vec::new();
        pax_sparse_1x0(&mut p10, &map_1x0(&regions), &data, logical.len());
        entry(&mut p10, b"after", b'0', USTAR, b"x");
        [
            ("gnu", gnu),
            ("pax", paxed),
            ("old-gnu-sparse", old),
            ("pax-sparse-0.0", p00),
            ("pax-sparse-0.1", p01),
            ("pax-sparse-1.0", p10),
        ]
        .into_iter()
        .map(|(name, a)| (name, end(a)))
        .collect()
    }

    /// A small xorshift generator, so the tests need no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Returns between 1 and 700 bytes per read, and now and then `Interrupted`.
    struct RandomReader<'a> {
        data: &'a [u8],
        rng: Rng,
    }

    impl Read for RandomReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.rng.below(10) == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = (1 + self.rng.below(700))
                .min(buf.len())
                .min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every entry (as text) and its data, read with buffers of `sizes` in turn.
    fn read_all<R: Read>(r: R, sizes: &[usize]) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
        let mut reader = Reader::new(r);
        let mut out = Vec::new();
        let mut turn = 0;
        while let Some(e) = reader.next_entry()? {
            let mut data = Vec::new();
            loop {
                let mut buf = vec![0u8; sizes[turn % sizes.len()]];
                turn += 1;
                let n = reader.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            out.push((format!("{e:?}"), data));
        }
        Ok(out)
    }

    fn kind_of(input: &[u8]) -> ReadErrorKind {
        match read_all(input, &[4096]) {
            Err(e) => e.kind,
            Ok(entries) => panic!("expected an error, read {} entries", entries.len()),
        }
    }

    #[test]
    fn short_reads_at_random_give_the_same_entries_and_data() {
        for (name, archive) in archives() {
            let plain = read_all(&archive[..], &[1 << 16]).unwrap();
            assert!(!plain.is_empty(), "{name}");
            for seed in 1..=20 {
                let r = RandomReader {
                    data: &archive,
                    rng: Rng(seed),
                };
                let sizes = [1 + seed as usize, 3, 512, 7000];
                assert_eq!(read_all(r, &sizes).unwrap(), plain, "{name} seed {seed}");
            }
        }
    }

    #[test]
    fn entries_and_data_are_read_as_written() {
        let all: Vec<_> = archives()
            .into_iter()
            .map(|(_, a)| read_all(&a[..], &[100]).unwrap())
            .collect();
        let [gnu, paxed, old, p00, p01, p10] = &all[..] else {
            panic!("six archives")
        };
        assert_eq!(gnu.len(), 3);
        assert!(gnu[0].0.contains(&format!("name: {:?}", vec![b'n'; 150])));
        assert_eq!(gnu[0].1, vec![7u8; 1000]);
        assert_eq!(paxed.len(), 3);
        assert!(paxed[0].0.contains("uid: 4242"));
        assert_eq!(paxed[0].1, vec![3u8; 5000]);
        assert!(paxed[1].0.contains("typeflag: 103"));
        assert_eq!(paxed[2].1, b"tail");
        assert_eq!(old[0].1, sparse_regions(30).2);
        assert_eq!(p00[0].1, sparse_regions(9).2);
        assert_eq!(p01[0].1, sparse_regions(9).2);
        assert_eq!(p10[0].1, sparse_regions(40).2);
        assert_eq!(p10[1].1, b"x");
    }

    #[test]
    fn an_empty_xattr_value_is_kept() {
        let (_, archive) = &archives()[1];
        let mut reader = Reader::new(&archive[..]);
        let e = reader.next_entry().unwrap().unwrap();
        let want: BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"user.a".to_vec(), b"1".to_vec()),
            (b"user.empty".to_vec(), Vec::new()),
        ]
        .into();
        assert_eq!(e.xattrs, want);
    }

    #[test]
    fn a_failing_input_is_an_io_error() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = Reader::new(Broken).next_entry().unwrap_err();
        assert!(matches!(&err.kind, ReadErrorKind::Io(e) if e.to_string() == "disk on fire"));
    }

    #[test]
    fn a_truncated_header_or_data_is_unexpected_eof() {
        let mut a = Vec::new();
        entry(&mut a, b"f", b'0', USTAR, &[1u8; 1000]);
        assert!(matches!(kind_of(&a[..300]), ReadErrorKind::UnexpectedEof));
        assert!(matches!(kind_of(&a[..700]), ReadErrorKind::UnexpectedEof));
    }

    #[test]
    fn data_cut_short_while_skipping_is_blamed_on_its_own_entry() {
        let mut a = Vec::new();
        entry(&mut a, b"first", b'0', USTAR, b"x");
        entry(&mut a, b"second", b'0', USTAR, &[1u8; 1000]);
        let mut r = Reader::new(&a[..1536 + 100]);
        let _ = r.next_entry().unwrap();
        let second = r.next_entry().unwrap().unwrap();
        assert_eq!((second.index, second.offset), (1, 1024));
        let err = r.next_entry().unwrap_err();
        assert!(matches!(err.kind, ReadErrorKind::UnexpectedEof));
        assert_eq!((err.index, err.offset), (1, 1024));
    }

    #[test]
    fn a_block_with_a_bad_checksum_is_a_bad_header() {
        let mut a = block(b"f", 0, b'0', USTAR).to_vec();
        a[0] = b'g';
        assert!(matches!(kind_of(&end(a)), ReadErrorKind::BadHeader));
    }

    #[test]
    fn a_non_octal_field_is_a_bad_number() {
        let mut b = block(b"f", 0, b'0', USTAR);
        b[100..108].copy_from_slice(b"0000x44\0");
        put_checksum(&mut b);
        assert!(matches!(
            kind_of(&end(b.to_vec())),
            ReadErrorKind::BadNumber("mode")
        ));
    }

    #[test]
    fn a_zero_block_followed_by_a_header_is_an_error() {
        let mut a = vec![0u8; BLOCK];
        a.extend_from_slice(&block(b"f", 0, b'0', USTAR));
        assert!(matches!(kind_of(&end(a)), ReadErrorKind::ZeroThenHeader));
    }

    #[test]
    fn a_negative_size_is_an_error() {
        let mut b = block(b"f", 0, b'0', GNU);
        b[124..136].fill(0xff);
        put_checksum(&mut b);
        assert!(matches!(
            kind_of(&end(b.to_vec())),
            ReadErrorKind::NegativeSize
        ));
    }

    #[test]
    fn a_malformed_pax_record_is_an_error() {
        let mut a = Vec::new();
        entry(&mut a, b"PaxHeaders/f", b'x', USTAR, b"9 path\n");
        entry(&mut a, b"f", b'0', USTAR, b"");
        assert!(matches!(kind_of(&end(a)), ReadErrorKind::BadPax));
    }

    #[test]
    fn an_extended_header_over_1_mib_is_an_error() {
        let mut a = Vec::new();
        let big = pax(&[(b"comment", &vec![b'c'; 1 << 20][..])]);
        entry(&mut a, b"PaxHeaders/f", b'x', USTAR, &big);
        assert!(matches!(kind_of(&end(a)), ReadErrorKind::SpecialTooLong));
    }

    #[test]
    fn overlapping_sparse_regions_are_an_error() {
        let mut a = Vec::new();
        pax_sparse_1x0(&mut a, b"2\n0\n5\n3\n5\n", &[1u8; 10], 20);
        assert!(matches!(
            kind_of(&end(a)),
            ReadErrorKind::BadSparse("bad sparse map")
        ));
    }

    #[test]
    fn a_bad_record_in_a_global_header_is_ignored_as_go_does() {
        let mut a = Vec::new();
        let recs = pax(&[
            (b"path", b"zz"),
            (b"uid", b"abc"),
            (b"SCHILY.xattr.a", b"1"),
        ]);
        entry(&mut a, b"pax_global_header", b'g', USTAR, &recs);
        entry(&mut a, b"f", b'0', USTAR, b"data");
        let entries = read_all(&end(a)[..], &[4096]).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(
            entries[0].0.contains("name: [122, 122]"),
            "{}",
            entries[0].0
        );
        assert!(
            entries[0].0.contains("xattrs: {}, pax: []"),
            "{}",
            entries[0].0
        );
        assert_eq!(entries[1].1, b"data");
    }

    #[test]
    fn a_sparse_map_larger_than_1_mib_is_an_error() {
        // The map fills exactly 1 MiB: read. One byte more (a 2049th block): refused.
        let (regions, data, logical) = sparse_regions(3);
        for (extra, ok) in [(0, true), (1, false)] {
            let map = map_1x0(&regions);
            let mut padded = b"3\n".to_vec();
            padded.resize((1 << 20) + extra - (map.len() - 2), b'0');
            padded.extend_from_slice(&map[2..]);
            let mut a = Vec::new();
            pax_sparse_1x0(&mut a, &padded, &data, logical.len());
            let got = read_all(&end(a)[..], &[4096]);
            match got {
                Ok(entries) if ok => assert_eq!(entries[0].1, logical),
                Err(e) if !ok => assert!(matches!(e.kind, ReadErrorKind::SparseMapTooLong)),
                other => panic!("extra {extra}: {:?}", other.map(|v| v.len())),
            }
        }
    }

    #[test]
    fn a_sparse_bomb_is_refused_after_reading_1_mib() {
        // A map announcing 2^40 regions, then nothing but zeros: Go stops after 1 MiB.
        let mut a = Vec::new();
        let zeros = vec![0u8; 3 << 20];
        let mut body = b"1099511627776\n".to_vec();
        body.extend_from_slice(&zeros);
        pax_sparse_1x0(&mut a, &body, b"", 1 << 30);
        let mut reader = Reader::new(&a[..]);
        let err = reader.next_entry().unwrap_err();
        assert!(matches!(err.kind, ReadErrorKind::SparseMapTooLong));
        assert!(reader.offset() <= (1 << 20) + 4 * BLOCK as u64);
    }

    #[test]
    fn an_old_gnu_sparse_map_larger_than_1_mib_is_an_error() {
        // 4 regions in the header and 2047 extension blocks of 21 fit in Go's 1 MiB.
        let most = 4 + 21 * 2047;
        for (n, ok) in [(most, true), (most + 1, false)] {
            let mut a = Vec::new();
            let logical = old_gnu_sparse(&mut a, b"s", n);
            match read_all(&end(a)[..], &[1 << 16]) {
                Ok(entries) if ok => assert_eq!(entries[0].1, logical),
                Err(e) if !ok => assert!(matches!(e.kind, ReadErrorKind::SparseMapTooLong)),
                other => panic!("{n} regions: {:?}", other.map(|v| v.len())),
            }
        }
    }

    #[test]
    fn many_sparse_regions_are_read_in_linear_time() {
        // About the most regions 1 MiB of map can hold; quadratic hole handling took minutes.
        let (regions, data, logical) = sparse_regions(110_000);
        let mut a = Vec::new();
        pax_sparse_1x0(&mut a, &map_1x0(&regions), &data, logical.len());
        pax_sparse_0x(&mut a, b"1", 90_000);
        let entries = read_all(&end(a)[..], &[1 << 16]).unwrap();
        assert_eq!(entries[0].1, logical);
        assert_eq!(entries[1].1, sparse_regions(90_000).2);
    }

    #[test]
    fn many_pax_records_are_read_in_linear_time() {
        // 100,000 distinct keys in one header; a linear search per record took a minute.
        let keys: Vec<String> = (0..100_000).map(|i| format!("k{i:x}")).collect();
        let recs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_bytes(), &b""[..])).collect();
        let mut a = Vec::new();
        entry(&mut a, b"PaxHeaders/f", b'x', USTAR, &pax(&recs));
        entry(&mut a, b"f", b'0', USTAR, b"");
        let e = Reader::new(&end(a)[..]).next_entry().unwrap().unwrap();
        assert_eq!(e.pax.len(), 100_000);
        assert_eq!(e.pax[99_999], (b"k1869f".to_vec(), Vec::new()));
    }

    #[test]
    fn a_member_over_the_read_limit_names_its_size_and_the_limit() {
        let mut a = Vec::new();
        entry(&mut a, b"big.json", b'0', USTAR, &[b' '; 3000]);
        let mut reader = Reader::new(&a[..]);
        reader.next_entry().unwrap();
        let err = reader.read_to_vec(2048).unwrap_err();
        assert!(matches!(
            err.kind,
            ReadErrorKind::DataTooLarge {
                size: 3000,
                limit: 2048
            }
        ));
        assert_eq!(
            err.to_string(),
            "entry 0 at byte offset 0: entry data of 3000 bytes is larger than the limit of 2 KiB"
        );
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(1000), "1000 bytes");
    }

    #[test]
    fn a_written_entry_reads_back_as_its_header_and_data() {
        use crate::tar::writer::{Data, TarWriter};
        use crate::tar::Dialect;
        let h = Header {
            name: "d/\u{e9}t\u{e9}-a-long-name-".repeat(6).into_bytes(),
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            size: 700,
            mtime: 1_700_000_000,
            typeflag: b'0',
            uname: b"alice".to_vec(),
            gname: b"users".to_vec(),
            pax_records: vec![(b"SCHILY.xattr.user.k".to_vec(), b"v".to_vec())],
            ..Header::default()
        };
        let data: Vec<u8> = (0..700u32).map(|i| (i % 256) as u8).collect();
        let mut tar = TarWriter::new(Vec::new(), Dialect::Pax);
        tar.append(&h, Data::Bytes(&data)).unwrap();
        let bytes = tar.finish().unwrap();
        let mut reader = Reader::new(&bytes[..]);
        let e = reader.next_entry().unwrap().unwrap();
        let mut read = Vec::new();
        reader.data().read_to_end(&mut read).unwrap();
        assert_eq!(read, data);
        let back = e.to_header();
        // The reader adds the path record it applied after the carried one.
        assert_eq!(back.pax_records[0], h.pax_records[0]);
        assert_eq!(
            Header {
                pax_records: h.pax_records.clone(),
                ..back
            },
            h
        );
    }
}
