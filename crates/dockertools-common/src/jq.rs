//! JSON printed the way `jq` 1.6 pretty-prints it (`jq .`, `jq -s add`): 2-space indent, raw
//! UTF-8, control characters and DEL as `\uXXXX`, a newline at the end; and, through
//! [`Pretty`], the other C pretty printer of the originals (jansson's, for jshon).
//!
//! The text is laid out by serde_json's own serializer walker and `PrettyFormatter`;
//! [`JqFormatter`] adds what the dialects change: string escapes and number text.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};
use serde_json::Value;

/// How a pretty JSON printer writes its text: jq 1.6 and jansson (jshon) differ only here.
#[derive(Clone, Copy)]
pub struct Pretty {
    /// One level of indentation.
    pub indent: &'static [u8],
    /// Escape `/` as `\/` (jansson's `JSON_ESCAPE_SLASH`).
    pub escape_slash: bool,
    /// Escape DEL (0x7f) too (jq does, jansson does not).
    pub escape_del: bool,
    /// Hex digits of `\uXXXX` escapes in upper case (jansson) or lower case (jq).
    pub upper_hex: bool,
    /// How a number's JSON text is printed back.
    pub number: fn(&str) -> String,
}

/// jq 1.6's `.` output.
pub const JQ: Pretty = Pretty {
    indent: b"  ",
    escape_slash: false,
    escape_del: true,
    upper_hex: false,
    number,
};

/// A [`Formatter`] writing the dialect `style` describes.
pub struct JqFormatter<'a> {
    layout: PrettyFormatter<'a>,
    style: &'a Pretty,
}

impl<'a> JqFormatter<'a> {
    /// A formatter for `style`.
    pub fn new(style: &'a Pretty) -> Self {
        JqFormatter {
            layout: PrettyFormatter::with_indent(style.indent),
            style,
        }
    }

    fn number<W: ?Sized + Write>(&self, w: &mut W, text: &str) -> io::Result<()> {
        w.write_all((self.style.number)(text).as_bytes())
    }
}

impl Formatter for JqFormatter<'_> {
    /// serde_json reads numbers with `arbitrary_precision`, so they arrive here as their text.
    fn write_number_str<W: ?Sized + Write>(&mut self, w: &mut W, text: &str) -> io::Result<()> {
        self.number(w, text)
    }

    fn write_i64<W: ?Sized + Write>(&mut self, w: &mut W, value: i64) -> io::Result<()> {
        self.number(w, &value.to_string())
    }

    fn write_u64<W: ?Sized + Write>(&mut self, w: &mut W, value: u64) -> io::Result<()> {
        self.number(w, &value.to_string())
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        self.number(w, &format!("{value:?}"))
    }

    /// serde_json has escaped quotes, backslashes and control characters already (through
    /// [`Self::write_char_escape`]); `/` and DEL are the dialect's own.
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'/' if self.style.escape_slash => b"\\/",
                0x7f if self.style.escape_del => b"\\u007f",
                _ => continue,
            };
            w.write_all(&bytes[start..i])?;
            w.write_all(escape)?;
            start = i + 1;
        }
        w.write_all(&bytes[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let short: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(c) if self.style.upper_hex => {
                return write!(w, "\\u{:04X}", c);
            }
            CharEscape::AsciiControl(c) => return write!(w, "\\u{:04x}", c),
        };
        w.write_all(short)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.layout.begin_array(w)
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.layout.end_array(w)
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.layout.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.layout.end_array_value(w)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.layout.begin_object(w)
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.layout.end_object(w)
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.layout.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.layout.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.layout.end_object_value(w)
    }
}

/// jq 1.6 turns every number into a double and prints the shortest form that reads back.
fn number(text: &str) -> String {
    let Ok(f) = text.parse::<f64>() else {
        return text.to_string();
    };
    if !f.is_finite() {
        return if f.is_nan() {
            "null".into()
        } else if f > 0.0 {
            "1.7976931348623157e+308".into()
        } else {
            "-1.7976931348623157e+308".into()
        };
    }
    if f == f.trunc() && f.abs() < 1e17 {
        return format!("{}", f as i64);
    }
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let neg = f < 0.0;
    let decpt = exp + 1;
    let nd = digits.len() as i32;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if decpt <= -4 || decpt > nd + 15 {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(&digits);
    } else if decpt >= nd {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (decpt - nd) as usize));
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

/// Writes `value` in `style`, with the final newline.
pub fn write_with<W: Write, T: Serialize + ?Sized>(
    mut out: W,
    value: &T,
    style: &Pretty,
) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut out, JqFormatter::new(style));
    value.serialize(&mut ser)?;
    out.write_all(b"\n")
}

/// `jq .` output of `v`, with the final newline.
pub fn pretty(v: &Value) -> String {
    pretty_with(v, &JQ)
}

/// `v` printed in `style`, with a final newline.
pub fn pretty_with(v: &Value, style: &Pretty) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, nor can serializing a Value (its keys are strings).
    let _ = write_with(&mut out, v, style);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_jq() -> Result<(), serde_json::Error> {
        let v: Value =
            serde_json::from_str(r#"[{"a": [], "b": {}, "c": ["x/ü\u007f"], "n": 1.0}]"#)?;
        assert_eq!(pretty(&v), "[\n  {\n    \"a\": [],\n    \"b\": {},\n    \"c\": [\n      \"x/ü\\u007f\"\n    ],\n    \"n\": 1\n  }\n]\n");
        assert_eq!(number("1.5"), "1.5");
        assert_eq!(number("1e-5"), "1e-05");
        Ok(())
    }

    /// Every control character and DEL, as `jq .` 1.6 prints them (recorded with /usr/bin/jq).
    #[test]
    fn escapes_every_control_character_and_del_as_jq_does() {
        let s: String = (0u8..0x20)
            .chain([b' ', b'"', b'/', b'\\', 0x7f])
            .map(char::from)
            .chain(['\u{80}', '\u{2028}', '😀'])
            .collect();
        let want = concat!(
            "[\n  \"",
            r#"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
            r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"#,
            r#" \"/\\\u007f"#,
            "\u{80}\u{2028}😀\"\n]\n"
        );
        assert_eq!(pretty(&Value::Array(vec![Value::String(s)])), want);
    }
}
