//! `jshon -s "$tarhash" -i checksum < baseJson`: the base JSON re-printed the way jshon
//! (through jansson, `JSON_INDENT(1)`, key order kept) prints it, with `checksum` appended.

use dockertools_common::jq;
use serde_json::Value;

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

/// jansson's `JSON_INDENT(1) | JSON_ESCAPE_SLASH` output, as jshon prints it.
const JSHON: jq::Pretty = jq::Pretty {
    indent: b" ",
    escape_slash: true,
    escape_del: false,
    upper_hex: true,
    number,
};

/// The `json` file of mkPureLayer: `base` with `"checksum": tarsum` set (appended when new).
pub fn layer_json(base: &Value, tarsum: &str) -> Option<String> {
    let Value::Object(m) = base else { return None };
    let mut m = m.clone();
    m.insert("checksum".into(), Value::String(tarsum.to_string()));
    Some(jq::pretty_with(&Value::Object(m), &JSHON))
}
