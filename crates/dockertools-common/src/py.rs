//! Python's view of strings, for the tools that replace Python programs: file names decoded
//! with `surrogateescape`, their order, and `repr()`.
//!
//! Python decodes a file name that is not UTF-8 with `surrogateescape`: every byte that is
//! not part of a valid UTF-8 character becomes the lone surrogate `U+DC00 + byte`. Strings
//! here are therefore sequences of code points (`u32`), not Rust `char`s.

use std::cmp::Ordering;

/// The code points of `bytes` as Python's `surrogateescape` decoding gives them: valid UTF-8
/// characters as themselves, every other byte `b` as `0xDC00 + b`.
pub fn chars(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes.utf8_chunks().flat_map(|chunk| {
        chunk
            .valid()
            .chars()
            .map(u32::from)
            .chain(chunk.invalid().iter().map(|&b| 0xDC00 + u32::from(b)))
    })
}

/// The code points of a byte string, decoded as [`chars`] does.
pub fn bytes_code_points(bytes: &[u8]) -> Vec<u32> {
    chars(bytes).collect()
}

/// The code points of a string.
pub fn str_code_points(s: &str) -> Vec<u32> {
    s.chars().map(u32::from).collect()
}

/// Python's order of two file names (`str` comparison after `surrogateescape` decoding).
pub fn name_cmp(a: &[u8], b: &[u8]) -> Ordering {
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        // For valid UTF-8, byte order is code point order.
        (Ok(_), Ok(_)) => a.cmp(b),
        _ => chars(a).cmp(chars(b)),
    }
}

/// Whether Python's `str.isprintable()` holds for the character `c` (an approximation of the
/// Unicode tables for the rarely used non-ASCII ranges: controls, separators, format
/// characters, surrogates, private use and noncharacters count as not printable).
fn is_printable(c: u32) -> bool {
    match c {
        0x20..=0x7e => true,
        0..=0x1f | 0x7f..=0xa0 | 0xad => false,
        0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890 | 0x891 | 0x8e2 | 0x180e | 0x1680 => false,
        0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 => false,
        0xd800..=0xf8ff | 0xfdd0..=0xfdef | 0xfeff | 0xfff9..=0xfffb => false,
        c if c & 0xfffe == 0xfffe => false,
        0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a => false,
        0xe0000..=0xe0fff | 0xf0000..=0x10ffff => false,
        _ => char::from_u32(c).is_some(),
    }
}

/// Python's `repr()` of a string given as code points.
pub fn repr_str(out: &mut String, cps: &[u32]) {
    let has_single = cps.contains(&0x27);
    let has_double = cps.contains(&0x22);
    let quote = if has_single && !has_double { '"' } else { '\'' };
    out.push(quote);
    for &c in cps {
        match c {
            0x5c => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            c if c == u32::from(quote) => {
                out.push('\\');
                out.push(quote);
            }
            c if is_printable(c) => match char::from_u32(c) {
                Some(ch) => out.push(ch),
                None => out.push_str(&format!("\\u{c:04x}")),
            },
            c if c < 0x100 => out.push_str(&format!("\\x{c:02x}")),
            c if c < 0x10000 => out.push_str(&format!("\\u{c:04x}")),
            c => out.push_str(&format!("\\U{c:08x}")),
        }
    }
    out.push(quote);
}

/// Python's `repr()` of a list of strings (`['a', 'b']`); items are code-point sequences.
pub fn repr_str_list(items: &[Vec<u32>]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        repr_str(&mut out, item);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_quotes() {
        assert_eq!(
            repr_str_list(&[str_code_points("/nix/store/a"), str_code_points("it's")]),
            "['/nix/store/a', \"it's\"]"
        );
        assert_eq!(
            repr_str_list(&[bytes_code_points(b"a\xffb")]),
            "['a\\udcffb']"
        );
    }

    #[test]
    fn a_byte_that_is_not_utf8_is_a_lone_surrogate() {
        assert_eq!(bytes_code_points(b"a\xc3\xa9\xff"), [0x61, 0xe9, 0xdcff]);
        // U+DCFF sorts after every character below it, é (U+00E9) included.
        assert_eq!(name_cmp(b"\xff", "é".as_bytes()), Ordering::Greater);
        assert_eq!(name_cmp(b"\xff", "\u{e000}".as_bytes()), Ordering::Less);
    }
}
