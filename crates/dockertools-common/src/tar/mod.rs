//! Deterministic tar writing and reading.
//!
//! Two header dialects are written byte for byte ([`Dialect`]):
//! [`gnu`] is GNU tar 1.34's default format (`ustar  \0` magic, `././@LongLink` records),
//! [`pax`] is Python `tarfile`'s PAX format (`ustar\0` `00` magic, `././@PaxHeader` records).
//! [`writer::TarWriter`] is the entry-level API: callers say what an entry is (a [`Header`] and
//! its data), and the writer encodes the header in its dialect, copies exactly the declared size
//! and pads; it ends the archive with two zero blocks and zeros to a whole 10240-byte record.
//! [`reader`] reads archives the way Go's `archive/tar` does; [`reader::Entry::to_header`] turns
//! a read entry back into a [`Header`].

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

pub mod gnu;
pub mod pax;
pub mod reader;
pub mod writer;

/// Size of one tar block.
pub const BLOCK: usize = 512;
/// Size of one tar record: archives are zero-padded to a multiple of this.
pub const RECORD: usize = 10240;

/// Typeflag of a regular file.
pub const REGULAR: u8 = b'0';
/// Typeflag of a hard link.
pub const HARDLINK: u8 = b'1';
/// Typeflag of a symbolic link.
pub const SYMLINK: u8 = b'2';
/// Typeflag of a character device.
pub const CHAR: u8 = b'3';
/// Typeflag of a block device.
pub const BLOCKDEV: u8 = b'4';
/// Typeflag of a directory.
pub const DIR: u8 = b'5';
/// Typeflag of a FIFO.
pub const FIFO: u8 = b'6';

/// The owner and time fields every entry of a layer gets (GNU tar's `--mtime`, `--owner` and
/// `--group`; the `mtime`, `uid`, `gid`, `uname` and `gname` of streamLayeredImage's conf).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// mtime of every entry.
    pub mtime: i64,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Owner name (empty when there is none).
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
}

impl Owner {
    /// A header with these fields, the others at their defaults.
    pub fn header(&self) -> Header {
        Header {
            mtime: self.mtime,
            uid: self.uid,
            gid: self.gid,
            uname: self.uname.clone(),
            gname: self.gname.clone(),
            ..Header::default()
        }
    }
}

/// The fields of one tar entry, as the writers encode them.
/// Names are bytes: a non-UTF-8 name round-trips.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Entry name as stored (directories end in `/`).
    pub name: Vec<u8>,
    /// Permission bits (only `0o7777` is encoded).
    pub mode: u32,
    /// Owner id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Data size in bytes (0 for anything but regular files).
    pub size: u64,
    /// Modification time in seconds since the epoch.
    pub mtime: i64,
    /// Typeflag byte (`b'0'`, `b'5'`, ...).
    pub typeflag: u8,
    /// Link target for symlinks and hard links.
    pub linkname: Vec<u8>,
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group name.
    pub gname: Vec<u8>,
    /// Device major number (encoded only for character and block devices).
    pub devmajor: u64,
    /// Device minor number (encoded only for character and block devices).
    pub devminor: u64,
    /// PAX records the entry carries (a member copied from another archive), in order:
    /// the PAX dialect writes them first and adds no record for a field they name;
    /// the GNU dialect refuses a header that has any.
    pub pax_records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Header {
    /// The type, permission bits, size (of a regular file) and device numbers of a file whose
    /// `lstat` metadata is `md`, with `owner`'s owner and time fields; `None` for a socket,
    /// which a tar cannot hold.
    /// The name and a symlink's target are the caller's to fill in.
    pub fn from_metadata(md: &fs::Metadata, owner: &Owner) -> Option<Header> {
        let ft = md.file_type();
        let mut h = Header {
            mode: md.mode() & 0o7777,
            ..owner.header()
        };
        if ft.is_dir() {
            h.typeflag = DIR;
        } else if ft.is_file() {
            h.typeflag = REGULAR;
            h.size = md.len();
        } else if ft.is_symlink() {
            h.typeflag = SYMLINK;
        } else if ft.is_fifo() {
            h.typeflag = FIFO;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.typeflag = if ft.is_char_device() { CHAR } else { BLOCKDEV };
            h.devmajor = dev_major(md.rdev());
            h.devminor = dev_minor(md.rdev());
        } else {
            return None;
        }
        Some(h)
    }
}

/// The header dialect of an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// GNU tar 1.34's default format, with its options.
    Gnu(gnu::GnuOptions),
    /// Python `tarfile`'s PAX format.
    Pax,
}

impl Dialect {
    /// Appends the header blocks of `h` (long-name or PAX records first, if any) to `out`.
    pub fn encode(self, h: &Header, out: &mut Vec<u8>) -> Result<(), HeaderError> {
        match self {
            Dialect::Gnu(opts) => gnu::encode(h, opts, out),
            Dialect::Pax => {
                pax::encode(h, out);
                Ok(())
            }
        }
    }
}

/// A header that cannot be encoded in the chosen dialect.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// A number does not fit in its field.
    #[error("{field} value {value} does not fit in a tar header")]
    Overflow {
        /// Name of the field.
        field: &'static str,
        /// The value that did not fit.
        value: i128,
    },
    /// PAX records in a GNU-format archive, which has no place for them.
    #[error("{count} PAX records cannot be written in GNU format")]
    PaxRecords {
        /// How many records the header carries.
        count: usize,
    },
}

/// Writes `value` as zero-padded octal in `field`, `field.len() - 1` digits and a NUL.
/// Returns false when it does not fit.
pub(crate) fn put_octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    if digits < 22 && value >> (3 * digits) != 0 {
        return false;
    }
    let mut v = value;
    for slot in field[..digits].iter_mut().rev() {
        *slot = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[digits] = 0;
    true
}

/// Writes `value` in GNU base-256 (big-endian two's complement, high bit of the first byte set).
/// Returns false when it does not fit.
pub(crate) fn put_base256(field: &mut [u8], value: i128) -> bool {
    let len = field.len();
    // GNU tar puts the value in the last (len - 1) bytes; the first byte is only the marker.
    let limit: i128 = 1i128 << (8 * (len as u32 - 1)).min(126);
    if value >= limit || value < -limit {
        return false;
    }
    let mut v = value;
    for slot in field.iter_mut().rev() {
        *slot = (v & 0xff) as u8;
        v >>= 8;
    }
    if value >= 0 {
        field[0] = 0x80;
    } else {
        field[0] = 0xff;
    }
    true
}

/// Copies `src` into `field`, truncating, leaving the rest as it is (NUL).
pub(crate) fn put_bytes(field: &mut [u8], src: &[u8]) {
    let n = src.len().min(field.len());
    field[..n].copy_from_slice(&src[..n]);
}

/// Fills the checksum field (offset 148) the way both GNU tar and Python write it:
/// six octal digits, NUL, space; the sum taken with the field as spaces.
pub(crate) fn put_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}");
    block[148..154].copy_from_slice(&text.as_bytes()[text.len() - 6..]);
    block[154] = 0;
    block[155] = b' ';
}

/// Number of zero bytes that pad `len` bytes of data to a whole block.
pub fn block_padding(len: u64) -> usize {
    ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize
}

/// Major number of a Linux device id (`st_rdev`), as glibc's `major()` computes it.
pub fn dev_major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

/// Minor number of a Linux device id (`st_rdev`), as glibc's `minor()` computes it.
pub fn dev_minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}
