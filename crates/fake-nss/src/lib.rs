//! fake-nss: the files of nixpkgs' `fakeNss`, as a folder or as a layer tar.
//!
//! Input: the extra passwd and group lines. Output: `etc/passwd` (root, the extra lines, nobody),
//! `etc/group` (likewise), `etc/nsswitch.conf` (`hosts: files dns`) and the empty folder `var/empty`,
//! written into a new folder ([`write_tree`]) or as a GNU-format tar ([`write_tar`]) that equals
//! `tar --sort=name --hard-dereference -C $fakeNss -cf - .` of the store path
//! (folders 0555, files 0444, mtime 1 unless overridden).
//! Deterministic: the bytes depend only on the lines and the options.
//! Exit codes (through `main`): 0 ok, 1 bad line or unusable OUTDIR, 2 usage.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use dockertools_common::atomic::AtomicDir;
use dockertools_common::tar::gnu::GnuOptions;
use dockertools_common::tar::writer::{Data, DataError, TarWriter};
use dockertools_common::tar::{Dialect, Header, DIR, REGULAR};

/// Errors of fake-nss.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An extra line with a line break in it.
    #[error("extra {kind} line {line:?} contains a line break")]
    Newline {
        /// `passwd` or `group`.
        kind: &'static str,
        /// The line.
        line: String,
    },
    /// An extra line with the wrong number of fields.
    #[error("extra {kind} line {line:?} has {found} colon-separated fields, expected {expected}")]
    Fields {
        /// `passwd` or `group`.
        kind: &'static str,
        /// The line.
        line: String,
        /// Fields found.
        found: usize,
        /// Fields expected.
        expected: usize,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the tar failed.
    #[error("writing tar: {0}")]
    Write(#[source] io::Error),
    /// An entry could not be written (a header value does not fit).
    #[error("{name}: {source}")]
    Entry {
        /// The entry.
        name: String,
        /// The error.
        #[source]
        source: DataError,
    },
}

/// The extra lines, in flag order.
#[derive(Clone, Debug, Default)]
pub struct Lines {
    /// Lines inserted between root and nobody in `etc/passwd`.
    pub passwd: Vec<String>,
    /// Lines inserted between root and nobody in `etc/group`.
    pub group: Vec<String>,
}

/// The three files' contents: (path relative to the root, bytes).
pub fn files(lines: &Lines) -> Result<[(&'static str, Vec<u8>); 3], Error> {
    check(&lines.passwd, "passwd", 7)?;
    check(&lines.group, "group", 4)?;
    let join = |first: &str, extra: &[String], last: &str| {
        let mut s = String::new();
        for l in std::iter::once(first)
            .chain(extra.iter().map(String::as_str))
            .chain([last])
        {
            s.push_str(l);
            s.push('\n');
        }
        s.into_bytes()
    };
    Ok([
        (
            "etc/group",
            join("root:x:0:", &lines.group, "nobody:x:65534:"),
        ),
        ("etc/nsswitch.conf", b"hosts: files dns\n".to_vec()),
        (
            "etc/passwd",
            join(
                "root:x:0:0:root user:/var/empty:/bin/sh",
                &lines.passwd,
                "nobody:x:65534:65534:nobody:/var/empty:/bin/sh",
            ),
        ),
    ])
}

fn check(lines: &[String], kind: &'static str, expected: usize) -> Result<(), Error> {
    for line in lines {
        if line.contains('\n') || line.contains('\r') {
            return Err(Error::Newline {
                kind,
                line: line.clone(),
            });
        }
        let found = line.split(':').count();
        if found != expected {
            return Err(Error::Fields {
                kind,
                line: line.clone(),
                found,
                expected,
            });
        }
    }
    Ok(())
}

/// Writes the tree into `outdir`, which must not exist or be an empty folder.
/// The tree is built under a temporary name beside it and renamed into place.
pub fn write_tree(outdir: &Path, lines: &Lines) -> Result<(), Error> {
    let contents = files(lines)?;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let out = AtomicDir::create(outdir).map_err(io_err(outdir))?;
    for dir in ["etc", "var", "var/empty"] {
        let p = out.path().join(dir);
        fs::create_dir(&p).map_err(io_err(&outdir.join(dir)))?;
    }
    for (rel, bytes) in &contents {
        out.create_file(rel)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(io_err(&outdir.join(rel)))?;
    }
    out.commit().map_err(io_err(outdir))
}

/// Owner settings of the tar, as GNU tar's `--owner`, `--group`, `--numeric-owner` give them.
#[derive(Clone, Debug)]
pub struct TarOptions {
    /// Modification time of every entry.
    pub mtime: i64,
    /// Owner id and name (empty name with `--numeric-owner`).
    pub uid: u64,
    /// Owner name.
    pub uname: Vec<u8>,
    /// Group id.
    pub gid: u64,
    /// Group name.
    pub gname: Vec<u8>,
    /// GNU tar's `--numeric-owner`.
    pub numeric_owner: bool,
}

/// Writes the tree as a GNU-format layer tar.
pub fn write_tar<W: Write>(out: W, lines: &Lines, opts: &TarOptions) -> Result<W, Error> {
    let contents = files(lines)?;
    let dialect = Dialect::Gnu(GnuOptions {
        numeric_owner: opts.numeric_owner,
    });
    let mut tar = TarWriter::new(out, dialect);
    let mut append = |name: &str, data: Option<&[u8]>| {
        let h = Header {
            name: name.as_bytes().to_vec(),
            mode: if data.is_some() { 0o444 } else { 0o555 },
            uid: opts.uid,
            gid: opts.gid,
            size: data.map_or(0, |d| d.len() as u64),
            mtime: opts.mtime,
            typeflag: if data.is_some() { REGULAR } else { DIR },
            uname: opts.uname.clone(),
            gname: opts.gname.clone(),
            ..Header::default()
        };
        let data = data.map_or(Data::Empty, Data::Bytes);
        tar.append(&h, data).map_err(|source| match source {
            DataError::Write(e) => Error::Write(e),
            source => Error::Entry {
                name: name.to_string(),
                source,
            },
        })
    };
    append("./", None)?;
    append("./etc/", None)?;
    for (rel, bytes) in &contents {
        append(&format!("./{rel}"), Some(bytes))?;
    }
    append("./var/", None)?;
    append("./var/empty/", None)?;
    tar.finish().map_err(Error::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_lines() {
        let bad = Lines {
            passwd: vec!["a:b".into()],
            group: vec![],
        };
        assert!(matches!(
            files(&bad),
            Err(Error::Fields {
                found: 2,
                expected: 7,
                ..
            })
        ));
        let nl = Lines {
            passwd: vec![],
            group: vec!["a:x:1:\nb".into()],
        };
        assert!(matches!(files(&nl), Err(Error::Newline { .. })));
    }

    #[test]
    fn passwd_order() -> Result<(), Error> {
        let l = Lines {
            passwd: vec!["a:x:1:1::/:/bin/sh".into()],
            group: vec![],
        };
        let f = files(&l)?;
        assert_eq!(
            f[2].1,
            b"root:x:0:0:root user:/var/empty:/bin/sh\na:x:1:1::/:/bin/sh\nnobody:x:65534:65534:nobody:/var/empty:/bin/sh\n"
        );
        Ok(())
    }
}
