//! A tar reader with the semantics of Go's `archive/tar` (the reader behind Docker's tarsum).
//!
//! It returns one [`Entry`] per file, with GNU long names and link targets, PAX records
//! (`path`, `linkpath`, `uname`, `gname`, `uid`, `gid`, `size`, `SCHILY.xattr.*`) and the ustar
//! prefix applied, and streams each entry's logical data (sparse files expanded).
//! PAX global headers are returned as entries. Memory is bounded by the largest
//! PAX or long-name payload (at most 1 MiB) and the sparse map, never by file data.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::BLOCK;

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
        let mut allowed = format::USTAR | format::PAX | format::GNU;
        let octal_fits = |n: i64, size: u32| n >= 0 && (n as u128) < 1u128 << (3 * (size - 1));
        let b256_fits = |n: i64, size: u32| {
            size >= 9 || {
                let bits = 8 * (size - 1);
                n >= -(1i64 << bits) && n < 1i64 << bits
            }
        };
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
        // Numbers PAX can carry in records: uid, gid, size. Mode and device numbers it cannot.
        for (n, size, pax_ok) in [
            (self.mode, 8, false),
            (self.uid, 8, true),
            (self.gid, 8, true),
            (self.size, 12, true),
            (self.devmajor, 8, false),
            (self.devminor, 8, false),
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
        if !b256_fits(self.mtime, 12) {
            allowed &= !format::GNU;
        }
        if !octal_fits(self.mtime, 12) {
            allowed &= !format::USTAR;
        }
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

struct Sparse {
    /// Holes as (offset, end), always at least one (a final empty hole at `size`).
    holes: Vec<(i64, i64)>,
    pos: i64,
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
            } else if let Some(slot) = out.iter_mut().find(|(key, _)| key == k) {
                slot.1 = v.to_vec();
            } else {
                out.push((k.to_vec(), v.to_vec()));
            }
            s = &s[n..];
        }
        if !sparse_map.is_empty() {
            let joined = sparse_map.join(&b","[..]);
            let key = b"GNU.sparse.map".to_vec();
            if let Some(slot) = out.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = joined;
            } else {
                out.push((key, joined));
            }
        }
        Ok(out)
    }

    fn merge_pax(&self, e: &mut Entry, pax: &[(Vec<u8>, Vec<u8>)]) -> Result<(), ReadError> {
        let bad = || self.err(ReadErrorKind::BadPax);
        for (k, v) in pax {
            match e.pax.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => e.pax.push((k.clone(), v.clone())),
            }
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

    /// Reads one header block; `Ok(None)` at a normal end of archive.
    fn header(&mut self) -> Result<Option<(Entry, [u8; BLOCK], u8)>, ReadError> {
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
        let mut hdr_format = 0;
        if fmt > format::V7 {
            e.uname = cstr(&blk[265..297]).to_vec();
            e.gname = cstr(&blk[297..329]).to_vec();
            e.devmajor = num(&blk[329..337], "devmajor")?;
            e.devminor = num(&blk[337..345], "devminor")?;
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
                hdr_format = fmt;
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
                if !times_ok {
                    e.has_atime_ctime = false;
                    let p = cstr(&blk[345..500]);
                    if p.is_ascii() {
                        prefix = p;
                    }
                    hdr_format = 0;
                }
            }
            if !prefix.is_empty() {
                let mut name = prefix.to_vec();
                name.push(b'/');
                name.extend_from_slice(&e.name);
                e.name = name;
            }
        } else {
            hdr_format = format::V7;
        }
        e.format = hdr_format;
        Ok(Some((e, blk, fmt)))
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
            self.index += 1;
        }
        let r = self.next_inner();
        match &r {
            Ok(Some(_)) => self.returned = true,
            _ => self.done = true,
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Entry>, ReadError> {
        let mut pax: Option<Vec<(Vec<u8>, Vec<u8>)>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut fmt_acc = format::USTAR | format::PAX | format::GNU;
        let mut first = true;
        loop {
            // Discard the rest of the previous entry and its padding.
            // Go: a short read inside data is an error, inside the padding it is the end.
            let (data, pad) = (self.phys_left, self.pad);
            self.phys_left = 0;
            self.pad = 0;
            self.logical_left = 0;
            self.sparse = None;
            if data > 0 && !matches!(self.skip(data)?, Fill::Full) {
                return Err(self.err(ReadErrorKind::UnexpectedEof));
            }
            if pad > 0 && !matches!(self.skip(pad)?, Fill::Full) {
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
                        let mut g = Entry {
                            index: self.index,
                            offset: self.cur_offset,
                            name: e.name,
                            typeflag: b'g',
                            format: fmt_acc,
                            ..Entry::default()
                        };
                        self.merge_pax(&mut g, &recs)?;
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
                        return Ok(Some(g));
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

    fn sparse_setup(
        &mut self,
        e: &mut Entry,
        blk: &[u8; BLOCK],
        raw_fmt: u8,
    ) -> Result<(), ReadError> {
        let bad = |s: &Self, what: &'static str| s.err(ReadErrorKind::BadSparse(what));
        let map: Option<Vec<(i64, i64)>> = if e.typeflag == b'S' {
            if raw_fmt != format::GNU {
                return Err(self.err(ReadErrorKind::BadHeader));
            }
            e.format &= format::GNU;
            e.size = parse_numeric(&blk[483..495]).ok_or_else(|| bad(self, "real size"))?;
            let mut map = Vec::new();
            let mut area: Vec<u8> = blk[386..483].to_vec();
            let mut entries = 4;
            loop {
                for i in 0..entries {
                    let ent = &area[i * 24..i * 24 + 24];
                    if ent[0] == 0 {
                        break;
                    }
                    let off = parse_numeric(&ent[0..12]).ok_or_else(|| bad(self, "offset"))?;
                    let len = parse_numeric(&ent[12..24]).ok_or_else(|| bad(self, "length"))?;
                    map.push((off, len));
                }
                if area[entries * 24] > 0 {
                    let mut ext = [0u8; BLOCK];
                    self.must_fill(&mut ext)?;
                    area = ext.to_vec();
                    entries = 21;
                    continue;
                }
                break;
            }
            Some(map)
        } else {
            self.pax_sparse(e)?
        };
        let Some(map) = map else { return Ok(()) };
        let header_only = matches!(e.typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        let size = e.size;
        let mut valid = size >= 0;
        let mut pre_end = 0i64;
        for &(off, len) in &map {
            if off < 0 || len < 0 || off > i64::MAX - len || off + len > size || pre_end > off {
                valid = false;
                break;
            }
            pre_end = off + len;
        }
        if header_only || !valid {
            return Err(bad(self, "bad sparse map"));
        }
        // Invert data regions into holes, as Go does.
        let mut holes = Vec::new();
        let mut pre = 0i64;
        for &(off, len) in &map {
            if len == 0 {
                continue;
            }
            if off > pre {
                holes.push((pre, off));
            }
            pre = off + len;
        }
        holes.push((pre, size));
        self.logical_left = size as u64;
        self.sparse = Some(Sparse { holes, pos: 0 });
        Ok(())
    }

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
        let dec = |s: &[u8]| parse_dec(s);
        if is1x0 {
            // The map is at the start of the data: newline-separated decimal numbers, block-aligned.
            let mut buf: Vec<u8> = Vec::new();
            let mut newlines = 0usize;
            let mut consumed = 0usize;
            let mut tokens: Vec<Vec<u8>> = Vec::new();
            let feed = |this: &mut Self, n: usize, buf: &mut Vec<u8>, newlines: &mut usize| {
                while *newlines < n {
                    let mut blk = [0u8; BLOCK];
                    if this.phys_left < BLOCK as u64 {
                        return Err(this.err(ReadErrorKind::UnexpectedEof));
                    }
                    this.must_fill(&mut blk)?;
                    this.phys_left -= BLOCK as u64;
                    *newlines += blk.iter().filter(|&&c| c == b'\n').count();
                    buf.extend_from_slice(&blk);
                }
                Ok(())
            };
            let next_token = |buf: &Vec<u8>, consumed: &mut usize, newlines: &mut usize| {
                *newlines -= 1;
                let rest = &buf[*consumed..];
                let i = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                let tok = rest[..i].to_vec();
                *consumed += (i + 1).min(rest.len());
                tok
            };
            feed(self, 1, &mut buf, &mut newlines)?;
            let count =
                dec(&next_token(&buf, &mut consumed, &mut newlines)).ok_or_else(|| bad(self))?;
            if !(0..=(1 << 40)).contains(&count) {
                return Err(bad(self));
            }
            feed(self, 2 * count as usize, &mut buf, &mut newlines)?;
            for _ in 0..2 * count {
                tokens.push(next_token(&buf, &mut consumed, &mut newlines));
            }
            let mut map = Vec::new();
            for pair in tokens.chunks(2) {
                let off = dec(&pair[0]).ok_or_else(|| bad(self))?;
                let len = dec(&pair[1]).ok_or_else(|| bad(self))?;
                map.push((off, len));
            }
            Ok(Some(map))
        } else {
            let count = dec(&get(b"GNU.sparse.numblocks")).ok_or_else(|| bad(self))?;
            if count < 0 {
                return Err(bad(self));
            }
            let raw = get(b"GNU.sparse.map");
            let parts: Vec<&[u8]> = if raw.is_empty() {
                Vec::new()
            } else {
                raw.split(|&b| b == b',').collect()
            };
            if parts.len() as i64 != 2 * count {
                return Err(bad(self));
            }
            let mut map = Vec::new();
            for pair in parts.chunks(2) {
                let off = dec(pair[0]).ok_or_else(|| bad(self))?;
                let len = dec(pair[1]).ok_or_else(|| bad(self))?;
                map.push((off, len));
            }
            Ok(Some(map))
        }
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
        let Some(sp) = self.sparse.as_mut() else {
            let n = self.read_phys(&mut buf[..want])?;
            self.logical_left -= n as u64;
            return Ok(n);
        };
        let (hole_start, hole_end) = sp.holes[0];
        let pos = sp.pos;
        let n = if pos < hole_start {
            let take = want.min((hole_start - pos) as usize);
            if self.phys_left < take as u64 {
                return Err(self.err(ReadErrorKind::BadSparse("less data than the sparse map")));
            }
            self.read_phys(&mut buf[..take])?
        } else {
            let take = want.min((hole_end - pos) as usize);
            buf[..take].fill(0);
            take
        };
        self.logical_left -= n as u64;
        if let Some(sp) = self.sparse.as_mut() {
            sp.pos += n as i64;
            if sp.pos >= sp.holes[0].1 && sp.holes.len() > 1 {
                sp.holes.remove(0);
            }
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

    /// Reads the rest of the current entry's data into a vector (for small members such as JSON).
    pub fn read_to_vec(&mut self, limit: u64) -> Result<Vec<u8>, ReadError> {
        if self.logical_left > limit {
            return Err(self.err(ReadErrorKind::SpecialTooLong));
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
