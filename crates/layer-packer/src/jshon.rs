//! `jshon -s "$tarhash" -i checksum < baseJson`: the base JSON re-printed the way jshon
//! (through jansson, `JSON_INDENT(1)`, key order kept) prints it, with `checksum` appended.

use serde_json::Value;

fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn number(text: &str) -> String {
    if !text.contains(['.', 'e', 'E']) {
        return text.to_string();
    }
    // jansson prints reals with "%.17g" and makes sure a '.' or exponent remains.
    let Ok(f) = text.parse::<f64>() else {
        return text.to_string();
    };
    let s = format_g17(f);
    if s.contains(['.', 'e', 'n', 'i']) {
        s
    } else {
        s + ".0"
    }
}

/// C's `printf("%.17g", f)`.
fn format_g17(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{f:.16e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (16 - exp).max(0) as usize;
    let s = format!("{f:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn value(out: &mut String, v: &Value, level: usize) {
    let indent = |out: &mut String, level: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', level));
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(&n.to_string())),
        Value::String(s) => string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                value(out, item, level + 1);
            }
            indent(out, level);
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                string(out, k);
                out.push_str(": ");
                value(out, item, level + 1);
            }
            indent(out, level);
            out.push('}');
        }
    }
}

/// The `json` file of mkPureLayer: `base` with `"checksum": tarsum` set (appended when new).
pub fn layer_json(base: &Value, tarsum: &str) -> Option<String> {
    let Value::Object(m) = base else { return None };
    let mut m = m.clone();
    m.insert("checksum".into(), Value::String(tarsum.to_string()));
    let mut out = String::new();
    value(&mut out, &Value::Object(m), 0);
    out.push('\n');
    Some(out)
}
