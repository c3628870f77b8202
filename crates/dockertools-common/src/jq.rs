//! JSON printed the way `jq` 1.6 pretty-prints it (`jq -s add`): 2-space indent, raw UTF-8,
//! control characters and DEL as `\uXXXX`, a newline at the end; and, through [`Pretty`],
//! the other pretty printers of the originals (jansson's, for jshon).

use serde_json::Value;

/// How a pretty JSON printer writes its text: jq 1.6 and jansson (jshon) differ only here.
#[derive(Clone, Copy)]
pub struct Pretty {
    /// Spaces per nesting level.
    pub indent: usize,
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
    indent: 2,
    escape_slash: false,
    escape_del: true,
    upper_hex: false,
    number,
};

fn string(out: &mut String, s: &str, style: &Pretty) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if style.escape_slash => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32 == 0x7f && style.escape_del) => {
                if style.upper_hex {
                    out.push_str(&format!("\\u{:04X}", c as u32))
                } else {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
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

fn value(out: &mut String, v: &Value, level: usize, style: &Pretty) {
    let indent = |out: &mut String, level: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', style.indent * level));
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&(style.number)(&n.to_string())),
        Value::String(s) => string(out, s, style),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                value(out, item, level + 1, style);
            }
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                string(out, k, style);
                out.push_str(": ");
                value(out, item, level + 1, style);
            }
            indent(out, level);
            out.push('}');
        }
    }
}

/// `jq .` output of `v`, with the final newline.
pub fn pretty(v: &Value) -> String {
    pretty_with(v, &JQ)
}

/// `v` printed in `style`, with a final newline.
pub fn pretty_with(v: &Value, style: &Pretty) -> String {
    let mut out = String::new();
    value(&mut out, v, 0, style);
    out.push('\n');
    out
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
}
