//! One store layer as the tar `stream_layered_image.py` writes with Python's `tarfile` (PAX format):
//! `/nix/` and `/nix/store/` first, then each store path and everything below it, sorted by path
//! component in Python's string order, symlinks never followed, hard links as full files.
//! Memory: one directory listing per level of the walk and one copy buffer, never a whole file.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use dockertools_common::tar::writer::{DataError, TarWriter};
use dockertools_common::tar::{self, pax, Header};

/// Errors while writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file system operation on `path` failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A file's data could not be copied (changed size, read error).
    #[error("{}: {source}", .path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: DataError,
    },
    /// A socket, which tar cannot hold.
    #[error("{}: is a socket, which a layer cannot hold", .0.display())]
    Socket(PathBuf),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[source] io::Error),
    /// Reading a layer of the base image failed (OCI output hashes base layers too).
    #[error(transparent)]
    Base(Box<crate::base::BaseError>),
}

impl LayerError {
    /// True when the failure is a closed downstream pipe.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            LayerError::Write(e) => e.kind() == io::ErrorKind::BrokenPipe,
            LayerError::Data { source, .. } => source.is_broken_pipe(),
            _ => false,
        }
    }
}

pub use dockertools_common::tar::Owner;

/// Python's string order on file names: code points, a non-UTF-8 byte as `U+DC00 + byte`.
pub use dockertools_common::py::name_cmp as py_name_cmp;

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

struct Walk<'a, W: Write> {
    tar: TarWriter<W>,
    owner: &'a Owner,
    buf: Vec<u8>,
}

impl<W: Write> Walk<'_, W> {
    fn dir_entry(&mut self, name: &[u8]) -> Result<(), LayerError> {
        let h = Header {
            name: name.to_vec(),
            mode: 0o755,
            typeflag: tar::DIR,
            ..self.base_header()
        };
        self.buf.clear();
        pax::encode(&h, &mut self.buf);
        self.tar.raw(&self.buf).map_err(LayerError::Write)
    }

    fn base_header(&self) -> Header {
        self.owner.header()
    }

    /// Adds `path` (named `name` in the archive, without a trailing slash) and, for a real
    /// directory, everything below it.
    fn add(&mut self, path: &Path, name: &[u8], descend: bool) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let md = fs::symlink_metadata(path).map_err(io_err)?;
        let ft = md.file_type();
        let mut h = Header {
            name: name.to_vec(),
            mode: md.mode() & 0o7777,
            ..self.base_header()
        };
        if ft.is_dir() {
            h.typeflag = tar::DIR;
            h.name.push(b'/');
        } else if ft.is_file() {
            h.typeflag = tar::REGULAR;
            h.size = md.len();
        } else if ft.is_symlink() {
            h.typeflag = tar::SYMLINK;
            h.linkname = fs::read_link(path)
                .map_err(io_err)?
                .into_os_string()
                .as_bytes()
                .to_vec();
        } else if ft.is_fifo() {
            h.typeflag = tar::FIFO;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.typeflag = if ft.is_char_device() {
                tar::CHAR
            } else {
                tar::BLOCKDEV
            };
            h.devmajor = tar::dev_major(md.rdev());
            h.devminor = tar::dev_minor(md.rdev());
        } else {
            return Err(LayerError::Socket(path.to_path_buf()));
        }
        self.buf.clear();
        pax::encode(&h, &mut self.buf);
        if h.typeflag == tar::REGULAR {
            let mut file = fs::File::open(path).map_err(io_err)?;
            self.tar.raw(&self.buf).map_err(LayerError::Write)?;
            self.tar
                .data_from(&mut file, h.size)
                .map_err(|source| LayerError::Data {
                    path: path.to_path_buf(),
                    source,
                })?;
        } else {
            self.tar.raw(&self.buf).map_err(LayerError::Write)?;
        }
        if ft.is_dir() && descend {
            let mut children: Vec<Vec<u8>> = Vec::new();
            for entry in fs::read_dir(path).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                children.push(entry.file_name().as_bytes().to_vec());
            }
            children.sort_by(|a, b| py_name_cmp(a, b));
            let mut child_name = name.to_vec();
            child_name.push(b'/');
            let base_len = child_name.len();
            for child in children {
                child_name.truncate(base_len);
                child_name.extend_from_slice(&child);
                let child_path = path.join(OsStr::from_bytes(&child));
                self.add(&child_path, &child_name.clone(), true)?;
            }
        }
        Ok(())
    }
}

/// Checks, from metadata alone, that the layer can be written: every path exists, no socket,
/// every directory readable. (A file that then changes size is caught while it is copied.)
pub fn check_layer(paths: &[String]) -> Result<(), LayerError> {
    fn walk(path: &Path, descend: bool) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let md = fs::symlink_metadata(path).map_err(io_err)?;
        let ft = md.file_type();
        if ft.is_socket() {
            return Err(LayerError::Socket(path.to_path_buf()));
        }
        if ft.is_dir() && descend {
            for entry in fs::read_dir(path).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                walk(&entry.path(), true)?;
            }
        }
        Ok(())
    }
    for p in paths {
        walk(Path::new(p), true)?;
    }
    Ok(())
}

/// Writes the layer tar of `paths` to `out` and returns `out`.
pub fn write_layer<W: Write>(paths: &[String], owner: &Owner, out: W) -> Result<W, LayerError> {
    let mut walk = Walk {
        tar: TarWriter::new(out),
        owner,
        buf: Vec::with_capacity(2048),
    };
    walk.dir_entry(b"/nix")?;
    walk.dir_entry(b"/nix/store")?;
    for p in paths {
        let norm = pathlib_normalize(p.as_bytes());
        let start = norm.iter().take_while(|&&b| b == b'/').count();
        let mut name = vec![b'/'];
        name.extend_from_slice(&norm[start..]);
        walk.add(Path::new(p), &name, true)?;
    }
    walk.tar.finish().map_err(LayerError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_order() {
        let mut names: Vec<&[u8]> = vec![b"a0", b"a.b", b"a-b", b"a"];
        names.sort_by(|a, b| py_name_cmp(a, b));
        assert_eq!(names, vec![&b"a"[..], b"a-b", b"a.b", b"a0"]);
    }

    #[test]
    fn normalizes_like_pathlib() {
        assert_eq!(pathlib_normalize(b"/nix/store/x/"), b"/nix/store/x");
        assert_eq!(pathlib_normalize(b"/nix//store/./x"), b"/nix/store/x");
        assert_eq!(pathlib_normalize(b"//nix"), b"//nix");
        assert_eq!(pathlib_normalize(b"///nix"), b"/nix");
    }
}
