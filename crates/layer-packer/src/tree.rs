//! The virtual tree a layer is packed from: several sources merged in memory (metadata only,
//! never file data), the way mkPureLayer's `rsync -a` loop or symlinkJoin's `lndir` would lay
//! them out on disk.

use dockertools_common::tar::{dev_major, dev_minor};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Errors while reading the sources.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A source path could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A source is not a directory.
    #[error("{}: not a directory", .0.display())]
    NotDir(PathBuf),
    /// Two sources disagree in a way rsync would refuse.
    #[error("{}: cannot replace the directory {} of an earlier source with a non-directory", .path.display(), .at)]
    Clash {
        /// The later source entry.
        path: PathBuf,
        /// The path inside the layer.
        at: String,
    },
    /// A symlink loop while following directory symlinks.
    #[error("{}: too many levels of directory symlinks", .0.display())]
    Loop(PathBuf),
}

/// A node of the merged tree.
#[derive(Clone, Debug)]
pub enum Node {
    /// A directory and its children, sorted by name bytes.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Children.
        children: BTreeMap<Vec<u8>, Node>,
    },
    /// A regular file read from `path` when packed.
    File {
        /// Where the data is.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Size when the tree was read.
        size: u64,
    },
    /// A symbolic link.
    Symlink {
        /// Target, verbatim.
        target: Vec<u8>,
    },
    /// A FIFO.
    Fifo {
        /// Permission bits.
        mode: u32,
    },
    /// A character or block device.
    Device {
        /// True for a character device.
        char: bool,
        /// Permission bits.
        mode: u32,
        /// Major number.
        major: u64,
        /// Minor number.
        minor: u64,
    },
}

impl Node {
    /// An empty directory.
    pub fn dir(mode: u32) -> Node {
        Node::Dir {
            mode,
            children: BTreeMap::new(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A symlink's target, as bytes.
fn link_target(path: &Path) -> Result<Vec<u8>, TreeError> {
    Ok(fs::read_link(path)
        .map_err(io_err(path))?
        .into_os_string()
        .into_vec())
}

fn sorted_children(dir: &Path) -> Result<Vec<Vec<u8>>, TreeError> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        names.push(e.map_err(io_err(dir))?.file_name().as_bytes().to_vec());
    }
    names.sort();
    Ok(names)
}

/// How `rsync -a` treats directory symlinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dirlinks {
    /// `rsync -k`: a symlink to a directory in a source is copied as that directory.
    Copy,
    /// `rsync -K`: source symlinks stay symlinks; an existing symlink to a directory in the
    /// layer is kept and a later source's directory of that name is merged into its target.
    Keep,
}

/// Merges `src` into `dest` as `rsync -a --chown=0:0 src/ dest/` (with `-k` or `-K`) would.
/// Sockets are dropped (GNU tar skips them).
pub fn rsync_merge(dest: &mut Node, src: &Path, links: Dirlinks) -> Result<(), TreeError> {
    let md = fs::metadata(src).map_err(io_err(src))?;
    if !md.is_dir() {
        return Err(TreeError::NotDir(src.to_path_buf()));
    }
    if let Node::Dir { mode, .. } = dest {
        *mode = md.mode() & 0o7777;
    }
    merge_dir(dest, src, links, "", 0)
}

fn merge_dir(
    dest: &mut Node,
    src: &Path,
    links: Dirlinks,
    at: &str,
    depth: u32,
) -> Result<(), TreeError> {
    if depth > 256 {
        return Err(TreeError::Loop(src.to_path_buf()));
    }
    let Node::Dir { children, .. } = dest else {
        return Ok(());
    };
    for name in sorted_children(src)? {
        let path = src.join(OsStr::from_bytes(&name));
        let child_at = format!("{at}/{}", String::from_utf8_lossy(&name));
        let lmd = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ft = lmd.file_type();
        // With -k a symlink to a directory is copied as the directory it points to.
        let (md, is_dir) = if ft.is_symlink() && links == Dirlinks::Copy {
            match fs::metadata(&path) {
                Ok(m) if m.is_dir() => (m, true),
                _ => (lmd, false),
            }
        } else {
            let d = ft.is_dir();
            (lmd, d)
        };
        if is_dir {
            let mode = md.mode() & 0o7777;
            let slot = children
                .entry(name.clone())
                .or_insert_with(|| Node::dir(mode));
            match &mut *slot {
                Node::Dir { mode: m, .. } => *m = mode,
                Node::Symlink { .. } if links == Dirlinks::Keep => {
                    // rsync -K writes through the kept symlink; a layer can only hold that when
                    // the link points inside it, which needs the real tree: keep the link and
                    // merge nothing, as the target is outside the layer.
                    continue;
                }
                _ => *slot = Node::dir(mode),
            }
            merge_dir(slot, &path, links, &child_at, depth + 1)?;
            continue;
        }
        let ft = md.file_type();
        let node = if ft.is_file() {
            Node::File {
                path: path.clone(),
                mode: md.mode() & 0o7777,
                size: md.len(),
            }
        } else if ft.is_symlink() {
            Node::Symlink {
                target: link_target(&path)?,
            }
        } else if ft.is_fifo() {
            Node::Fifo {
                mode: md.mode() & 0o7777,
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            Node::Device {
                char: ft.is_char_device(),
                mode: md.mode() & 0o7777,
                major: dev_major(md.rdev()),
                minor: dev_minor(md.rdev()),
            }
        } else {
            continue; // a socket: GNU tar skips it
        };
        if let Some(Node::Dir { children: c, .. }) = children.get(&name) {
            if !c.is_empty() {
                return Err(TreeError::Clash { path, at: child_at });
            }
        }
        children.insert(name, node);
    }
    Ok(())
}

/// Adds `src` to `dest` as `lndir -silent src dest` does for symlinkJoin: real directories (0755),
/// an absolute symlink for every file, symlinks copied as they are; names already present are kept.
pub fn lndir(dest: &mut Node, src: &Path) -> Result<(), TreeError> {
    let md = fs::metadata(src).map_err(io_err(src))?;
    if !md.is_dir() {
        return Err(TreeError::NotDir(src.to_path_buf()));
    }
    lndir_dir(dest, src)
}

fn lndir_dir(dest: &mut Node, src: &Path) -> Result<(), TreeError> {
    let Node::Dir { children, .. } = dest else {
        return Ok(());
    };
    for name in sorted_children(src)? {
        let path = src.join(OsStr::from_bytes(&name));
        let lmd = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ft = lmd.file_type();
        if ft.is_dir() {
            let slot = children.entry(name).or_insert_with(|| Node::dir(0o755));
            if matches!(slot, Node::Dir { .. }) {
                lndir_dir(slot, &path)?;
            }
            continue;
        }
        if children.contains_key(&name) {
            continue;
        }
        let node = if ft.is_symlink() {
            Node::Symlink {
                target: link_target(&path)?,
            }
        } else {
            Node::Symlink {
                target: path.as_os_str().as_bytes().to_vec(),
            }
        };
        children.insert(name, node);
    }
    Ok(())
}

/// `mkdir -p PATH && chmod MODE PATH` inside the tree.
pub fn mkdir(root: &mut Node, rel: &[u8], mode: u32) -> Result<(), String> {
    let mut cur = root;
    let parts: Vec<&[u8]> = rel
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.is_empty() {
        if let Node::Dir { mode: m, .. } = cur {
            *m = mode;
        }
        return Ok(());
    }
    for (i, part) in parts.iter().enumerate() {
        if *part == b".." {
            return Err(format!(
                "{}: '..' is not allowed",
                String::from_utf8_lossy(rel)
            ));
        }
        let Node::Dir { children, .. } = cur else {
            return Err(format!(
                "{}: a parent is not a directory",
                String::from_utf8_lossy(rel)
            ));
        };
        let last = i + 1 == parts.len();
        let slot = children
            .entry(part.to_vec())
            .or_insert_with(|| Node::dir(0o755));
        if !matches!(slot, Node::Dir { .. }) {
            return Err(format!(
                "{}: exists and is not a directory",
                String::from_utf8_lossy(rel)
            ));
        }
        if last {
            if let Node::Dir { mode: m, .. } = slot {
                *m = mode;
            }
        }
        cur = slot;
    }
    Ok(())
}
