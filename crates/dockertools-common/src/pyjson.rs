//! JSON text exactly as CPython's `json.dumps` writes it, for the tools that replace Python
//! programs: [`PyFormatter`] on serde_json's own serializer walker.
//!
//! Values are `serde_json` values read with `preserve_order` (key order and Python's
//! "last duplicate wins, first position kept") and `arbitrary_precision` (numbers keep their text,
//! so integers of any size print as Python prints them; floats print as Python's `repr(float)`).
//! Python's other string helpers (`repr`, `surrogateescape`) are in [`crate::py`].

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};
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

/// A [`Formatter`] writing `json.dumps`'s text. With an indent the layout is serde_json's
/// pretty one (Python 3 writes `,` at line ends and `: ` after keys, as it does); without,
/// items are separated by `, `.
pub struct PyFormatter<'a> {
    pretty: Option<PrettyFormatter<'a>>,
    ensure_ascii: bool,
}

impl<'a> PyFormatter<'a> {
    /// `indent` is one level of indentation (`None`: the single-line form).
    pub fn new(indent: Option<&'a [u8]>, ensure_ascii: bool) -> Self {
        PyFormatter {
            pretty: indent.map(PrettyFormatter::with_indent),
            ensure_ascii,
        }
    }

    fn number<W: ?Sized + Write>(w: &mut W, text: &str) -> io::Result<()> {
        w.write_all(number_text(text).as_bytes())
    }
}

/// A non-ASCII character as `ensure_ascii` writes it: `\uXXXX`, a surrogate pair above the BMP.
fn write_u_escape<W: ?Sized + Write>(w: &mut W, c: char) -> io::Result<()> {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        write!(w, "\\u{:04x}", unit)?;
    }
    Ok(())
}

impl Formatter for PyFormatter<'_> {
    /// serde_json reads numbers with `arbitrary_precision`, so they arrive here as their text.
    fn write_number_str<W: ?Sized + Write>(&mut self, w: &mut W, text: &str) -> io::Result<()> {
        Self::number(w, text)
    }

    fn write_i64<W: ?Sized + Write>(&mut self, w: &mut W, value: i64) -> io::Result<()> {
        write!(w, "{value}")
    }

    fn write_u64<W: ?Sized + Write>(&mut self, w: &mut W, value: u64) -> io::Result<()> {
        write!(w, "{value}")
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(float_repr(value).as_bytes())
    }

    /// serde_json has escaped quotes, backslashes and control characters already (through
    /// [`Self::write_char_escape`]); with `ensure_ascii`, DEL and every non-ASCII character
    /// are escaped too.
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Store paths, most of what is printed, are printable ASCII: one write.
        if !self.ensure_ascii || fragment.bytes().all(|b| b < 0x7f) {
            return w.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c < '\u{7f}' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            write_u_escape(w, c)?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let short: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(c) => return write!(w, "\\u{:04x}", c),
        };
        w.write_all(short)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.begin_array(w),
            None => w.write_all(b"["),
        }
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.end_array(w),
            None => w.write_all(b"]"),
        }
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.begin_array_value(w, first),
            None if first => Ok(()),
            None => w.write_all(b", "),
        }
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.end_array_value(w),
            None => Ok(()),
        }
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.begin_object(w),
            None => w.write_all(b"{"),
        }
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.end_object(w),
            None => w.write_all(b"}"),
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.begin_object_key(w, first),
            None if first => Ok(()),
            None => w.write_all(b", "),
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        match &mut self.pretty {
            Some(p) => p.end_object_value(w),
            None => Ok(()),
        }
    }
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

/// Writes `json.dumps(value, indent=..., ensure_ascii=...)`, without a final newline.
pub fn write<W: Write, T: Serialize + ?Sized>(out: W, value: &T, style: Style) -> io::Result<()> {
    let spaces = style.indent.map(|n| vec![b' '; n]);
    let formatter = PyFormatter::new(spaces.as_deref(), style.ensure_ascii);
    value.serialize(&mut serde_json::Serializer::with_formatter(out, formatter))?;
    Ok(())
}

/// `json.dumps(value, indent=..., ensure_ascii=...)`.
pub fn dumps(value: &Value, style: Style) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, nor can serializing a Value (its keys are strings).
    let _ = write(&mut out, value, style);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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

    /// What `json.dumps` writes for every control character, DEL and characters beyond
    /// ASCII and the BMP, with and without `ensure_ascii` (recorded with CPython 3.11).
    #[test]
    fn escapes_like_python() {
        let s: String = (0u8..0x20)
            .chain([b' ', b'"', b'/', b'\\', 0x7f])
            .map(char::from)
            .chain(['\u{80}', 'é', '\u{2028}', '😀'])
            .collect();
        let v = Value::String(s);
        let controls = concat!(
            r#"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
            r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"#,
            r#" \"/\\"#,
        );
        assert_eq!(
            dumps(&v, COMPACT),
            format!("\"{controls}\\u007f\\u0080\\u00e9\\u2028\\ud83d\\ude00\"")
        );
        let raw = Style {
            indent: None,
            ensure_ascii: false,
        };
        assert_eq!(
            dumps(&v, raw),
            format!("\"{controls}\u{7f}\u{80}é\u{2028}😀\"")
        );
    }
}
