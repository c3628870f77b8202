//! Framing of a tar stream: header blocks, exact-length data, padding, and the end of the archive.

use std::io::{self, Read, Write};

use super::{block_padding, BLOCK, RECORD};

/// Error while copying an entry's data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading the source failed.
    #[error("read failed: {0}")]
    Read(#[source] io::Error),
    /// Writing the archive failed.
    #[error("write failed: {0}")]
    Write(#[source] io::Error),
    /// The source gave a different number of bytes than the header declared.
    #[error("size changed while reading: header says {declared} bytes, found {}", if *.more { format!("more than {declared}") } else { actual.to_string() })]
    SizeChanged {
        /// Size written in the header.
        declared: u64,
        /// Bytes actually read (when fewer).
        actual: u64,
        /// The source had more bytes than declared.
        more: bool,
    },
}

impl DataError {
    /// True when the failure is a closed downstream pipe.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, DataError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Reads the next part of an entry's data into `buf` (not empty), `left` of the `declared`
/// bytes still to come; ending early is [`DataError::SizeChanged`]. Returns the bytes read.
pub fn read_data(
    src: &mut dyn Read,
    buf: &mut [u8],
    declared: u64,
    left: u64,
) -> Result<usize, DataError> {
    loop {
        return match src.read(buf) {
            Ok(0) => Err(DataError::SizeChanged {
                declared,
                actual: declared - left,
                more: false,
            }),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(DataError::Read(e)),
        };
    }
}

/// Checks that `src` has no data beyond the `declared` bytes already read from it.
pub fn check_data_end(src: &mut dyn Read, declared: u64) -> Result<(), DataError> {
    let mut probe = [0u8; 1];
    loop {
        return match src.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(DataError::SizeChanged {
                declared,
                actual: declared,
                more: true,
            }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(DataError::Read(e)),
        };
    }
}

/// Size of the copy buffer used for entry data.
pub const COPY_BUF: usize = 256 * 1024;

/// Writes a tar stream to `W`, keeping count of the bytes written.
pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            written: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes raw, already block-aligned bytes (encoded headers).
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes an in-memory entry body and its padding.
    pub fn data_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.raw(bytes)?;
        self.pad(bytes.len() as u64)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let pad = block_padding(len);
        if pad > 0 {
            self.raw(&[0u8; BLOCK][..pad])?;
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of entry data from `src`, then the padding.
    /// Fails when `src` ends early or has more bytes than `size`.
    pub fn data_from(&mut self, src: &mut dyn Read, size: u64) -> Result<(), DataError> {
        if self.buf.len() < COPY_BUF {
            self.buf.resize(COPY_BUF, 0);
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = read_data(src, &mut self.buf[..want], size, left)?;
            self.out
                .write_all(&self.buf[..n])
                .map_err(DataError::Write)?;
            self.written += n as u64;
            left -= n as u64;
        }
        check_data_end(src, size)?;
        self.pad(size).map_err(DataError::Write)
    }

    /// Ends the archive: two zero blocks, then zeros up to a whole 10240-byte record.
    /// Returns the inner writer (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.raw(&[0u8; 2 * BLOCK])?;
        let rem = (self.written % RECORD as u64) as usize;
        if rem != 0 {
            let zeros = vec![0u8; RECORD - rem];
            self.raw(&zeros)?;
        }
        Ok(self.out)
    }
}

/// Writes one entry's data of a declared size through [`TarWriter::entry_writer`].
pub struct EntryWriter<'a, W: Write> {
    tar: &'a mut TarWriter<W>,
    count: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer for the current entry's data; call [`EntryWriter::finish`] with the declared size.
    pub fn entry_writer(&mut self) -> EntryWriter<'_, W> {
        EntryWriter {
            tar: self,
            count: 0,
        }
    }
}

impl<W: Write> EntryWriter<'_, W> {
    /// Checks that exactly `declared` bytes were written, then pads the entry.
    pub fn finish(self, declared: u64) -> Result<(), DataError> {
        if self.count != declared {
            return Err(DataError::SizeChanged {
                declared,
                actual: self.count,
                more: self.count > declared,
            });
        }
        self.tar.pad(declared).map_err(DataError::Write)
    }
}

impl<W: Write> Write for EntryWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tar.out.write(buf)?;
        self.tar.written += n as u64;
        self.count += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tar.out.write_all(buf)?;
        self.tar.written += buf.len() as u64;
        self.count += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tar.out.flush()
    }
}
