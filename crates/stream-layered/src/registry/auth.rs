//! Registry credentials and challenges, as skopeo and podman find and answer them.
//!
//! Credentials come from auth files in containers-auth.json(5)'s format (`{"auths": {KEY:
//! {"auth": base64("user:password")}}}`), which `~/.docker/config.json` shares; `main` passes the
//! files in the order skopeo reads them (`$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`), and the first file with an
//! entry for the destination wins. A key is a host, or a host and a repository namespace (the
//! most specific key wins); a key with a scheme (`https://host/v1/`, Docker's older form) counts
//! as its host. Credential helpers (`credHelpers`, `credsStore`) are not run.
//!
//! A challenge is the `WWW-Authenticate` header of a 401: `Basic` is answered with the
//! credentials, `Bearer realm=…,service=…` by asking the realm for a token (see `client`).

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use super::reference::Reference;

/// A user name and password, and the file they came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
    /// The auth file holding them.
    pub source: PathBuf,
}

/// An auth file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// It could not be read.
    #[error("auth file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// It is not an auth file.
    #[error("auth file {}: {why}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The auth file keys that may hold the destination's credentials, most specific first:
/// `host/a/b`, `host/a`, `host` (and Docker Hub's legacy `index.docker.io`).
fn candidate_keys(dest: &Reference) -> Vec<String> {
    let mut keys = Vec::new();
    let mut path = format!("{}/{}", dest.registry, dest.repository);
    keys.push(path.clone());
    while let Some(i) = path.rfind('/') {
        path.truncate(i);
        keys.push(path.clone());
    }
    if dest.registry == "docker.io" {
        keys.push("index.docker.io".into());
    }
    keys
}

/// An auth file key as a host or host/namespace: a scheme and any path after the host dropped.
fn normalize_key(key: &str) -> &str {
    for scheme in ["https://", "http://"] {
        if let Some(rest) = key.strip_prefix(scheme) {
            return rest.split('/').next().unwrap_or(rest);
        }
    }
    key
}

/// Decodes one entry's `auth` (base64 of `user:password`).
fn decode_entry(
    entry: &Value,
    key: &str,
    path: &Path,
) -> Result<Option<Credentials>, AuthFileError> {
    let malformed = |why: String| AuthFileError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| malformed(format!("{key:?}: \"auth\" is not base64: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| malformed(format!("{key:?}: \"auth\" is not UTF-8 text")))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| malformed(format!("{key:?}: \"auth\" is not user:password")))?;
    Ok(Some(Credentials {
        username: user.to_string(),
        password: password.to_string(),
        source: path.to_path_buf(),
    }))
}

/// The credentials one auth file holds for `dest`; a missing file holds none.
fn lookup_file(path: &Path, dest: &Reference) -> Result<Option<Credentials>, AuthFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuthFileError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let malformed = |why: String| AuthFileError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
    let auths = match v.get("auths") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(malformed("\"auths\" is not an object".into())),
    };
    for want in candidate_keys(dest) {
        // Keys are compared once normalised; the file's own order decides between two keys
        // that normalise alike, as JSON objects are read in order.
        for (key, entry) in auths {
            if normalize_key(key) == want {
                if let Some(c) = decode_entry(entry, key, path)? {
                    return Ok(Some(c));
                }
            }
        }
    }
    Ok(None)
}

/// The credentials for `dest` from the first of `files` that has an entry for it.
pub fn find_credentials(
    files: &[PathBuf],
    dest: &Reference,
) -> Result<Option<Credentials>, AuthFileError> {
    for f in files {
        if let Some(c) = lookup_file(f, dest)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// `Authorization: Basic …` for `creds`.
pub fn basic_header(creds: &Credentials) -> String {
    let plain = format!("{}:{}", creds.username, creds.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(plain)
    )
}

/// A `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…[,scope=…]`.
    Bearer {
        /// Where tokens are handed out.
        realm: String,
        /// The `service` parameter, passed back to the realm.
        service: Option<String>,
    },
}

/// Parses `Scheme k="v", k2=v2`: the scheme and its parameters (quoted strings unescaped).
fn parse_params(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, after) = match after.strip_prefix('"') {
            Some(q) => {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, q.get(end..).unwrap_or(""))
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.push((key.trim().to_ascii_lowercase(), value));
        rest = after;
    }
    (scheme.to_ascii_lowercase(), params)
}

/// The challenge a 401's `WWW-Authenticate` header makes; `None` for a scheme we cannot answer.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = parse_params(header);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match scheme.as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn auth_file(dir: &Path, name: &str, auths: Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::json!({ "auths": auths }).to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sl-auth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn the_most_specific_key_of_the_first_file_with_an_entry_wins() -> Result<(), AuthFileError> {
        let d = scratch("keys");
        let first = auth_file(
            &d,
            "a.json",
            serde_json::json!({"other:5000": {"auth": b64("x:y")}}),
        );
        let second = auth_file(
            &d,
            "b.json",
            serde_json::json!({
                "reg:5000": {"auth": b64("host:pw")},
                "reg:5000/team": {"auth": b64("team:pw:with:colons")},
            }),
        );
        let third = auth_file(
            &d,
            "c.json",
            serde_json::json!({"reg:5000": {"auth": b64("late:x")}}),
        );
        let files = [d.join("missing.json"), first, second.clone(), third];
        let c = find_credentials(&files, &dest("docker://reg:5000/team/app:t"))?;
        assert_eq!(
            c,
            Some(Credentials {
                username: "team".into(),
                password: "pw:with:colons".into(),
                source: second,
            })
        );
        let c = find_credentials(&files, &dest("docker://reg:5000/solo"))?;
        assert_eq!(c.map(|c| c.username), Some("host".into()));
        assert_eq!(find_credentials(&files, &dest("docker://nobody/x"))?, None);
        Ok(())
    }

    #[test]
    fn docker_config_keys_with_a_scheme_count_as_their_host() -> Result<(), AuthFileError> {
        let d = scratch("docker");
        let f = auth_file(
            &d,
            "config.json",
            serde_json::json!({"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}),
        );
        let c = find_credentials(&[f], &dest("docker://docker.io/me/app"))?;
        assert_eq!(c.map(|c| c.username), Some("hub".into()));
        Ok(())
    }

    #[test]
    fn a_malformed_auth_file_is_an_error_naming_it() {
        let d = scratch("bad");
        let f = d.join("auth.json");
        std::fs::write(&f, "{").unwrap_or_else(|e| panic!("{e}"));
        let e = find_credentials(std::slice::from_ref(&f), &dest("docker://h/x"));
        assert!(
            matches!(e, Err(AuthFileError::Malformed { ref path, .. }) if *path == f),
            "{e:?}"
        );
        let f = auth_file(&d, "b.json", serde_json::json!({"h": {"auth": "%%%"}}));
        let e = find_credentials(&[f], &dest("docker://h/x"));
        assert!(matches!(e, Err(AuthFileError::Malformed { .. })), "{e:?}");
    }

    #[test]
    fn challenges_are_parsed_with_quoted_parameters() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="http://127.0.0.1:1/token",service="reg \"x\"",scope="repository:a:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg \"x\"".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn basic_header_is_base64_of_user_colon_password() {
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
            source: PathBuf::new(),
        };
        assert_eq!(basic_header(&c), "Basic dTpw");
    }
}
