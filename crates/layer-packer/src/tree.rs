//! The virtual tree a layer is packed from: several sources merged in memory (metadata only,
//! never file data), the way mkPureLayer's `rsync -a` loop or symlinkJoin's `lndir` would lay
//! them out on disk.
//!
//! The sources are walked depth first with an explicit stack, so a tree as deep as the system
//! lets a path be is read without recursion.
//! Following directory symlinks (`rsync -k`) can make a small input expand without end, so the
//! walk refuses a directory that is already on its own path (a cycle) and stops after
//! [`MAX_ENTRIES`] entries across all the sources of a layer.
//!
//! tidy: lookup only (the hash set of directories on the current path and the cache of
//! followed links are only looked up).

use dockertools_common::tar::{dev_major, dev_minor};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most entries the sources of one layer may hold, counted as they are read: an entry
/// reached through directory symlinks by several paths counts once per path.
/// The merged tree takes about 200 bytes per entry (measured on a directory symlink bomb,
/// where every entry is a directory), so this bounds memory near 250 MB; reading that many
/// entries through symlinks takes a few seconds.
pub const MAX_ENTRIES: u64 = 1 << 20;

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
    /// A directory symlink (or mount) leads back to a directory on its own path.
    #[error("{}: directory symlink cycle: {at} in the layer leads back to {}", .link.display(), .ancestor.display())]
    Cycle {
        /// The entry that closes the cycle, usually a symlink.
        link: PathBuf,
        /// Its path in the layer.
        at: String,
        /// The directory on its path that it is again.
        ancestor: PathBuf,
    },
    /// The sources hold more entries than a layer may.
    #[error("{}: more than {cap} entries in the layer (a directory symlink counts its target again each time it is followed; --max-entries raises the cap); stopped at {at}", .source_dir.display())]
    TooManyEntries {
        /// The source being read when the cap was reached.
        source_dir: PathBuf,
        /// The cap.
        cap: u64,
        /// The layer path of the entry that went over it.
        at: String,
    },
}

/// A node of the merged tree.
#[derive(Debug)]
pub enum Node {
    /// A directory and its children, sorted by name bytes.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Children.
        children: Children,
    },
    /// A regular file, read when packed from the source directory `dir` (an index into the
    /// tree's source directories, see [`Tree::dir_path`]) under the same name it has here.
    File {
        /// The source directory it is in.
        dir: usize,
        /// Permission bits.
        mode: u32,
        /// Size when the tree was read.
        size: u64,
        /// Modification time in seconds, for rsync's quick check.
        mtime: i64,
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
            children: Children::default(),
        }
    }
}

impl Drop for Node {
    /// Frees a tree of any depth without recursion: the derived drop would take a stack frame
    /// per level.
    fn drop(&mut self) {
        let Node::Dir { children, .. } = self else {
            return;
        };
        let mut pending: Vec<Node> = std::mem::take(children).into_nodes().collect();
        while let Some(mut node) = pending.pop() {
            if let Node::Dir { children, .. } = &mut node {
                pending.extend(std::mem::take(children).into_nodes());
            }
        }
    }
}

/// A directory's children, sorted by name bytes.
/// A sorted vector rather than a B-tree: most directories are small, and a B-tree node takes
/// several hundred bytes however few children it holds.
#[derive(Debug, Default)]
pub struct Children(Vec<(Box<[u8]>, Node)>);

impl Children {
    /// The children in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &Node)> + '_ {
        self.0.iter().map(|(name, node)| (&name[..], node))
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The child `name`.
    pub fn get_mut(&mut self, name: &[u8]) -> Option<&mut Node> {
        let i = self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        self.0.get_mut(i).map(|(_, node)| node)
    }

    /// The child `name`, made by `make` when absent. One insertion moves the names after it, so
    /// this is for a few names; a directory read from a source goes through [`Children::merge`].
    pub fn get_or_insert_with(&mut self, name: &[u8], make: impl FnOnce() -> Node) -> &mut Node {
        let i = match self.0.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (name.into(), make()));
                i
            }
        };
        // In bounds: the index binary_search gave, after any insertion there.
        &mut self.0[i].1
    }

    /// Adds `added`, sorted by name and none of them present already, in one pass.
    pub fn merge(&mut self, added: Vec<(Box<[u8]>, Node)>) {
        let in_order = match (self.0.last(), added.first()) {
            (Some((last, _)), Some((first, _))) => last < first,
            _ => true,
        };
        if in_order {
            // The first source of a directory, or names that all sort after the present ones.
            self.0.extend(added);
            return;
        }
        let old = std::mem::take(&mut self.0);
        self.0.reserve_exact(old.len() + added.len());
        let mut old = old.into_iter().peekable();
        let mut added = added.into_iter().peekable();
        loop {
            let take_old = match (old.peek(), added.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_old { old.next() } else { added.next() };
            self.0.extend(next);
        }
    }

    fn into_nodes(self) -> impl Iterator<Item = Node> {
        self.0.into_iter().map(|(_, node)| node)
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

/// The entries of `dir` sorted by name, with their `lstat` metadata.
/// The metadata is read relative to the open directory, so the cost of a lookup does not grow
/// with the depth of `dir` or the symlinks on its path.
fn sorted_children(dir: &Path) -> Result<Vec<(Vec<u8>, fs::Metadata)>, TreeError> {
    let mut entries = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let md = e.metadata().map_err(|source| TreeError::Io {
            path: e.path(),
            source,
        })?;
        entries.push((e.file_name().into_vec(), md));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
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

/// A source directory, kept as its parent and its name so that a file costs the same memory
/// however deep it is.
#[derive(Debug)]
enum SourceDir {
    /// A source as given.
    Root(PathBuf),
    /// A directory in another.
    Child {
        /// Its parent's index.
        parent: usize,
        /// Its name there.
        name: Vec<u8>,
    },
    /// A followed directory symlink, read through the real path of its target so that no
    /// lookup goes through a chain of symlinks.
    Link {
        /// The link's name.
        name: Vec<u8>,
        /// Its target's canonical path.
        real: Arc<Path>,
    },
}

/// The merged tree of a layer's sources and the source directories its files are read from.
#[derive(Debug)]
pub struct Tree {
    /// The layer's root directory.
    pub root: Node,
    dirs: Vec<SourceDir>,
    reading: Reading,
}

impl Tree {
    /// An empty layer (its root 0755) that may read at most `max_entries` entries.
    pub fn new(max_entries: u64) -> Tree {
        Tree {
            root: Node::dir(0o755),
            dirs: Vec::new(),
            reading: Reading {
                read: 0,
                max: max_entries,
                followed: HashMap::new(),
            },
        }
    }

    /// The path of the source directory `dir` (see [`Node::File`]).
    pub fn dir_path(&self, dir: usize) -> PathBuf {
        dir_path(&self.dirs, dir)
    }

    /// Merges `src` into the layer as `rsync -a --chown=0:0 src/ layer/` (with `-k` or `-K`)
    /// would. Sockets are dropped (GNU tar skips them).
    pub fn rsync(&mut self, src: &Path, links: Dirlinks) -> Result<(), TreeError> {
        let md = fs::metadata(src).map_err(io_err(src))?;
        if !md.is_dir() {
            return Err(TreeError::NotDir(src.to_path_buf()));
        }
        if let Node::Dir { mode, .. } = &mut self.root {
            *mode = md.mode() & 0o7777;
        }
        self.walk(src, id_of(&md), |node, place| rsync_dir(node, place, links))
    }

    /// Adds `src` to the layer as `lndir -silent src layer` does for symlinkJoin: real
    /// directories (0755), a symlink to `src/...` for every file (absolute when `src` is),
    /// symlinks copied as they are; names already present are kept.
    pub fn lndir(&mut self, src: &Path) -> Result<(), TreeError> {
        let md = fs::metadata(src).map_err(io_err(src))?;
        if !md.is_dir() {
            return Err(TreeError::NotDir(src.to_path_buf()));
        }
        self.walk(src, id_of(&md), lndir_dir)
    }
}

/// A file system object's identity.
type Id = (u64, u64);

fn id_of(md: &fs::Metadata) -> Id {
    (md.dev(), md.ino())
}

/// A subdirectory a visit found, to be walked later.
struct Subdir {
    name: Vec<u8>,
    id: Id,
    /// The canonical path of a followed symlink's target.
    real: Option<Arc<Path>>,
}

/// A directory on the current path of a walk.
struct Frame {
    /// Its index among the source directories.
    dir: usize,
    /// Its path.
    path: PathBuf,
    id: Id,
    /// Subdirectories still to walk, the next one last.
    todo: Vec<Subdir>,
}

/// Where a visit is: the directory being read, in the source and in the layer.
struct Place<'a> {
    /// The source given on the command line.
    source: &'a Path,
    /// The directory being read.
    path: &'a Path,
    /// Its index among the source directories.
    dir: usize,
    /// The directories from the source's root to it.
    frames: &'a [Frame],
    /// Every source directory.
    dirs: &'a [SourceDir],
    /// Its identity.
    id: Id,
    /// What the walk keeps across sources.
    reading: &'a mut Reading,
}

/// What the walks keep across the sources of a layer.
#[derive(Debug)]
struct Reading {
    /// Entries read so far.
    read: u64,
    /// The cap on them.
    max: u64,
    /// Directory symlinks already followed, by the identity of their directory and their own:
    /// a bomb reaches the same few links again and again, and resolving a target's canonical
    /// path costs a lookup per component. A symlink may be hard linked into several
    /// directories, where a relative target means different things, hence both identities.
    followed: HashMap<(Id, Id), Followed>,
}

/// A followed directory symlink's target.
#[derive(Clone, Debug)]
struct Followed {
    id: Id,
    mode: u32,
    real: Arc<Path>,
}

impl Place<'_> {
    /// The layer path of the child `name`, for messages.
    fn at(&self, name: &[u8]) -> String {
        layer_path(self.dirs, self.frames, name)
    }

    /// Counts the child `name` against the cap.
    fn take(&mut self, name: &[u8]) -> Result<(), TreeError> {
        self.reading.read += 1;
        if self.reading.read > self.reading.max {
            return Err(TreeError::TooManyEntries {
                source_dir: self.source.to_path_buf(),
                cap: self.reading.max,
                at: self.at(name),
            });
        }
        Ok(())
    }
}

/// The path of the source directory `dir`, from its root and the names below it.
fn dir_path(dirs: &[SourceDir], dir: usize) -> PathBuf {
    let mut names = Vec::new();
    let mut at = dir;
    let mut path = PathBuf::new();
    while let Some(d) = dirs.get(at) {
        match d {
            SourceDir::Root(root) => {
                path.clone_from(root);
                break;
            }
            SourceDir::Link { real, .. } => {
                path = real.to_path_buf();
                break;
            }
            SourceDir::Child { parent, name } => {
                names.push(name);
                at = *parent;
            }
        }
    }
    for name in names.iter().rev() {
        path.push(OsStr::from_bytes(name));
    }
    path
}

/// The layer path of the child `name` of the last of `frames`, for messages.
fn layer_path(dirs: &[SourceDir], frames: &[Frame], name: &[u8]) -> String {
    let mut at = String::new();
    for f in frames.iter().skip(1) {
        at.push('/');
        at.push_str(&String::from_utf8_lossy(frame_name(dirs, f)));
    }
    at.push('/');
    at.push_str(&String::from_utf8_lossy(name));
    at
}

/// The name of the frame `f` in its parent (empty for the source's root).
fn frame_name<'a>(dirs: &'a [SourceDir], f: &Frame) -> &'a [u8] {
    match dirs.get(f.dir) {
        Some(SourceDir::Child { name, .. } | SourceDir::Link { name, .. }) => name,
        _ => b"",
    }
}

/// The node at the layer path of `frames` below `root`.
fn node_at<'a>(root: &'a mut Node, frames: &[Frame], dirs: &[SourceDir]) -> Option<&'a mut Node> {
    let mut cur = root;
    for f in frames.iter().skip(1) {
        let Node::Dir { children, .. } = cur else {
            return None;
        };
        cur = children.get_mut(frame_name(dirs, f))?;
    }
    Some(cur)
}

impl Tree {
    /// Walks the directory `src` into the layer depth first, with an explicit stack.
    /// `visit` reads one directory into its node and returns the subdirectories to walk, in
    /// order. A subdirectory that is a directory already on its own path is a cycle.
    fn walk<F>(&mut self, src: &Path, src_id: Id, mut visit: F) -> Result<(), TreeError>
    where
        F: FnMut(&mut Node, &mut Place) -> Result<Vec<Subdir>, TreeError>,
    {
        let Tree {
            root,
            dirs,
            reading,
        } = self;
        let mut on_path = HashSet::from([src_id]);
        dirs.push(SourceDir::Root(src.to_path_buf()));
        let mut frames = vec![Frame {
            dir: dirs.len() - 1,
            path: src.to_path_buf(),
            id: src_id,
            todo: Vec::new(),
        }];
        while let Some(top) = frames.last() {
            if let Some(node) = node_at(root, &frames, dirs) {
                let mut place = Place {
                    source: src,
                    path: &top.path,
                    dir: top.dir,
                    frames: &frames,
                    dirs,
                    id: top.id,
                    reading,
                };
                let mut todo = visit(node, &mut place)?;
                todo.reverse();
                if let Some(top) = frames.last_mut() {
                    top.todo = todo;
                }
            }
            let Some(sub) = next_subdir(&mut frames, &mut on_path) else {
                break;
            };
            let Some(parent) = frames.last() else {
                break;
            };
            if !on_path.insert(sub.id) {
                let link = parent.path.join(OsStr::from_bytes(&sub.name));
                let at = layer_path(dirs, &frames, &sub.name);
                return Err(cycle(dirs, &frames, link, at, sub.id));
            }
            let frame = enter(dirs, parent, sub);
            frames.push(frame);
        }
        Ok(())
    }
}

/// The frame of `sub`, a subdirectory of `parent`, recorded among the source directories `dirs`.
fn enter(dirs: &mut Vec<SourceDir>, parent: &Frame, sub: Subdir) -> Frame {
    let (dir, path) = match sub.real {
        Some(real) => {
            let path = real.to_path_buf();
            let dir = SourceDir::Link {
                name: sub.name,
                real,
            };
            (dir, path)
        }
        None => {
            let path = parent.path.join(OsStr::from_bytes(&sub.name));
            let dir = SourceDir::Child {
                parent: parent.dir,
                name: sub.name,
            };
            (dir, path)
        }
    };
    dirs.push(dir);
    Frame {
        dir: dirs.len() - 1,
        path,
        id: sub.id,
        todo: Vec::new(),
    }
}

/// Pops the next subdirectory to walk, leaving the directories that have none left (its
/// parent stays on top); `None` when the walk is done.
fn next_subdir(frames: &mut Vec<Frame>, on_path: &mut HashSet<Id>) -> Option<Subdir> {
    loop {
        let top = frames.last_mut()?;
        if let Some(sub) = top.todo.pop() {
            return Some(sub);
        }
        on_path.remove(&top.id);
        frames.pop();
    }
}

/// The error for `link` (at the layer path `at`), which is the directory `id` again, found on
/// the path `frames`.
fn cycle(dirs: &[SourceDir], frames: &[Frame], link: PathBuf, at: String, id: Id) -> TreeError {
    let ancestor = frames
        .iter()
        .find(|f| f.id == id)
        .map(|f| dir_path(dirs, f.dir))
        .unwrap_or_default();
    TreeError::Cycle { link, at, ancestor }
}

/// Reads one source directory into `dest` as rsync would.
fn rsync_dir(
    dest: &mut Node,
    place: &mut Place,
    links: Dirlinks,
) -> Result<Vec<Subdir>, TreeError> {
    let Node::Dir { children, .. } = dest else {
        return Ok(Vec::new());
    };
    let mut subdirs = Vec::new();
    let mut added = Vec::new();
    for (name, lmd) in sorted_children(place.path)? {
        let path = place.path.join(OsStr::from_bytes(&name));
        place.take(&name)?;
        let followed = rsync_follow(place, &path, &lmd, links)?;
        let dir = match &followed {
            Some(f) => Some((f.mode, f.id)),
            None if lmd.is_dir() => Some((lmd.mode() & 0o7777, id_of(&lmd))),
            None => None,
        };
        if let Some((mode, id)) = dir {
            if rsync_subdir(children, &mut added, &name, mode, links) {
                let real = followed.map(|f| f.real);
                subdirs.push(Subdir { name, id, real });
            }
            continue;
        }
        let Some(node) = leaf(&path, &lmd, place.dir)? else {
            continue; // a socket: GNU tar skips it
        };
        match children.get_mut(&name) {
            None => added.push((name.into_boxed_slice(), node)),
            Some(old) => {
                if !rsync_replace(old, node) {
                    let at = place.at(&name);
                    return Err(TreeError::Clash { path, at });
                }
            }
        }
    }
    children.merge(added);
    Ok(subdirs)
}

/// Puts a later source's non-directory `new` where `old` is, as rsync does; false when `old`
/// is a directory that is not empty, which rsync refuses to delete.
fn rsync_replace(old: &mut Node, new: Node) -> bool {
    match (&mut *old, &new) {
        (Node::Dir { children, .. }, _) if !children.is_empty() => return false,
        (
            Node::File {
                mode, size, mtime, ..
            },
            Node::File {
                mode: m,
                size: s,
                mtime: t,
                ..
            },
        ) if size == s && mtime == t => {
            // rsync's quick check: a file of the same size and mtime (in seconds) is not
            // copied again, only its attributes are updated, so the earlier content stays.
            *mode = *m;
            return true;
        }
        _ => {}
    }
    *old = new;
    true
}

/// With `-k`, the directory a symlink at `path` (with metadata `lmd`) points to, which rsync
/// copies as a directory; `None` for anything else.
fn rsync_follow(
    place: &mut Place,
    path: &Path,
    lmd: &fs::Metadata,
    links: Dirlinks,
) -> Result<Option<Followed>, TreeError> {
    if !lmd.file_type().is_symlink() || links == Dirlinks::Keep {
        return Ok(None);
    }
    let key = (place.id, id_of(lmd));
    if let Some(f) = place.reading.followed.get(&key) {
        return Ok(Some(f.clone()));
    }
    let Ok(md) = fs::metadata(path) else {
        return Ok(None); // dangling or looping: copied as a symlink
    };
    if !md.is_dir() {
        return Ok(None);
    }
    let real = fs::canonicalize(path).map_err(io_err(path))?;
    let followed = Followed {
        id: id_of(&md),
        mode: md.mode() & 0o7777,
        real: real.into(),
    };
    place.reading.followed.insert(key, followed.clone());
    Ok(Some(followed))
}

/// Makes the directory `name` (in `children`, or new in `added`) for a source directory of
/// mode `mode`; true when it is to be walked.
fn rsync_subdir(
    children: &mut Children,
    added: &mut Vec<(Box<[u8]>, Node)>,
    name: &[u8],
    mode: u32,
    links: Dirlinks,
) -> bool {
    match children.get_mut(name) {
        None => added.push((name.into(), Node::dir(mode))),
        Some(Node::Dir { mode: m, .. }) => *m = mode,
        // rsync -K writes through the kept symlink; a layer can only hold that when the link
        // points inside it, which needs the real tree: keep the link and merge nothing, as the
        // target is outside the layer.
        Some(Node::Symlink { .. }) if links == Dirlinks::Keep => return false,
        Some(slot) => *slot = Node::dir(mode),
    }
    true
}

/// The node of a non-directory at `path` in the source directory `dir`, or `None` for a socket.
fn leaf(path: &Path, md: &fs::Metadata, dir: usize) -> Result<Option<Node>, TreeError> {
    let ft = md.file_type();
    let mode = md.mode() & 0o7777;
    let node = if ft.is_file() {
        Node::File {
            dir,
            mode,
            size: md.len(),
            mtime: md.mtime(),
        }
    } else if ft.is_symlink() {
        Node::Symlink {
            target: link_target(path)?,
        }
    } else if ft.is_fifo() {
        Node::Fifo { mode }
    } else if ft.is_char_device() || ft.is_block_device() {
        Node::Device {
            char: ft.is_char_device(),
            mode,
            major: dev_major(md.rdev()),
            minor: dev_minor(md.rdev()),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(node))
}

/// Reads one source directory into `dest` as lndir would.
fn lndir_dir(dest: &mut Node, place: &mut Place) -> Result<Vec<Subdir>, TreeError> {
    let Node::Dir { children, .. } = dest else {
        return Ok(Vec::new());
    };
    let mut subdirs = Vec::new();
    let mut added = Vec::new();
    for (name, lmd) in sorted_children(place.path)? {
        let path = place.path.join(OsStr::from_bytes(&name));
        place.take(&name)?;
        let present = children.get_mut(&name);
        if lmd.is_dir() {
            let walk = match present {
                None => {
                    added.push((name.as_slice().into(), Node::dir(0o755)));
                    true
                }
                Some(node) => matches!(node, Node::Dir { .. }),
            };
            if walk {
                let id = id_of(&lmd);
                subdirs.push(Subdir {
                    name,
                    id,
                    real: None,
                });
            }
            continue;
        }
        if present.is_some() {
            continue;
        }
        let target = if lmd.file_type().is_symlink() {
            link_target(&path)?
        } else {
            path.into_os_string().into_vec()
        };
        added.push((name.into_boxed_slice(), Node::Symlink { target }));
    }
    children.merge(added);
    Ok(subdirs)
}

/// Why `--mkdir PATH` cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}: {problem}", String::from_utf8_lossy(.path))]
pub struct MkdirError {
    /// The path as given.
    pub path: Vec<u8>,
    /// What is in the way.
    pub problem: MkdirProblem,
}

/// What is in the way of a `--mkdir` path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MkdirProblem {
    /// A `..` component.
    #[error("'..' is not allowed")]
    ParentComponent,
    /// A parent in the tree is not a folder.
    #[error("a parent is not a directory")]
    ParentNotDir,
    /// The path is in the tree and is not a folder.
    #[error("exists and is not a directory")]
    NotDir,
}

/// `mkdir -p PATH && chmod MODE PATH` inside the tree.
pub fn mkdir(root: &mut Node, rel: &[u8], mode: u32) -> Result<(), MkdirError> {
    let err = |problem| MkdirError {
        path: rel.to_vec(),
        problem,
    };
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
            return Err(err(MkdirProblem::ParentComponent));
        }
        let Node::Dir { children, .. } = cur else {
            return Err(err(MkdirProblem::ParentNotDir));
        };
        let last = i + 1 == parts.len();
        let slot = children.get_or_insert_with(part, || Node::dir(0o755));
        if !matches!(slot, Node::Dir { .. }) {
            return Err(err(MkdirProblem::NotDir));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::{Duration, UNIX_EPOCH};

    /// A scratch folder, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("lp-tree-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn join(&self, p: &str) -> PathBuf {
            self.0.join(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A file with `data`, `mode` and an mtime of `mtime` seconds, as in a store.
    fn file(p: &Path, data: &[u8], mode: u32, mtime: u64) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        let f = fs::File::options().write(true).open(p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
            .unwrap();
    }

    /// Every entry below the root as `path kind`, with a file's mode and the data it will be
    /// read from, in name order.
    fn listing(tree: &Tree) -> Vec<String> {
        let mut out = Vec::new();
        // Children are pushed last first, so they come off the stack in name order.
        let mut stack = vec![(String::new(), &tree.root)];
        while let Some((path, node)) = stack.pop() {
            match node {
                Node::Dir { mode, children } => {
                    if !path.is_empty() {
                        out.push(format!("{path}/ {mode:o}"));
                    }
                    for (name, child) in children.iter().rev() {
                        stack.push((format!("{path}/{}", String::from_utf8_lossy(name)), child));
                    }
                }
                Node::File { dir, mode, .. } => {
                    let name = path.rsplit('/').next().unwrap().as_bytes();
                    let data = fs::read(tree.dir_path(*dir).join(OsStr::from_bytes(name)));
                    let data = String::from_utf8_lossy(&data.unwrap()).into_owned();
                    out.push(format!("{path} {mode:o} {data}"));
                }
                Node::Symlink { target } => {
                    out.push(format!("{path} -> {}", String::from_utf8_lossy(target)));
                }
                other => out.push(format!("{path} {other:?}")),
            }
        }
        out
    }

    fn rsync_all(sources: &[PathBuf], cap: u64) -> Result<Tree, TreeError> {
        let mut tree = Tree::new(cap);
        for s in sources {
            tree.rsync(s, Dirlinks::Copy)?;
        }
        Ok(tree)
    }

    /// `levels` directories, each with two symlinks to the next: 2^levels paths to the last.
    fn bomb(root: &Path, levels: usize) {
        for i in 0..=levels {
            fs::create_dir_all(root.join(format!("d{i}"))).unwrap();
        }
        for i in 0..levels {
            for link in ["x", "y"] {
                symlink(format!("../d{}", i + 1), root.join(format!("d{i}/{link}"))).unwrap();
            }
        }
        fs::write(root.join(format!("d{levels}/f")), b"f").unwrap();
    }

    #[test]
    fn a_directory_symlink_bomb_is_refused_with_a_clear_error() {
        let tmp = Scratch::new("bomb");
        bomb(&tmp.0, 16);
        let err = rsync_all(std::slice::from_ref(&tmp.0), 5000).unwrap_err();
        let TreeError::TooManyEntries {
            source_dir,
            cap,
            at,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!((source_dir, *cap), (&tmp.0, 5000));
        assert!(at.starts_with("/d0/x/x/"), "{at}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: more than 5000 entries", tmp.0.display())),
            "{msg}"
        );
    }

    #[test]
    fn the_cap_counts_entries_across_all_sources() {
        let tmp = Scratch::new("cap");
        for s in ["s1", "s2"] {
            for f in ["a", "b", "c"] {
                file(&tmp.join(&format!("{s}/{f}")), b"x", 0o644, 1);
            }
        }
        let sources = [tmp.join("s1"), tmp.join("s2")];
        assert_eq!(
            rsync_all(&sources, 6).map(|t| listing(&t).len()).unwrap(),
            3
        );
        let err = rsync_all(&sources, 5).unwrap_err();
        assert!(
            matches!(&err, TreeError::TooManyEntries { source_dir, at, .. } if *source_dir == sources[1] && at == "/c"),
            "{err}"
        );
        let mut tree = Tree::new(5);
        tree.lndir(&sources[0]).unwrap();
        let err = tree.lndir(&sources[1]).unwrap_err();
        assert!(
            matches!(err, TreeError::TooManyEntries { cap: 5, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_directory_symlink_cycle_is_an_error_naming_the_link() {
        let tmp = Scratch::new("cycle");
        fs::create_dir_all(tmp.join("src/a/b")).unwrap();
        symlink("../..", tmp.join("src/a/b/up")).unwrap();
        let err = rsync_all(&[tmp.join("src")], MAX_ENTRIES).unwrap_err();
        let TreeError::Cycle { link, at, ancestor } = &err else {
            panic!("{err}");
        };
        assert_eq!(link, &tmp.join("src/a/b/up"));
        assert_eq!(at, "/a/b/up");
        assert_eq!(ancestor, &tmp.join("src"));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: directory symlink cycle: /a/b/up in the layer leads back to {}",
                link.display(),
                ancestor.display()
            )
        );
        // From `a` the link leads above the source, and the cycle closes at `a` itself.
        let err = rsync_all(&[tmp.join("src/a")], MAX_ENTRIES).unwrap_err();
        assert!(
            matches!(&err, TreeError::Cycle { link, at, ancestor } if *link == tmp.join("src/a") && at == "/b/up/a" && *ancestor == tmp.join("src/a")),
            "{err}"
        );
        // A link to its own directory, in a later source.
        fs::create_dir_all(tmp.join("s2")).unwrap();
        symlink(".", tmp.join("s2/self")).unwrap();
        file(&tmp.join("s1/f"), b"f", 0o644, 1);
        let err = rsync_all(&[tmp.join("s1"), tmp.join("s2")], MAX_ENTRIES).unwrap_err();
        assert!(
            matches!(&err, TreeError::Cycle { link, ancestor, .. } if *link == tmp.join("s2/self") && *ancestor == tmp.join("s2")),
            "{err}"
        );
    }

    #[test]
    fn a_diamond_of_directory_symlinks_is_expanded_at_every_link() {
        let tmp = Scratch::new("diamond");
        file(&tmp.join("src/t/f"), b"data", 0o640, 1);
        symlink("t", tmp.join("src/l1")).unwrap();
        symlink(tmp.join("src/t"), tmp.join("src/l2")).unwrap();
        let tree = rsync_all(&[tmp.join("src")], MAX_ENTRIES).unwrap();
        assert_eq!(
            listing(&tree),
            [
                "/l1/ 755",
                "/l1/f 640 data",
                "/l2/ 755",
                "/l2/f 640 data",
                "/t/ 755",
                "/t/f 640 data"
            ]
        );
        // rsync -K keeps them as links.
        let mut tree = Tree::new(MAX_ENTRIES);
        tree.rsync(&tmp.join("src"), Dirlinks::Keep).unwrap();
        let want = format!("/l2 -> {}", tmp.join("src/t").display());
        assert_eq!(
            listing(&tree),
            ["/l1 -> t", want.as_str(), "/t/ 755", "/t/f 640 data"]
        );
    }

    /// A chain of `levels` directories named `d`, with a file every 100 levels.
    fn deep_tree(root: &Path, levels: usize) {
        fs::create_dir_all(root).unwrap();
        let mut p = root.to_path_buf();
        for i in 0..levels {
            p.push("d");
            fs::create_dir(&p).unwrap();
            if i % 100 == 0 {
                fs::write(p.join("f"), i.to_string()).unwrap();
            }
        }
    }

    /// Runs `f` on a thread with a small stack, where a recursion per level would overflow.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_plain_tree_2000_levels_deep_is_read() {
        let tmp = Scratch::new("deep");
        deep_tree(&tmp.join("src"), 2000);
        let src = tmp.join("src");
        let (pure, join) = on_small_stack(move || {
            let pure = listing(&rsync_all(std::slice::from_ref(&src), MAX_ENTRIES).unwrap());
            let mut tree = Tree::new(MAX_ENTRIES);
            tree.lndir(&src).unwrap();
            (pure, listing(&tree))
        });
        assert_eq!(pure.len(), 2020);
        assert_eq!(pure.iter().filter(|l| l.ends_with("/ 755")).count(), 2000);
        let deepest = format!("{}/f 644 1900", "/d".repeat(1901));
        assert!(pure.contains(&deepest));
        assert_eq!(join.len(), 2020);
    }

    #[test]
    fn a_tree_100000_levels_deep_is_dropped_without_recursion() {
        let deep = on_small_stack(|| {
            let mut root = Node::dir(0o755);
            mkdir(&mut root, "a/".repeat(100_000).as_bytes(), 0o700).unwrap();
            drop(root);
            true
        });
        assert!(deep);
    }

    #[test]
    fn a_same_size_clash_keeps_the_first_content_and_the_last_mode() {
        let tmp = Scratch::new("quick");
        file(&tmp.join("s1/bin/f"), b"AAAA", 0o644, 1);
        file(&tmp.join("s2/bin/f"), b"BBBB", 0o755, 1);
        file(&tmp.join("s3/bin/f"), b"CCCC", 0o555, 1);
        let sources = [tmp.join("s1"), tmp.join("s2"), tmp.join("s3")];
        let tree = rsync_all(&sources[..2], MAX_ENTRIES).unwrap();
        assert_eq!(listing(&tree), ["/bin/ 755", "/bin/f 755 AAAA"]);
        let tree = rsync_all(&sources, MAX_ENTRIES).unwrap();
        assert_eq!(listing(&tree), ["/bin/ 755", "/bin/f 555 AAAA"]);
    }

    #[test]
    fn a_clash_of_another_size_or_mtime_takes_the_last_content() {
        let tmp = Scratch::new("noquick");
        file(&tmp.join("s1/size"), b"AAAA", 0o644, 1);
        file(&tmp.join("s2/size"), b"BBBBB", 0o600, 1);
        file(&tmp.join("s1/time"), b"AAAA", 0o644, 1);
        file(&tmp.join("s2/time"), b"BBBB", 0o600, 2);
        // The quick check looks at whole seconds only.
        file(&tmp.join("s1/nsec"), b"AAAA", 0o644, 1);
        file(&tmp.join("s2/nsec"), b"BBBB", 0o600, 1);
        let f = fs::File::options()
            .write(true)
            .open(tmp.join("s2/nsec"))
            .unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_millis(1500))
            .unwrap();
        let tree = rsync_all(&[tmp.join("s1"), tmp.join("s2")], MAX_ENTRIES).unwrap();
        assert_eq!(
            listing(&tree),
            ["/nsec 600 AAAA", "/size 600 BBBBB", "/time 600 BBBB"]
        );
    }

    #[test]
    fn names_from_later_sources_are_merged_in_name_order() {
        let tmp = Scratch::new("order");
        for name in ["a", "c", "e"] {
            file(&tmp.join(&format!("s1/{name}")), b"1", 0o644, 1);
        }
        for name in ["0", "b", "d", "e2", "f"] {
            file(&tmp.join(&format!("s2/{name}")), b"2", 0o644, 1);
        }
        fs::create_dir_all(tmp.join("s3/c")).unwrap();
        let sources = [tmp.join("s1"), tmp.join("s2"), tmp.join("s3")];
        let tree = rsync_all(&sources, MAX_ENTRIES).unwrap();
        assert_eq!(
            listing(&tree),
            [
                "/0 644 2",
                "/a 644 1",
                "/b 644 2",
                "/c/ 755",
                "/d 644 2",
                "/e 644 1",
                "/e2 644 2",
                "/f 644 2"
            ]
        );
        let mut tree = Tree::new(MAX_ENTRIES);
        for s in &sources[..2] {
            tree.lndir(s).unwrap();
        }
        let names: Vec<String> = listing(&tree)
            .into_iter()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(names, ["/0", "/a", "/b", "/c", "/d", "/e", "/e2", "/f"]);
    }

    #[test]
    fn clashes_of_types_follow_rsync() {
        let tmp = Scratch::new("types");
        file(&tmp.join("s1/filedir"), b"AB", 0o644, 1);
        file(&tmp.join("s2/filedir/x"), b"in", 0o644, 1);
        fs::create_dir_all(tmp.join("s1/emptydir")).unwrap();
        file(&tmp.join("s2/emptydir"), b"AB", 0o644, 1);
        file(&tmp.join("s1/filelink"), b"AB", 0o644, 1);
        symlink("ab", tmp.join("s2/filelink")).unwrap();
        symlink("ab", tmp.join("s1/linkfile")).unwrap();
        file(&tmp.join("s2/linkfile"), b"AB", 0o644, 1);
        symlink("ab", tmp.join("s1/linklink")).unwrap();
        symlink("cd", tmp.join("s2/linklink")).unwrap();
        let tree = rsync_all(&[tmp.join("s1"), tmp.join("s2")], MAX_ENTRIES).unwrap();
        assert_eq!(
            listing(&tree),
            [
                "/emptydir 644 AB",
                "/filedir/ 755",
                "/filedir/x 644 in",
                "/filelink -> ab",
                "/linkfile 644 AB",
                "/linklink -> cd"
            ]
        );
        // A non-empty directory is not replaced by a file.
        file(&tmp.join("s3/filedir"), b"AB", 0o644, 1);
        let err = rsync_all(
            &[tmp.join("s1"), tmp.join("s2"), tmp.join("s3")],
            MAX_ENTRIES,
        )
        .unwrap_err();
        assert!(
            matches!(&err, TreeError::Clash { path, at } if *path == tmp.join("s3/filedir") && at == "/filedir"),
            "{err}"
        );
    }

    #[test]
    fn a_mkdir_path_that_cannot_be_made_says_why() {
        let mut root = Node::dir(0o755);
        mkdir(&mut root, b"./a/b", 0o1777).unwrap();
        let Node::Dir { children, .. } = &mut root else {
            panic!("root is a folder");
        };
        children.merge(vec![(b"f".as_slice().into(), Node::Fifo { mode: 0o644 })]);
        for (path, problem) in [
            (&b"a/../x"[..], MkdirProblem::ParentComponent),
            (b"f/x", MkdirProblem::NotDir),
            (b"f", MkdirProblem::NotDir),
        ] {
            let err = mkdir(&mut root, path, 0o755).unwrap_err();
            assert_eq!(err.problem, problem);
            assert_eq!(err.path, path);
        }
        let err = mkdir(&mut root, b"f", 0o755).unwrap_err();
        assert_eq!(err.to_string(), "f: exists and is not a directory");
        let mut not_a_folder = Node::Fifo { mode: 0o644 };
        let err = mkdir(&mut not_a_folder, b"x", 0o755).unwrap_err();
        assert_eq!(err.problem, MkdirProblem::ParentNotDir);
    }
}
