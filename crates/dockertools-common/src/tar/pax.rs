//! Python `tarfile`'s PAX header dialect (`format=PAX_FORMAT`, the default since Python 3.8).
//!
//! Facts reproduced (checked against CPython by the crate's `tests/dialects.rs`):
//! magic `ustar\0` version `00`; numbers as zero-padded octal with a NUL;
//! a name or link target longer than 100 characters, an owner or group name longer than 32,
//! or any of them not ASCII, goes into a `././@PaxHeader` record (`path`, `linkpath`, `uname`, `gname`),
//! and the ustar field keeps the first characters with non-ASCII ones replaced by `?`;
//! uid/gid of 8^7 or more, size/mtime of 8^11 or more, or negative, go into records too and the field is 0;
//! names that are not UTF-8 add `hdrcharset=BINARY` first and their records hold the raw bytes.
//! Lengths are counted in characters as Python sees them: a byte that is not valid UTF-8 is one character.

use super::{put_bytes, put_checksum, put_octal, Header, BLOCK};
use crate::py;

/// A length as Python counts characters (see [`crate::py::chars`]).
fn py_len(bytes: &[u8]) -> usize {
    py::chars(bytes).count()
}

/// The ustar field form of a string: each non-ASCII character becomes `?` (`encode("ascii", "replace")`).
fn ascii_replace(bytes: &[u8]) -> Vec<u8> {
    if bytes.is_ascii() {
        return bytes.to_vec();
    }
    py::chars(bytes)
        .map(|c| if c < 0x80 { c as u8 } else { b'?' })
        .collect()
}

fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // The length prefix counts itself: find the fixed point as Python does.
    let l = key.len() + value.len() + 3;
    let mut p = 0usize;
    loop {
        let n = l + p.to_string().len();
        if n == p {
            break;
        }
        p = n;
    }
    out.extend_from_slice(p.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

struct Ustar<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &'a [u8],
    uname: &'a [u8],
    gname: &'a [u8],
    dev: Option<(u64, u64)>,
}

fn ustar_block(u: &Ustar<'_>, out: &mut Vec<u8>) {
    let mut block = [0u8; BLOCK];
    put_bytes(&mut block[0..100], &ascii_replace(u.name));
    // Values were range-checked by the caller, so the octal form always fits.
    put_octal(&mut block[100..108], u64::from(u.mode & 0o7777));
    put_octal(&mut block[108..116], u.uid);
    put_octal(&mut block[116..124], u.gid);
    put_octal(&mut block[124..136], u.size);
    put_octal(&mut block[136..148], u.mtime);
    block[156] = u.typeflag;
    put_bytes(&mut block[157..257], &ascii_replace(u.linkname));
    block[257..265].copy_from_slice(b"ustar\x0000");
    put_bytes(&mut block[265..297], &ascii_replace(u.uname));
    put_bytes(&mut block[297..329], &ascii_replace(u.gname));
    if let Some((major, minor)) = u.dev {
        if !put_octal(&mut block[329..337], major) || !put_octal(&mut block[337..345], minor) {
            // Python raises here; callers never pass such devices (stores hold none).
            block[329..345].fill(0);
        }
    }
    put_checksum(&mut block);
    out.extend_from_slice(&block);
}

/// PAX records in order, the key borrowed.
type Records<'a> = Vec<(&'a [u8], Vec<u8>)>;

/// The records `h` needs: those it carries, then each string field that is not ASCII or too
/// long, then each number that does not fit its octal field (a field a carried record names is
/// not added again). Returns them with the values of the four number fields (0 where a record
/// holds the number).
fn records(h: &Header) -> (Records<'_>, [u64; 4]) {
    let mut records: Records<'_> = h
        .pax_records
        .iter()
        .map(|(k, v)| (k.as_slice(), v.clone()))
        .collect();
    let has = |records: &Records<'_>, key: &[u8]| records.iter().any(|(k, _)| *k == key);
    for (key, value, limit) in [
        (&b"path"[..], &h.name, 100usize),
        (b"linkpath", &h.linkname, 100),
        (b"uname", &h.uname, 32),
        (b"gname", &h.gname, 32),
    ] {
        if !has(&records, key) && (!value.is_ascii() || py_len(value) > limit) {
            records.push((key, value.clone()));
        }
    }
    let mut fields = [0u64; 4];
    let numbers = [
        (&b"uid"[..], i128::from(h.uid), 8u32),
        (b"gid", i128::from(h.gid), 8),
        (b"size", i128::from(h.size), 12),
        (b"mtime", i128::from(h.mtime), 12),
    ];
    for ((key, value, digits), field) in numbers.into_iter().zip(fields.iter_mut()) {
        if value >= 0 && value < 1i128 << (3 * (digits - 1)) {
            *field = value as u64;
        } else if !has(&records, key) {
            records.push((key, value.to_string().into_bytes()));
        }
    }
    (records, fields)
}

/// Appends the `././@PaxHeader` entry holding `records` to `out`.
fn pax_entry(records: &Records<'_>, out: &mut Vec<u8>) {
    let binary = records.iter().any(|(_, v)| std::str::from_utf8(v).is_err());
    let mut payload = Vec::new();
    if binary {
        payload.extend_from_slice(b"21 hdrcharset=BINARY\n");
    }
    for (k, v) in records {
        record(&mut payload, k, v);
    }
    let header = Ustar {
        name: b"././@PaxHeader",
        mode: 0,
        uid: 0,
        gid: 0,
        size: payload.len() as u64,
        mtime: 0,
        typeflag: b'x',
        linkname: b"",
        uname: b"",
        gname: b"",
        dev: None,
    };
    ustar_block(&header, out);
    let len = payload.len() as u64;
    out.extend_from_slice(&payload);
    out.resize(out.len() + super::block_padding(len), 0);
}

/// Appends the header blocks of `h` (a `././@PaxHeader` entry first, if needed) to `out`.
///
/// The records `h` carries ([`Header::pax_records`], a base image's member being copied) come
/// first, and a field they name is not added again, as in `tarfile`.
pub fn encode(h: &Header, out: &mut Vec<u8>) {
    // tarfile's TarInfo.get_info: a directory's name always ends in '/'.
    if h.typeflag == super::DIR && h.name.last() != Some(&b'/') {
        let mut h = h.clone();
        h.name.push(b'/');
        return encode(&h, out);
    }
    let (records, [uid, gid, size, mtime]) = records(h);
    if !records.is_empty() {
        pax_entry(&records, out);
    }
    let dev = (h.typeflag == super::CHAR || h.typeflag == super::BLOCKDEV)
        .then_some((h.devmajor, h.devminor));
    let header = Ustar {
        name: &h.name,
        mode: h.mode,
        uid,
        gid,
        size,
        mtime,
        typeflag: h.typeflag,
        linkname: &h.linkname,
        uname: &h.uname,
        gname: &h.gname,
        dev,
    };
    ustar_block(&header, out);
}
