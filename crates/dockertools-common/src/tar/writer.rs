//! The entry-level tar writer: a [`Header`] and its data in, header blocks, exactly the declared
//! number of data bytes and their padding out, and the end of the archive.
//!
//! Every entry's data is checked against its header's `size`: in-memory data before anything is
//! written, a reader while it is copied (it must end exactly there), a streamed entry
//! ([`TarWriter::append_writer`]) when it is finished. A mismatch is [`DataError::SizeChanged`].

use std::io::{self, Read, Write};

use super::{block_padding, Dialect, Header, HeaderError, BLOCK, RECORD};

/// Error while writing an entry.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The header cannot be encoded in the archive's dialect.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Reading the source failed.
    #[error("read failed: {0}")]
    Read(#[source] io::Error),
    /// Writing the archive failed.
    #[error("write failed: {0}")]
    Write(#[source] io::Error),
    /// The data was not as long as the header declared.
    #[error("size changed while reading: header says {declared} bytes, found {}", found(*.declared, *.actual, *.more))]
    SizeChanged {
        /// Size written in the header.
        declared: u64,
        /// Bytes the source gave (as many as were counted when it had more).
        actual: u64,
        /// The source had more bytes than declared.
        more: bool,
    },
}

/// How many bytes a source had, as far as it is known.
fn found(declared: u64, actual: u64, more: bool) -> String {
    if more && actual <= declared {
        format!("more than {declared}")
    } else {
        actual.to_string()
    }
}

impl DataError {
    fn mismatch(declared: u64, actual: u64) -> DataError {
        DataError::SizeChanged {
            declared,
            actual,
            more: actual > declared,
        }
    }
}

/// Reads into `buf`, retrying when interrupted; `Ok(0)` only at the end of `src` (or for an
/// empty `buf`).
pub fn read_some(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Size of the copy buffer used for entry data read from a reader.
pub const COPY_BUF: usize = 256 * 1024;

/// Zeros for padding and the end of the archive.
static ZEROS: [u8; RECORD] = [0; RECORD];

/// Where a [`TarWriter`] puts the archive's bytes.
///
/// Every [`Write`] is a sink: entry data read from a reader passes through the tar writer's copy
/// buffer. A sink with buffers of its own (layer-packer's, shared without copying by its hashing
/// threads) implements [`Sink::put_read`] to read entry data straight into them.
pub trait Sink {
    /// Writes `bytes` (header blocks, padding, in-memory entry data).
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Reads the next part of an entry's data from `src`, at most `left` (> 0) bytes, and writes
    /// it; returns how many bytes that was, 0 when `src` has ended.
    /// `scratch` is the tar writer's copy buffer, for a sink that has none of its own.
    fn put_read(
        &mut self,
        src: &mut dyn Read,
        left: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<usize, DataError> {
        if scratch.is_empty() {
            scratch.resize(COPY_BUF, 0);
        }
        let want = left.min(scratch.len() as u64) as usize;
        let n = read_some(src, &mut scratch[..want]).map_err(DataError::Read)?;
        self.put(&scratch[..n]).map_err(DataError::Write)?;
        Ok(n)
    }
}

impl<W: Write + ?Sized> Sink for W {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
}

/// An entry's data.
pub enum Data<'a> {
    /// None: the header's size must be 0 (folders, links, devices, empty files).
    Empty,
    /// Bytes in memory, exactly as many as the header's size.
    Bytes(&'a [u8]),
    /// A reader that gives exactly the header's size, then ends.
    Reader(&'a mut dyn Read),
}

/// Writes a tar stream in one [`Dialect`] to a [`Sink`], keeping count of the bytes written.
pub struct TarWriter<S: Sink> {
    sink: S,
    dialect: Dialect,
    written: u64,
    /// Encoded header blocks of the entry being written.
    head: Vec<u8>,
    /// Copy buffer for data read from a reader (allocated on first use).
    scratch: Vec<u8>,
}

impl<S: Sink> TarWriter<S> {
    /// Starts an archive on `sink` whose headers are written in `dialect`.
    pub fn new(sink: S, dialect: Dialect) -> Self {
        TarWriter {
            sink,
            dialect,
            written: 0,
            head: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The sink, for what it does beside the archive (layer-packer's hashing events).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sink.put(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, len: u64) -> Result<(), DataError> {
        self.put(&ZEROS[..block_padding(len)])
            .map_err(DataError::Write)
    }

    fn header(&mut self, h: &Header) -> Result<(), DataError> {
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        let encoded = self.dialect.encode(h, &mut head);
        let written = encoded
            .map_err(DataError::Header)
            .and_then(|()| self.put(&head).map_err(DataError::Write));
        self.head = head;
        written
    }

    /// Writes one entry: `h` encoded in the archive's dialect, then exactly `h.size` bytes of
    /// `data` and their padding.
    /// Empty or in-memory data of another length is refused before anything is written;
    /// a reader that ends early or has more is refused once that shows.
    pub fn append(&mut self, h: &Header, data: Data<'_>) -> Result<(), DataError> {
        let known = match &data {
            Data::Empty => Some(0),
            Data::Bytes(bytes) => Some(bytes.len() as u64),
            Data::Reader(_) => None,
        };
        if let Some(len) = known.filter(|&len| len != h.size) {
            return Err(DataError::mismatch(h.size, len));
        }
        self.header(h)?;
        match data {
            Data::Empty => Ok(()),
            Data::Bytes(bytes) => {
                self.put(bytes).map_err(DataError::Write)?;
                self.pad(h.size)
            }
            Data::Reader(src) => self.copy(src, h.size),
        }
    }

    /// Copies exactly `size` bytes from `src`, checks that it ends there, and pads.
    fn copy(&mut self, src: &mut dyn Read, size: u64) -> Result<(), DataError> {
        let mut left = size;
        while left > 0 {
            let n = self.sink.put_read(src, left, &mut self.scratch)?;
            if n == 0 {
                return Err(DataError::mismatch(size, size - left));
            }
            self.written += n as u64;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        if read_some(src, &mut probe).map_err(DataError::Read)? != 0 {
            return Err(DataError::SizeChanged {
                declared: size,
                actual: size,
                more: true,
            });
        }
        self.pad(size)
    }

    /// Writes `h` and returns a writer for its data, which must be given exactly `h.size` bytes
    /// before [`EntryWriter::finish`] is called (a layer tar written into its member).
    pub fn append_writer(&mut self, h: &Header) -> Result<EntryWriter<'_, S>, DataError> {
        self.header(h)?;
        Ok(EntryWriter {
            tar: self,
            declared: h.size,
            count: 0,
        })
    }

    /// Ends the archive: two zero blocks, then zeros up to a whole 10240-byte record.
    /// Returns the sink (not flushed).
    pub fn finish(mut self) -> io::Result<S> {
        self.put(&ZEROS[..2 * BLOCK])?;
        let rem = (self.written % RECORD as u64) as usize;
        if rem != 0 {
            self.put(&ZEROS[..RECORD - rem])?;
        }
        Ok(self.sink)
    }
}

/// The data of one entry of a declared size, written as it comes ([`TarWriter::append_writer`]).
///
/// Bytes past the declared size are counted but not written, so the archive never holds data
/// its header does not account for; [`EntryWriter::finish`] reports them.
#[must_use = "an entry is complete only once `finish` has checked its size and padded it"]
pub struct EntryWriter<'a, S: Sink> {
    tar: &'a mut TarWriter<S>,
    declared: u64,
    count: u64,
}

impl<S: Sink> EntryWriter<'_, S> {
    /// Checks that exactly the declared number of bytes was written, then pads the entry.
    pub fn finish(self) -> Result<(), DataError> {
        if self.count != self.declared {
            return Err(DataError::mismatch(self.declared, self.count));
        }
        self.tar.pad(self.declared)
    }
}

impl<S: Sink> Write for EntryWriter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.declared.saturating_sub(self.count);
        let take = (buf.len() as u64).min(room) as usize;
        self.tar.put(&buf[..take])?;
        self.count += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::gnu::GnuOptions;
    use crate::tar::{DIR, REGULAR};

    fn file(name: &str, size: u64) -> Header {
        Header {
            name: name.as_bytes().to_vec(),
            mode: 0o644,
            size,
            mtime: 1,
            typeflag: REGULAR,
            uname: b"root".to_vec(),
            gname: b"root".to_vec(),
            ..Header::default()
        }
    }

    const GNU: Dialect = Dialect::Gnu(GnuOptions {
        numeric_owner: false,
    });

    /// A reader that gives at most `step` bytes a call and is interrupted every other call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// The declared size, the actual one and whether there was more, of a size error.
    fn sizes(err: &DataError) -> Option<(u64, u64, bool)> {
        match *err {
            DataError::SizeChanged {
                declared,
                actual,
                more,
            } => Some((declared, actual, more)),
            _ => None,
        }
    }

    fn one_entry(dialect: Dialect, h: &Header, data: Data<'_>) -> Result<Vec<u8>, DataError> {
        let mut tar = TarWriter::new(Vec::new(), dialect);
        tar.append(h, data)?;
        tar.finish().map_err(DataError::Write)
    }

    #[test]
    fn an_entry_is_its_header_its_data_and_zeros_to_the_block() {
        let h = file("a", 5);
        let mut head = Vec::new();
        GNU.encode(&h, &mut head).unwrap();
        let out = one_entry(GNU, &h, Data::Bytes(b"hello")).unwrap();
        assert_eq!(&out[..BLOCK], &head[..]);
        assert_eq!(&out[BLOCK..BLOCK + 5], b"hello");
        assert!(out[BLOCK + 5..].iter().all(|&b| b == 0));
        // One header block, one data block, two end blocks, zeros to the record.
        assert_eq!(out.len(), RECORD);
    }

    #[test]
    fn bytes_a_reader_and_a_streamed_entry_give_the_same_archive() {
        let data: Vec<u8> = (0..3 * COPY_BUF + 17).map(|i| (i % 251) as u8).collect();
        let h = file("f", data.len() as u64);
        let bytes = one_entry(Dialect::Pax, &h, Data::Bytes(&data)).unwrap();
        let mut src = Trickle {
            data: &data,
            step: 1000,
            interrupt: false,
        };
        let read = one_entry(Dialect::Pax, &h, Data::Reader(&mut src)).unwrap();
        let mut tar = TarWriter::new(Vec::new(), Dialect::Pax);
        let mut w = tar.append_writer(&h).unwrap();
        for part in data.chunks(4096) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap();
        let streamed = tar.finish().unwrap();
        assert_eq!(read, bytes);
        assert_eq!(streamed, bytes);
        assert_eq!(bytes.len() % RECORD, 0);
        assert_eq!(&bytes[BLOCK..BLOCK + data.len()], &data[..]);
    }

    #[test]
    fn wrong_in_memory_sizes_are_refused_before_anything_is_written() {
        let mut tar = TarWriter::new(Vec::new(), GNU);
        let err = tar
            .append(&file("a", 4), Data::Bytes(b"hello"))
            .unwrap_err();
        assert_eq!(sizes(&err), Some((4, 5, true)));
        assert_eq!(
            err.to_string(),
            "size changed while reading: header says 4 bytes, found 5"
        );
        let err = tar
            .append(&file("a", 6), Data::Bytes(b"hello"))
            .unwrap_err();
        assert_eq!(sizes(&err), Some((6, 5, false)));
        let err = tar.append(&file("a", 1), Data::Empty).unwrap_err();
        assert_eq!(sizes(&err), Some((1, 0, false)));
        assert_eq!(tar.written(), 0);
    }

    #[test]
    fn a_reader_that_ends_early_or_goes_on_is_refused() {
        for (declared, data, want, message) in [
            (10, &b"short"[..], (10, 5, false), "found 5"),
            (3, b"longer", (3, 3, true), "found more than 3"),
        ] {
            let mut tar = TarWriter::new(Vec::new(), GNU);
            let mut src = data;
            let err = tar
                .append(&file("a", declared), Data::Reader(&mut src))
                .unwrap_err();
            assert_eq!(sizes(&err), Some(want));
            let header_says = format!("header says {declared} bytes, {message}");
            assert_eq!(
                err.to_string(),
                format!("size changed while reading: {header_says}")
            );
        }
    }

    #[test]
    fn a_streamed_entry_of_the_wrong_size_is_refused_and_never_overflows() {
        let mut tar = TarWriter::new(Vec::new(), Dialect::Pax);
        let mut w = tar.append_writer(&file("a", 3)).unwrap();
        w.write_all(b"ab").unwrap();
        let err = w.finish().unwrap_err();
        assert_eq!(sizes(&err), Some((3, 2, false)));
        let mut tar = TarWriter::new(Vec::new(), Dialect::Pax);
        let mut w = tar.append_writer(&file("a", 3)).unwrap();
        w.write_all(b"abcdef").unwrap();
        let err = w.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "size changed while reading: header says 3 bytes, found 6"
        );
        // The header block and the declared 3 bytes, nothing past them.
        assert_eq!(tar.written(), BLOCK as u64 + 3);
    }

    #[test]
    fn the_end_of_the_archive_pads_to_a_whole_record() {
        for (entries, want) in [(0, RECORD), (18, RECORD), (19, 2 * RECORD)] {
            let mut tar = TarWriter::new(Vec::new(), GNU);
            for i in 0..entries {
                tar.append(&file(&format!("f{i}"), 0), Data::Empty).unwrap();
            }
            let out = tar.finish().unwrap();
            assert_eq!(out.len(), want, "{entries} header blocks");
            let end = entries * BLOCK;
            assert!(out[end..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn each_dialect_encodes_its_headers() {
        let long = format!("./{}", "d/".repeat(60));
        let h = Header {
            name: long.clone().into_bytes(),
            typeflag: DIR,
            mode: 0o755,
            ..file("", 0)
        };
        let gnu = one_entry(GNU, &h, Data::Empty).unwrap();
        assert_eq!(&gnu[..13], b"././@LongLink");
        assert_eq!(&gnu[156], &b'L');
        assert_eq!(&gnu[257..265], b"ustar  \0");
        assert_eq!(&gnu[265..269], b"root");
        assert_eq!(&gnu[BLOCK..BLOCK + long.len()], long.as_bytes());
        let numeric = Dialect::Gnu(GnuOptions {
            numeric_owner: true,
        });
        let gnu_numeric = one_entry(numeric, &h, Data::Empty).unwrap();
        assert_eq!(&gnu_numeric[265..269], b"\0\0\0\0");
        let pax = one_entry(Dialect::Pax, &h, Data::Empty).unwrap();
        assert_eq!(&pax[..14], b"././@PaxHeader");
        assert_eq!(&pax[156], &b'x');
        assert_eq!(&pax[257..265], b"ustar\x0000");
        // The record's length counts its own digits: 4 + 122 + 3 bytes, then "132".
        let record = format!("132 path={long}\n");
        assert_eq!(&pax[BLOCK..BLOCK + record.len()], record.as_bytes());
    }

    #[test]
    fn carried_pax_records_come_first_and_gnu_refuses_them() {
        let h = Header {
            pax_records: vec![(b"SCHILY.xattr.user.a".to_vec(), b"1".to_vec())],
            ..file("a", 0)
        };
        let pax = one_entry(Dialect::Pax, &h, Data::Empty).unwrap();
        let record = b"25 SCHILY.xattr.user.a=1\n";
        assert_eq!(&pax[BLOCK..BLOCK + record.len()], record);
        let mut tar = TarWriter::new(Vec::new(), GNU);
        let err = tar.append(&h, Data::Empty).unwrap_err();
        assert!(matches!(
            err,
            DataError::Header(HeaderError::PaxRecords { count: 1 })
        ));
        assert_eq!(tar.written(), 0);
    }

    #[test]
    fn a_number_that_does_not_fit_is_a_header_error_and_writes_nothing() {
        let h = Header {
            mtime: i64::MIN,
            ..file("a", 0)
        };
        // GNU base-256 holds 11 bytes of mtime (any i64) and 7 bytes of an id.
        assert!(one_entry(GNU, &h, Data::Empty).is_ok());
        let h = Header {
            uid: 1 << 40,
            ..file("a", 0)
        };
        let mut tar = TarWriter::new(Vec::new(), GNU);
        assert!(tar.append(&h, Data::Empty).is_ok());
        let h = Header {
            devmajor: u64::MAX,
            typeflag: crate::tar::CHAR,
            ..file("a", 0)
        };
        let err = tar.append(&h, Data::Empty).unwrap_err();
        assert!(matches!(
            err,
            DataError::Header(HeaderError::Overflow {
                field: "devmajor",
                ..
            })
        ));
        assert_eq!(tar.written(), BLOCK as u64);
    }
}
