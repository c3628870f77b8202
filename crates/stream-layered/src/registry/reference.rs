//! The destination of `--format registry`: `docker://HOST[:PORT]/REPO[:TAG]`, skopeo's
//! transport spelling. The first component is always the registry's host (there is no default
//! registry); `docker.io` is reached at `registry-1.docker.io` and a one-component repository
//! there is `library/REPO`, as Docker Hub names its official images. The tag defaults to
//! `latest`, as skopeo's does.

/// A parsed destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The host (and port) as written, which also keys the credentials (`auth.json`).
    pub registry: String,
    /// Where the API is served (`registry-1.docker.io` for `docker.io`, else `registry`).
    pub api_host: String,
    /// The repository name.
    pub repository: String,
    /// The tag.
    pub tag: String,
}

/// Why a destination is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Not `docker://…`.
    #[error("{0:?}: a registry destination is docker://HOST[:PORT]/REPO[:TAG]")]
    Transport(String),
    /// No `/REPO` after the host.
    #[error("{0:?}: no repository after the host (docker://HOST[:PORT]/REPO[:TAG])")]
    NoRepository(String),
    /// A digest instead of a tag.
    #[error("{0:?}: pushing to a digest is not supported, give a tag")]
    Digest(String),
    /// A repository name the distribution spec does not allow.
    #[error("{0:?}: invalid repository name {1:?} (lowercase letters, digits and . _ - separators, components joined by /)")]
    Repository(String, String),
    /// A tag the distribution spec does not allow.
    #[error(
        "{0:?}: invalid tag {1:?} (letters, digits, _ . -, at most 128, not starting with . or -)"
    )]
    Tag(String, String),
    /// An empty or malformed host.
    #[error("{0:?}: invalid host {1:?}")]
    Host(String, String),
}

/// One path component of a repository name: `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-`s.
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Between two alphanumeric runs: one `.`, one or two `_`, or any number of `-`.
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && !b.get(i).is_some_and(alnum) {
            i += 1;
        }
        let sep = &c[start..i];
        let fine = sep.is_empty()
            || sep == "."
            || sep == "_"
            || sep == "__"
            || sep.bytes().all(|x| x == b'-');
        if !fine {
            return false;
        }
        while i < b.len() && b.get(i).is_some_and(alnum) {
            i += 1;
        }
    }
    true
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    let ok = |x: &u8| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-');
    !b.is_empty()
        && b.len() <= 128
        && b.first()
            .is_some_and(|f| f.is_ascii_alphanumeric() || *f == b'_')
        && b.iter().all(ok)
}

fn host_ok(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || h.starts_with('[') => (n, Some(p)),
        _ => (h, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'-' | b'[' | b']' | b':'));
    port_ok && name_ok
}

impl Reference {
    /// Parses `docker://HOST[:PORT]/REPO[:TAG]`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let rest = s
            .strip_prefix("docker://")
            .ok_or_else(|| ReferenceError::Transport(s.into()))?;
        if rest.contains('@') {
            return Err(ReferenceError::Digest(s.into()));
        }
        let (host, path) = rest
            .split_once('/')
            .filter(|(_, p)| !p.is_empty())
            .ok_or_else(|| ReferenceError::NoRepository(s.into()))?;
        if !host_ok(host) {
            return Err(ReferenceError::Host(s.into(), host.into()));
        }
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (&path[..last_slash + i], &path[last_slash + i + 1..]),
            None => (path, "latest"),
        };
        if !tag_ok(tag) {
            return Err(ReferenceError::Tag(s.into(), tag.into()));
        }
        if !repo.split('/').all(component_ok) {
            return Err(ReferenceError::Repository(s.into(), repo.into()));
        }
        let hub = host == "docker.io";
        let repository = match hub && !repo.contains('/') {
            true => format!("library/{repo}"),
            false => repo.to_string(),
        };
        Ok(Reference {
            registry: host.to_string(),
            api_host: match hub {
                true => "registry-1.docker.io".into(),
                false => host.to_string(),
            },
            repository,
            tag: tag.to_string(),
        })
    }

    /// `HOST/REPO:TAG`, for messages.
    pub fn display(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Result<(String, String, String, String), ReferenceError> {
        let r = Reference::parse(s)?;
        Ok((r.registry, r.api_host, r.repository, r.tag))
    }

    #[test]
    fn host_port_repository_and_tag_are_split() -> Result<(), ReferenceError> {
        assert_eq!(
            parts("docker://127.0.0.1:5000/a/b-c:v1.2")?,
            (
                "127.0.0.1:5000".into(),
                "127.0.0.1:5000".into(),
                "a/b-c".into(),
                "v1.2".into()
            )
        );
        assert_eq!(parts("docker://localhost/x")?.3, "latest");
        assert_eq!(
            parts("docker://docker.io/busybox:1")?,
            (
                "docker.io".into(),
                "registry-1.docker.io".into(),
                "library/busybox".into(),
                "1".into()
            )
        );
        assert_eq!(parts("docker://docker.io/me/app")?.2, "me/app");
        Ok(())
    }

    #[test]
    fn malformed_destinations_say_what_is_wrong() {
        type Check = fn(&ReferenceError) -> bool;
        let cases: [(&str, Check); 7] = [
            ("oci:x", |e| matches!(e, ReferenceError::Transport(_))),
            ("docker://host", |e| {
                matches!(e, ReferenceError::NoRepository(_))
            }),
            ("docker://host/", |e| {
                matches!(e, ReferenceError::NoRepository(_))
            }),
            ("docker://host/a@sha256:00", |e| {
                matches!(e, ReferenceError::Digest(_))
            }),
            ("docker://host/Upper:t", |e| {
                matches!(e, ReferenceError::Repository(..))
            }),
            ("docker://host/a//b:t", |e| {
                matches!(e, ReferenceError::Repository(..))
            }),
            ("docker://host/a:-t", |e| {
                matches!(e, ReferenceError::Tag(..))
            }),
        ];
        for (s, want) in cases {
            match Reference::parse(s) {
                Err(e) => assert!(want(&e), "{s}: {e:?}"),
                Ok(r) => panic!("{s}: accepted as {r:?}"),
            }
        }
        assert!(matches!(
            Reference::parse("docker://h:99999/a"),
            Err(ReferenceError::Host(..))
        ));
    }

    #[test]
    fn repository_components_follow_the_distribution_grammar() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "0x"] {
            assert!(component_ok(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a___b", "a._b", "A"] {
            assert!(!component_ok(bad), "{bad}");
        }
    }
}
