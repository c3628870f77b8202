//! Atomic outputs: files and folders written under a temporary name beside their target and
//! renamed into place only once complete, so a failure never leaves an output that looks whole.
//!
//! Every tool that writes a named output uses this module (merge-images' OUT, layer-packer's and
//! fake-nss' folders, stream-layered's `--output`). It works like this:
//! - the target is checked before any work: its parent folder must exist, a file target must not
//!   name a folder, a folder target must not exist or be an empty folder (not a symlink);
//! - the temporary is created with `O_CREAT|O_EXCL` (a file) or `mkdir` (a folder) under a short
//!   random name (`.dt-XXXXXXXX`), so a planted file or symlink is never opened or followed, and a
//!   target name of 255 bytes still works;
//! - the temporary is removed on every failure: an error, a failed rename, a drop without
//!   `commit`, and (through [`remove_all_temporaries`], which the `main` wrapper calls from its
//!   signal handler) SIGINT, SIGTERM and SIGHUP.
//!
//! The registry of live temporaries is the one piece of process-global state in the libraries:
//! a signal handler has nothing else to find them by.

use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Temporaries that exist right now, for the signal handler.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    // A poisoned lock only means a thread panicked while holding it; the list is still valid.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn forget(list: &mut Vec<PathBuf>, path: &Path) {
    list.retain(|p| p != path);
}

/// Removes every temporary file and folder that is still live, and keeps the registry locked so
/// that no new one appears; meant for a signal handler that ends the process right after.
pub fn remove_all_temporaries() {
    let list = live();
    for p in list.iter() {
        remove_temp(p);
    }
    std::mem::forget(list);
}

fn remove_temp(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => remove_dir_racing(p),
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Removes a temporary folder that other threads may still be writing into: a file created
/// between `remove_dir_all`'s listing and its final `rmdir` makes that pass fail, so try again
/// (a bounded number of times; the threads create only a few files each).
fn remove_dir_racing(p: &Path) {
    for _ in 0..1000 {
        match fs::remove_dir_all(p) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => std::thread::yield_now(),
        }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// The folder a target is written in; it must exist.
fn parent_of(target: &Path) -> io::Result<PathBuf> {
    let bytes = target.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(invalid("empty output path"));
    }
    if bytes.ends_with(b"/") || target.file_name().is_none() {
        return Err(invalid("output path does not end in a file name"));
    }
    let parent = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match fs::metadata(&parent) {
        Ok(m) if m.is_dir() => Ok(parent),
        Ok(_) => Err(invalid("parent is not a folder")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "parent folder does not exist",
        )),
        Err(e) => Err(e),
    }
}

fn builder() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(".dt-").rand_bytes(8);
    b
}

/// A file being written under a temporary name; [`AtomicFile::commit`] renames it into place.
/// Dropped without `commit`, it deletes the temporary file.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Checks `target` and creates its temporary beside it. Fails before any work when the
    /// parent folder is missing or `target` names a folder.
    pub fn create(target: &Path) -> io::Result<Self> {
        let dir = parent_of(target)?;
        if fs::metadata(target).is_ok_and(|m| m.is_dir()) {
            return Err(invalid("is a folder"));
        }
        let mut list = live();
        let mut b = builder();
        b.permissions(Permissions::from_mode(0o666));
        let (file, temp) = b.tempfile_in(&dir)?.keep().map_err(|e| e.error)?;
        list.push(temp.clone());
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flushes and renames into place; on any failure the temporary is removed.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(w) = self.file.take() else {
            return Err(io::Error::other("committed twice"));
        };
        let flushed = w.into_inner().map_err(|e| e.into_error());
        let mut list = live();
        let result = flushed.and_then(|file| {
            drop(file);
            fs::rename(&self.temp, &self.target)
        });
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        forget(&mut list, &self.temp);
        result
    }

    /// Path of the file once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("write after commit")),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(buf),
            None => Err(io::Error::other("write after commit")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let mut list = live();
            let _ = fs::remove_file(&self.temp);
            forget(&mut list, &self.temp);
        }
    }
}

/// A folder being filled under a temporary name; [`AtomicDir::commit`] renames it into place
/// (replacing an empty folder at the target). Dropped without `commit`, it is removed.
pub struct AtomicDir {
    target: PathBuf,
    temp: Option<PathBuf>,
}

impl AtomicDir {
    /// Checks `target` (missing, or an empty folder that is not a symlink; its parent exists)
    /// and creates the temporary folder beside it, before any work is done.
    pub fn create(target: &Path) -> io::Result<Self> {
        let dir = parent_of(target)?;
        check_dir_target(target)?;
        let mut list = live();
        let mut b = builder();
        b.permissions(Permissions::from_mode(0o777));
        let temp = b.tempdir_in(&dir)?.keep();
        list.push(temp.clone());
        Ok(AtomicDir {
            target: target.to_path_buf(),
            temp: Some(temp),
        })
    }

    /// Where the contents go until `commit`.
    pub fn path(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.target)
    }

    /// Path of the folder once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Creates a new file `name` inside the folder (never an existing one).
    pub fn create_file(&self, name: impl AsRef<Path>) -> io::Result<File> {
        File::options()
            .write(true)
            .create_new(true)
            .open(self.path().join(name))
    }

    /// Renames the folder into place; on any failure it is removed.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(temp) = self.temp.take() else {
            return Err(io::Error::other("committed twice"));
        };
        let mut list = live();
        // rename(2) replaces an empty folder atomically; anything else at the target fails.
        let result = check_dir_target(&self.target).and_then(|()| fs::rename(&temp, &self.target));
        if result.is_err() {
            remove_dir_racing(&temp);
        }
        forget(&mut list, &temp);
        result
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let mut list = live();
            remove_dir_racing(&temp);
            forget(&mut list, &temp);
        }
    }
}

/// A folder target must not exist, or be an empty folder (a symlink is refused).
fn check_dir_target(target: &Path) -> io::Result<()> {
    let not_empty = || {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not an empty folder",
        )
    };
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if !m.is_dir() => Err(not_empty()),
        Ok(_) => match fs::read_dir(target)?.next() {
            None => Ok(()),
            Some(_) => Err(not_empty()),
        },
    }
}

/// Whether a name is one of this module's temporaries (for tests and tidy checks).
pub fn is_temporary_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b".dt-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("atomic-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn names(dir: &Path) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()?;
        v.sort();
        Ok(v)
    }

    #[test]
    fn a_committed_file_is_renamed_and_an_abandoned_one_is_removed() -> io::Result<()> {
        let dir = scratch("file")?;
        let target = dir.join("out.bin");
        {
            let mut f = AtomicFile::create(&target)?;
            f.write_all(b"abandoned")?;
        }
        assert!(names(&dir)?.is_empty(), "temporary file left behind");
        let mut f = AtomicFile::create(&target)?;
        f.write_all(b"kept")?;
        f.commit()?;
        assert_eq!(fs::read(&target)?, b"kept");
        assert_eq!(names(&dir)?, ["out.bin"]);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() -> io::Result<()> {
        let dir = scratch("rename")?;
        let target = dir.join("out");
        let mut f = AtomicFile::create(&target)?;
        f.write_all(b"data")?;
        // A non-empty folder appears at the target while the file is written.
        fs::create_dir(&target)?;
        fs::write(target.join("x"), b"")?;
        assert!(f.commit().is_err());
        assert_eq!(names(&dir)?, ["out"]);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn file_targets_that_cannot_work_are_refused_before_any_work() -> io::Result<()> {
        let dir = scratch("refuse")?;
        assert!(AtomicFile::create(&dir).is_err(), "a folder");
        let slash = PathBuf::from(format!("{}/out.tar/", dir.display()));
        assert!(AtomicFile::create(&slash).is_err(), "a trailing slash");
        let missing = dir.join("no/such/parent/out.tar");
        let e = AtomicFile::create(&missing).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("parent folder does not exist"));
        assert!(names(&dir)?.is_empty());
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_255_byte_target_name_works() -> io::Result<()> {
        let dir = scratch("long")?;
        let target = dir.join("n".repeat(255));
        let mut f = AtomicFile::create(&target)?;
        f.write_all(b"x")?;
        f.commit()?;
        let d = AtomicDir::create(&dir.join("d".repeat(255)))?;
        d.commit()?;
        assert_eq!(names(&dir)?.len(), 2);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn planted_files_and_symlinks_are_never_opened() -> io::Result<()> {
        let dir = scratch("planted")?;
        let victim = dir.join("victim");
        fs::write(&victim, b"precious")?;
        // Whatever names an attacker plants, the temporary is a new file of its own.
        for i in 0..64 {
            std::os::unix::fs::symlink(&victim, dir.join(format!(".dt-{i:08}")))?;
        }
        let mut f = AtomicFile::create(&dir.join("out"))?;
        f.write_all(b"output")?;
        f.commit()?;
        assert_eq!(fs::read(&victim)?, b"precious");
        assert!(!fs::symlink_metadata(dir.join("out"))?
            .file_type()
            .is_symlink());
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_folder_is_renamed_into_place_or_removed() -> io::Result<()> {
        let dir = scratch("dir")?;
        let target = dir.join("out");
        {
            let d = AtomicDir::create(&target)?;
            d.create_file("a")?.write_all(b"abandoned")?;
        }
        assert!(names(&dir)?.is_empty(), "temporary folder left behind");
        fs::create_dir(&target)?;
        let d = AtomicDir::create(&target)?;
        d.create_file("a")?.write_all(b"kept")?;
        d.commit()?;
        assert_eq!(fs::read(target.join("a"))?, b"kept");
        assert_eq!(names(&dir)?, ["out"]);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn folder_targets_that_are_not_empty_folders_are_refused() -> io::Result<()> {
        let dir = scratch("dirrefuse")?;
        let full = dir.join("full");
        fs::create_dir(&full)?;
        fs::write(full.join("x"), b"")?;
        let file = dir.join("file");
        fs::write(&file, b"")?;
        let link = dir.join("link");
        fs::create_dir(dir.join("empty"))?;
        std::os::unix::fs::symlink(dir.join("empty"), &link)?;
        for t in [&full, &file, &link] {
            let e = AtomicDir::create(t).err().map(|e| e.to_string());
            assert_eq!(e.as_deref(), Some("exists and is not an empty folder"));
        }
        let e = AtomicDir::create(&dir.join("a/b"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("parent folder does not exist"));
        assert_eq!(names(&dir)?, ["empty", "file", "full", "link"]);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn live_temporaries_are_registered_until_committed_or_dropped() -> io::Result<()> {
        let dir = scratch("live")?;
        let f = AtomicFile::create(&dir.join("f"))?;
        let d = AtomicDir::create(&dir.join("d"))?;
        let registered = |p: &Path| live().iter().any(|q| q == p);
        let (ft, dt) = (f.temp.clone(), d.path().to_path_buf());
        assert!(registered(&ft) && registered(&dt));
        assert!(ft.file_name().is_some_and(is_temporary_name));
        f.commit()?;
        drop(d);
        assert!(!registered(&ft) && !registered(&dt));
        fs::remove_dir_all(&dir)
    }
}
