//! JSON text and string `repr` exactly as CPython writes them (`json.dumps`, `repr(list)`),
//! for the tools that replace Python programs.
//!
//! Values are `serde_json` values read with `preserve_order` (key order and Python's
//! "last duplicate wins, first position kept") and `arbitrary_precision` (numbers keep their text,
//! so integers of any size print as Python prints them; floats print as Python's `repr(float)`).
//! Strings are sequences of code points; a byte that is not UTF-8 (a file name read with
//! `surrogateescape`) is the lone surrogate `U+DC00 + byte`, as in Python.

use serde_json::Value;

/// How to lay out the text (`json.dumps` arguments).
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// `indent=N`; `None` is the compact single-line form.
    pub indent: Option<usize>,
    /// `ensure_ascii` (Python's default is true).
    pub ensure_ascii: bool,
}

/// Python's default `json.dumps(v)`: one line, `, ` and `: ` separators, ASCII only.
pub const COMPACT: Style = Style {
    indent: None,
    ensure_ascii: true,
};

/// Code points of a UTF-8 string.
fn code_points(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.chars().map(u32::from)
}

/// Appends a JSON string literal for the code points `cps`.
pub fn json_string(out: &mut String, cps: impl Iterator<Item = u32>, ensure_ascii: bool) {
    out.push('"');
    for c in cps {
        match c {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            c if c < 0x20 => out.push_str(&format!("\\u{c:04x}")),
            // Python escapes DEL only when ensure_ascii is on.
            0x7f if ensure_ascii => out.push_str("\\u007f"),
            c if c <= 0x7f => out.push(char::from(c as u8)),
            c if !ensure_ascii => match char::from_u32(c) {
                Some(ch) => out.push(ch),
                None => out.push_str(&format!("\\u{c:04x}")),
            },
            c if c >= 0x10000 => {
                let v = c - 0x10000;
                out.push_str(&format!(
                    "\\u{:04x}\\u{:04x}",
                    0xd800 + (v >> 10),
                    0xdc00 + (v & 0x3ff)
                ));
            }
            c => out.push_str(&format!("\\u{c:04x}")),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` of `f` (`json.dumps` writes floats this way; inf and nan as JSON extensions).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Rust's Debug form is the shortest round-trip form and switches to exponent
    // notation at the same thresholds as Python (below 1e-4, from 1e16 on).
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// The text Python prints for a JSON number that `json.loads` read from `text`.
pub fn number_text(text: &str) -> String {
    if text.contains(['.', 'e', 'E']) {
        match text.parse::<f64>() {
            Ok(f) => float_repr(f),
            Err(_) => text.to_string(),
        }
    } else if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// `json.dumps(value, indent=..., ensure_ascii=...)`.
pub fn dumps(value: &Value, style: Style) -> String {
    let mut out = String::new();
    write_value(&mut out, value, style, 0);
    out
}

/// A string as `json.dumps` writes it; printable ASCII without quotes or backslashes (store
/// paths, for one) is copied as it is.
fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        json_string(out, code_points(s), ensure_ascii);
    }
}

fn newline(out: &mut String, style: Style, level: usize) {
    if let Some(n) = style.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * level));
    }
}

/// A JSON array of `items` at nesting `level`, each written by `item` (at `level + 1`).
fn write_array<T>(
    out: &mut String,
    items: &[T],
    style: Style,
    level: usize,
    mut item: impl FnMut(&mut String, &T, usize),
) {
    if items.is_empty() {
        out.push_str("[]");
        return;
    }
    let item_sep = if style.indent.is_some() { "," } else { ", " };
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(item_sep);
        }
        newline(out, style, level + 1);
        item(out, x, level + 1);
    }
    newline(out, style, level);
    out.push(']');
}

/// `json.dumps` of a list of lists of strings (layers of store paths), without building a
/// JSON tree first.
pub fn dumps_str_lists<S: AsRef<str>>(lists: &[Vec<S>], style: Style) -> String {
    let chars: usize = lists
        .iter()
        .flat_map(|l| l.iter().map(|p| p.as_ref().len() + 4))
        .sum();
    let mut out = String::with_capacity(chars + 16 * lists.len() + 16);
    write_array(&mut out, lists, style, 0, |out, list, level| {
        write_array(out, list, style, level, |out, p, _| {
            write_str(out, p.as_ref(), style.ensure_ascii)
        })
    });
    out
}

fn write_value(out: &mut String, value: &Value, style: Style, level: usize) {
    let item_sep = if style.indent.is_some() { "," } else { ", " };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(&n.to_string())),
        Value::String(s) => write_str(out, s, style.ensure_ascii),
        Value::Array(items) => write_array(out, items, style, level, |out, item, level| {
            write_value(out, item, style, level)
        }),
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, style, level + 1);
                write_str(out, k, style.ensure_ascii);
                out.push_str(": ");
                write_value(out, v, style, level + 1);
            }
            newline(out, style, level);
            out.push('}');
        }
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

/// Code points of a byte string as Python decodes it with `surrogateescape`.
pub fn bytes_code_points(bytes: &[u8]) -> Vec<u32> {
    crate::tar::pax::py_chars(bytes).collect()
}

/// Code points of a string.
pub fn str_code_points(s: &str) -> Vec<u32> {
    code_points(s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(123456789012345.6), "123456789012345.6");
        assert_eq!(number_text("1E5"), "100000.0");
        assert_eq!(number_text("-0"), "0");
        assert_eq!(
            number_text("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
    }

    #[test]
    fn indent_and_escapes() -> Result<(), serde_json::Error> {
        let v: Value = serde_json::from_str(r#"{"a": [1, "ü/\u0001"], "b": {}, "c": []}"#)?;
        assert_eq!(
            dumps(
                &v,
                Style {
                    indent: Some(2),
                    ensure_ascii: true
                }
            ),
            "{\n  \"a\": [\n    1,\n    \"\\u00fc/\\u0001\"\n  ],\n  \"b\": {},\n  \"c\": []\n}"
        );
        assert_eq!(
            dumps(&v, COMPACT),
            "{\"a\": [1, \"\\u00fc/\\u0001\"], \"b\": {}, \"c\": []}"
        );
        Ok(())
    }

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
}
