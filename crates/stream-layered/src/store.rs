//! Store paths: each path of `store_layers` is checked against `store_dir` component by component
//! and normalised as `pathlib.PurePosixPath` normalises it, so that nothing outside the store goes
//! into an image.
//!
//! The original tests `path.startswith(store_dir)` on the strings, which lets `..` components and
//! sibling folders (`/nix/storeX/...`) through; that is a bug we do not copy. Here a store path is
//! `store_dir`, then `/`, then one or more components, none of them `..`. Empty and `.` components
//! and a trailing `/` are dropped, as pathlib drops them, so every path the original handles
//! correctly gives the same bytes. The normalised path is the one that is looked at, so a store
//! path that is a symlink is stored as a symlink even when written with a trailing `/`. A path
//! deeper than one component below `store_dir` may go through symlinks only if its folder
//! resolves inside the store.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A checked store path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorePath {
    /// The normalised path, the one that is read.
    pub path: PathBuf,
    /// Its name in the layer: `/` and the normalised path without its leading slashes.
    pub name: Vec<u8>,
}

/// Why a store path is refused.
#[derive(Debug, thiserror::Error)]
pub enum StorePathError {
    /// The path does not start with `store_dir` and a `/`.
    #[error("{path:?} is not under store_dir {store_dir:?}")]
    NotUnder {
        /// The path as written in the conf.
        path: String,
        /// The store folder.
        store_dir: String,
    },
    /// A `..` component.
    #[error("{path:?} has a \"..\" component")]
    DotDot {
        /// The path as written in the conf.
        path: String,
    },
    /// The path is the store folder itself.
    #[error("{path:?} is store_dir itself, not a path in it")]
    StoreItself {
        /// The path as written in the conf.
        path: String,
    },
    /// A folder on the way goes through a symlink that leads out of the store.
    #[error("{path:?} leads out of store_dir {store_dir:?}: its folder {} resolves to {}", .folder.display(), .resolved.display())]
    Escapes {
        /// The path as written in the conf.
        path: String,
        /// The store folder.
        store_dir: String,
        /// The folder holding the path.
        folder: PathBuf,
        /// Where that folder really is.
        resolved: PathBuf,
    },
    /// A folder on the way could not be resolved.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// `pathlib.PurePosixPath(p)` as a string: repeated and trailing slashes and `.` components dropped
/// (exactly two leading slashes are kept, as POSIX allows).
pub fn pathlib_normalize(p: &[u8]) -> Vec<u8> {
    let leading = p.iter().take_while(|&&b| b == b'/').count();
    let root: &[u8] = match leading {
        0 => b"",
        2 => b"//",
        _ => b"/",
    };
    let parts: Vec<&[u8]> = p
        .split(|&b| b == b'/')
        .filter(|s| !s.is_empty() && *s != b".")
        .collect();
    let mut out = root.to_vec();
    out.extend_from_slice(&parts.join(&b"/"[..]));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// The components of `path` below `store_dir`, checked lexically (empty and `.` ones dropped).
pub fn components_below<'p>(
    store_dir: &str,
    path: &'p str,
) -> Result<Vec<&'p str>, StorePathError> {
    let not_under = || StorePathError::NotUnder {
        path: path.into(),
        store_dir: store_dir.into(),
    };
    let rest = path.strip_prefix(store_dir).ok_or_else(not_under)?;
    // `/nix/storeX/...` shares the string prefix but not the folder.
    if !store_dir.ends_with('/') && !rest.is_empty() && !rest.starts_with('/') {
        return Err(not_under());
    }
    let parts: Vec<&str> = rest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(StorePathError::DotDot { path: path.into() });
    }
    if parts.is_empty() {
        return Err(StorePathError::StoreItself { path: path.into() });
    }
    Ok(parts)
}

/// The store folder, resolved once (the first time a path below it goes through a folder).
pub struct Store<'a> {
    dir: &'a str,
    resolved: OnceCell<PathBuf>,
}

impl<'a> Store<'a> {
    /// The store at `dir` (`store_dir` as the conf writes it).
    pub fn new(dir: &'a str) -> Self {
        Store {
            dir,
            resolved: OnceCell::new(),
        }
    }

    fn resolved(&self) -> Result<&Path, StorePathError> {
        if let Some(p) = self.resolved.get() {
            return Ok(p);
        }
        let p = std::fs::canonicalize(self.dir).map_err(|source| StorePathError::Io {
            path: PathBuf::from(self.dir),
            source,
        })?;
        Ok(self.resolved.get_or_init(|| p))
    }

    /// Checks `path` (as written in the conf) and returns its normalised form.
    pub fn check(&self, path: &str) -> Result<StorePath, StorePathError> {
        let parts = components_below(self.dir, path)?;
        let norm = pathlib_normalize(path.as_bytes());
        let fs_path = PathBuf::from(OsStr::from_bytes(&norm));
        if parts.len() > 1 {
            self.check_folder(path, &fs_path)?;
        }
        let start = norm.iter().take_while(|&&b| b == b'/').count();
        let mut name = vec![b'/'];
        name.extend_from_slice(&norm[start..]);
        Ok(StorePath {
            path: fs_path,
            name,
        })
    }

    /// The folder holding a deeper path must really be inside the store: symlinks on the way
    /// are followed (as the original follows them), but only while they stay in the store.
    fn check_folder(&self, given: &str, path: &Path) -> Result<(), StorePathError> {
        let Some(folder) = path.parent() else {
            return Ok(());
        };
        let resolved = std::fs::canonicalize(folder).map_err(|source| StorePathError::Io {
            path: folder.to_path_buf(),
            source,
        })?;
        if resolved.starts_with(self.resolved()?) {
            return Ok(());
        }
        Err(StorePathError::Escapes {
            path: given.into(),
            store_dir: self.dir.into(),
            folder: folder.to_path_buf(),
            resolved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_pathlib() {
        assert_eq!(pathlib_normalize(b"/nix/store/x/"), b"/nix/store/x");
        assert_eq!(pathlib_normalize(b"/nix//store/./x"), b"/nix/store/x");
        assert_eq!(pathlib_normalize(b"//nix"), b"//nix");
        assert_eq!(pathlib_normalize(b"///nix"), b"/nix");
        assert_eq!(pathlib_normalize(b"a/../b"), b"a/../b");
        assert_eq!(pathlib_normalize(b""), b".");
    }

    #[test]
    fn paths_below_the_store_keep_their_components() -> Result<(), StorePathError> {
        let s = "/nix/store";
        assert_eq!(components_below(s, "/nix/store/a-x")?, ["a-x"]);
        assert_eq!(components_below(s, "/nix/store/a-x/")?, ["a-x"]);
        assert_eq!(
            components_below(s, "/nix/store//a-x/./bin/")?,
            ["a-x", "bin"]
        );
        assert_eq!(components_below(s, "/nix/store/a-x/.")?, ["a-x"]);
        assert_eq!(components_below("/nix/store/", "/nix/store/a-x")?, ["a-x"]);
        assert_eq!(components_below("store", "store/a-x")?, ["a-x"]);
        Ok(())
    }

    #[test]
    fn a_sibling_with_the_same_string_prefix_is_not_under_the_store() {
        for p in [
            "/nix/storeX/s",
            "/nix/store-old/a",
            "/nix/stor",
            "",
            "/other/a",
            "//nix/store/a",
        ] {
            let e = components_below("/nix/store", p);
            assert!(
                matches!(e, Err(StorePathError::NotUnder { .. })),
                "{p:?}: {e:?}"
            );
        }
    }

    #[test]
    fn dotdot_anywhere_below_the_store_is_refused() {
        for p in [
            "/nix/store/../../etc/hostname",
            "/nix/store/a-x/../a-x",
            "/nix/store/a-x/..",
            "/nix/store/..",
        ] {
            let e = components_below("/nix/store", p);
            assert!(
                matches!(e, Err(StorePathError::DotDot { .. })),
                "{p:?}: {e:?}"
            );
        }
    }

    #[test]
    fn the_store_itself_is_not_a_store_path() {
        for p in ["/nix/store", "/nix/store/", "/nix/store//./"] {
            let e = components_below("/nix/store", p);
            assert!(
                matches!(e, Err(StorePathError::StoreItself { .. })),
                "{p:?}: {e:?}"
            );
        }
    }

    #[test]
    fn the_layer_name_is_the_normalised_path_from_the_root() -> Result<(), StorePathError> {
        // A top-level path needs no folder check, so it works without a real store.
        let store = Store::new("/nonexistent/store");
        let p = store.check("/nonexistent/store//a-x/")?;
        assert_eq!(p.path, PathBuf::from("/nonexistent/store/a-x"));
        assert_eq!(p.name, b"/nonexistent/store/a-x");
        let p = Store::new("rel").check("rel/./b")?;
        assert_eq!(
            (p.path, p.name),
            (PathBuf::from("rel/b"), b"/rel/b".to_vec())
        );
        Ok(())
    }

    #[test]
    fn a_deeper_path_through_a_symlink_out_of_the_store_is_refused() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("sl-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = dir.join("store");
        std::fs::create_dir_all(store.join("pkg/bin"))?;
        std::fs::create_dir_all(dir.join("outside"))?;
        std::os::unix::fs::symlink(dir.join("outside"), store.join("evil"))?;
        std::os::unix::fs::symlink("pkg", store.join("inlink"))?;
        let s = store.to_string_lossy().into_owned();
        let checker = Store::new(&s);
        let out = checker.check(&format!("{s}/evil/secret"));
        assert!(
            matches!(out, Err(StorePathError::Escapes { .. })),
            "{out:?}"
        );
        let inside = checker.check(&format!("{s}/inlink/bin"));
        assert!(inside.is_ok(), "{inside:?}");
        // The link itself is a store path (stored as a link), with or without a slash.
        assert!(checker.check(&format!("{s}/evil/")).is_ok());
        std::fs::remove_dir_all(&dir)
    }
}
