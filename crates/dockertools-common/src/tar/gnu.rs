//! GNU tar 1.34's default (`gnu`) header dialect.
//!
//! Facts reproduced (checked against GNU tar by the crate's `tests/dialects.rs`):
//! magic `ustar  \0`; numbers as zero-padded octal with a NUL, or base-256 when they do not fit;
//! only the permission bits in `mode`; device numbers only for devices (NUL otherwise);
//! a name or link target longer than 100 bytes is preceded by a `././@LongLink` entry
//! (`K` for the link target first, then `L` for the name) whose owner names are `root`
//! unless `--numeric-owner` empties them; owner names are cut to 31 bytes and a NUL.

use super::{put_base256, put_bytes, put_checksum, put_octal, Header, HeaderError, BLOCK};

const NAME_FIELD: usize = 100;

/// Options of the GNU dialect that change header bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnuOptions {
    /// GNU tar's `--numeric-owner`: the `././@LongLink` records carry empty owner names.
    pub numeric_owner: bool,
}

fn put_number(field: &mut [u8], name: &'static str, value: i128) -> Result<(), HeaderError> {
    if value >= 0 && u64::try_from(value).is_ok_and(|v| put_octal(field, v)) {
        return Ok(());
    }
    if put_base256(field, value) {
        return Ok(());
    }
    Err(HeaderError::Overflow { field: name, value })
}

fn long_link(out: &mut Vec<u8>, kind: u8, payload: &[u8], opts: GnuOptions) {
    let mut block = [0u8; BLOCK];
    put_bytes(&mut block[0..100], b"././@LongLink");
    let size = payload.len() as u64 + 1;
    // These fields are small constants and always fit.
    put_octal(&mut block[100..108], 0o644);
    put_octal(&mut block[108..116], 0);
    put_octal(&mut block[116..124], 0);
    put_octal(&mut block[124..136], size);
    put_octal(&mut block[136..148], 0);
    block[156] = kind;
    block[257..265].copy_from_slice(b"ustar  \0");
    if !opts.numeric_owner {
        put_bytes(&mut block[265..297], b"root");
        put_bytes(&mut block[297..329], b"root");
    }
    put_checksum(&mut block);
    out.extend_from_slice(&block);
    out.extend_from_slice(payload);
    out.push(0);
    out.resize(out.len() + super::block_padding(size), 0);
}

/// Appends the header blocks of `h` (long-link records first, if any) to `out`.
/// Nothing is appended when it fails.
pub fn encode(h: &Header, opts: GnuOptions, out: &mut Vec<u8>) -> Result<(), HeaderError> {
    if !h.pax_records.is_empty() {
        return Err(HeaderError::PaxRecords {
            count: h.pax_records.len(),
        });
    }
    let start = out.len();
    encode_blocks(h, opts, out).inspect_err(|_| out.truncate(start))
}

fn encode_blocks(h: &Header, opts: GnuOptions, out: &mut Vec<u8>) -> Result<(), HeaderError> {
    if h.linkname.len() > NAME_FIELD {
        long_link(out, b'K', &h.linkname, opts);
    }
    if h.name.len() > NAME_FIELD {
        long_link(out, b'L', &h.name, opts);
    }
    let mut block = [0u8; BLOCK];
    put_bytes(&mut block[0..100], &h.name);
    put_number(&mut block[100..108], "mode", i128::from(h.mode & 0o7777))?;
    put_number(&mut block[108..116], "uid", i128::from(h.uid))?;
    put_number(&mut block[116..124], "gid", i128::from(h.gid))?;
    put_number(&mut block[124..136], "size", i128::from(h.size))?;
    put_number(&mut block[136..148], "mtime", i128::from(h.mtime))?;
    block[156] = h.typeflag;
    put_bytes(&mut block[157..257], &h.linkname);
    block[257..265].copy_from_slice(b"ustar  \0");
    // GNU tar keeps the last byte of an owner name field for its NUL: 31 bytes at most.
    put_bytes(&mut block[265..296], &h.uname);
    put_bytes(&mut block[297..328], &h.gname);
    if h.typeflag == super::CHAR || h.typeflag == super::BLOCKDEV {
        put_number(&mut block[329..337], "devmajor", i128::from(h.devmajor))?;
        put_number(&mut block[337..345], "devminor", i128::from(h.devminor))?;
    }
    put_checksum(&mut block);
    out.extend_from_slice(&block);
    Ok(())
}
