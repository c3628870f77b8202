//! One store layer as the tar `stream_layered_image.py` writes with Python's `tarfile` (PAX format):
//! `/nix/` and `/nix/store/` first, then each store path and everything below it, sorted by path
//! component in Python's string order, symlinks never followed, hard links as full files.
//! Memory: one directory listing per level of the walk and one copy buffer, never a whole file.
//!
//! [`check_layer`] walks the same tree before the first byte of the image is written: every path
//! exists, no socket, every folder can be listed and every regular file can be opened. What it
//! cannot see is a file that changes or goes away between that walk and the copy; the copy then
//! fails naming the file.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use dockertools_common::tar::writer::{Data, DataError, Sink, TarWriter};
use dockertools_common::tar::{self, Dialect, Header};

use crate::store::StorePath;

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
}

pub use dockertools_common::tar::Owner;

/// What every entry of a store layer gets: the conf's owner and mtime, and the mode of the
/// `/nix` and `/nix/store` entries that open each layer.
#[derive(Clone, Debug)]
pub struct LayerOwner {
    /// Owner, group and mtime of every entry.
    pub owner: Owner,
    /// Mode of `/nix` and `/nix/store`.
    pub nix_root_mode: u32,
}

/// Python's string order on file names: code points, a non-UTF-8 byte as `U+DC00 + byte`.
pub use dockertools_common::py::name_cmp as py_name_cmp;

struct Walk<'a, S: Sink> {
    tar: TarWriter<S>,
    owner: &'a LayerOwner,
}

impl<S: Sink> Walk<'_, S> {
    fn dir_entry(&mut self, name: &[u8]) -> Result<(), LayerError> {
        let h = Header {
            name: name.to_vec(),
            mode: self.owner.nix_root_mode,
            typeflag: tar::DIR,
            ..self.owner.owner.header()
        };
        let path = Path::new(OsStr::from_bytes(name));
        self.tar.append(&h, Data::Empty).map_err(entry_err(path))
    }

    /// The entry header of `path` (named `name` in the archive, without a trailing slash).
    fn header(&self, path: &Path, md: &fs::Metadata, name: &[u8]) -> Result<Header, LayerError> {
        let mut h = Header::from_metadata(md, &self.owner.owner)
            .ok_or_else(|| LayerError::Socket(path.to_path_buf()))?;
        h.name = name.to_vec();
        if h.typeflag == tar::DIR {
            h.name.push(b'/');
        } else if h.typeflag == tar::SYMLINK {
            h.linkname = fs::read_link(path)
                .map_err(|source| LayerError::Io {
                    path: path.to_path_buf(),
                    source,
                })?
                .into_os_string()
                .into_vec();
        }
        Ok(h)
    }

    /// Adds `path` (named `name` in the archive, without a trailing slash) and, for a real
    /// directory, everything below it. A symlink is never followed.
    fn add(&mut self, path: &Path, name: &[u8]) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let md = fs::symlink_metadata(path).map_err(io_err)?;
        let h = self.header(path, &md, name)?;
        if h.typeflag == tar::REGULAR {
            let mut file = fs::File::open(path).map_err(io_err)?;
            let data = Data::Reader(&mut file);
            self.tar.append(&h, data).map_err(entry_err(path))?;
        } else {
            self.tar.append(&h, Data::Empty).map_err(entry_err(path))?;
        }
        if md.file_type().is_dir() {
            self.add_children(path, name)?;
        }
        Ok(())
    }

    /// Adds the entries of folder `path` in Python's name order.
    fn add_children(&mut self, path: &Path, name: &[u8]) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut children: Vec<Vec<u8>> = Vec::new();
        for entry in fs::read_dir(path).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            children.push(entry.file_name().into_vec());
        }
        children.sort_by(|a, b| py_name_cmp(a, b));
        let mut child_name = name.to_vec();
        child_name.push(b'/');
        let base_len = child_name.len();
        for child in children {
            child_name.truncate(base_len);
            child_name.extend_from_slice(&child);
            self.add(&path.join(OsStr::from_bytes(&child)), &child_name)?;
        }
        Ok(())
    }
}

/// The error of an entry for `path` that could not be written: the output's, or the file's.
fn entry_err(path: &Path) -> impl Fn(DataError) -> LayerError + '_ {
    move |source| match source {
        DataError::Write(e) => LayerError::Write(e),
        source => LayerError::Data {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Checks that the layer can be written: every path exists, no socket, every folder can be
/// listed and every regular file can be opened (opening is what the copy does, so a file the
/// process may not read is found here and not half way through the image).
pub fn check_layer(paths: &[StorePath]) -> Result<(), LayerError> {
    fn walk(path: &Path) -> Result<(), LayerError> {
        let io_err = |source| LayerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let md = fs::symlink_metadata(path).map_err(io_err)?;
        let ft = md.file_type();
        if ft.is_socket() {
            return Err(LayerError::Socket(path.to_path_buf()));
        }
        if ft.is_file() {
            fs::File::open(path).map_err(io_err)?;
        }
        if ft.is_dir() {
            for entry in fs::read_dir(path).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                walk(&entry.path())?;
            }
        }
        Ok(())
    }
    for p in paths {
        walk(&p.path)?;
    }
    Ok(())
}

/// Writes the layer tar of `paths` to `out` (any writer, or a sink that reads file data into
/// buffers of its own) and returns `out`.
pub fn write_layer<S: Sink>(
    paths: &[StorePath],
    owner: &LayerOwner,
    out: S,
) -> Result<S, LayerError> {
    let mut walk = Walk {
        tar: TarWriter::new(out, Dialect::Pax),
        owner,
    };
    walk.dir_entry(b"/nix")?;
    walk.dir_entry(b"/nix/store")?;
    for p in paths {
        walk.add(&p.path, &p.name)?;
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
}
