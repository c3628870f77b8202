//! Output files written atomically: a temporary name in the same folder, renamed into place
//! only after everything was written and flushed. A failure leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written under a temporary name; [`AtomicFile::commit`] renames it into place.
/// Dropped without `commit`, it deletes the temporary file.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates `<dir>/.<name>.tmp-<pid>` next to `target`.
    pub fn create(target: &Path, pid: u32) -> io::Result<Self> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")
        })?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tmp-{pid}"));
        let temp = dir.join(temp_name);
        let file = File::create(&temp)?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flushes, syncs nothing (callers are build steps), and renames into place.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(w) = self.file.take() {
            let file = w.into_inner().map_err(|e| e.into_error())?;
            drop(file);
        }
        fs::rename(&self.temp, &self.target)
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
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_cleans_up() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("atomic-test-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let target = dir.join("out.bin");
        {
            let mut f = AtomicFile::create(&target, 1)?;
            f.write_all(b"abandoned")?;
        }
        assert!(!target.exists());
        assert_eq!(fs::read_dir(&dir)?.count(), 0, "temporary file left behind");
        let mut f = AtomicFile::create(&target, 1)?;
        f.write_all(b"kept")?;
        f.commit()?;
        assert_eq!(fs::read(&target)?, b"kept");
        fs::remove_dir_all(&dir)
    }
}
