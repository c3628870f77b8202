//! A tar sink that writes a layer to its output and hashes it on a thread of its own, so that
//! checking a layer against its `store_layer_infos` entry costs no wall time on the thread that
//! reads the files and writes the stream.
//!
//! File data is read straight into one of a few fixed buffers, written to the output from there,
//! and the buffer then goes to the hashing thread, which hands it back once hashed: no byte is
//! copied for the hash, and memory holds `BUFFERS` buffers whatever the layer's size.
//! Header blocks and padding are copied into the current buffer, so the hash sees the bytes in
//! the order the output does.

use std::io::{self, Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::{self, JoinHandle};

use dockertools_common::hash::hex;
use dockertools_common::tar::writer::{read_some, DataError, Sink};
use sha2::{Digest, Sha256};

/// Bytes per buffer.
const CHUNK: usize = 256 << 10;
/// Buffers in all (the one being filled, those waiting, the one being hashed).
const BUFFERS: usize = 6;
/// A read into less room than this sends the buffer first, so reads stay large.
const MIN_READ: usize = 64 << 10;

/// A buffer and how many of its bytes are filled.
type Filled = (Vec<u8>, usize);

/// Writes to `out` and hashes what it wrote on another thread; see [`TeeHash::finish`].
pub struct TeeHash<'o> {
    out: &'o mut dyn Write,
    cur: Vec<u8>,
    filled: usize,
    allocated: usize,
    full: Option<SyncSender<Filled>>,
    free: Receiver<Vec<u8>>,
    hasher: JoinHandle<(String, u64)>,
}

fn stopped() -> io::Error {
    io::Error::other("the layer's hashing thread stopped")
}

/// Hashes the buffers it receives, in order, and hands each back.
fn hash_all(full: Receiver<Filled>, free: Sender<Vec<u8>>) -> (String, u64) {
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    for (buf, len) in full {
        hasher.update(buf.get(..len).unwrap_or_default());
        count += len as u64;
        // The writer may be gone (its layer failed): then the buffer is just dropped.
        let _ = free.send(buf);
    }
    (hex(&hasher.finalize()), count)
}

impl<'o> TeeHash<'o> {
    /// Starts the hashing thread for one layer written to `out`.
    pub fn new(out: &'o mut dyn Write) -> Self {
        let (full_tx, full_rx) = sync_channel(BUFFERS);
        let (free_tx, free_rx) = channel();
        let hasher = thread::spawn(move || hash_all(full_rx, free_tx));
        TeeHash {
            out,
            cur: vec![0; CHUNK],
            filled: 0,
            allocated: 1,
            full: Some(full_tx),
            free: free_rx,
            hasher,
        }
    }

    /// Sends the current buffer to be hashed and takes an empty one.
    fn send(&mut self) -> io::Result<()> {
        let next = match self.free.try_recv() {
            Ok(buf) => buf,
            Err(_) if self.allocated < BUFFERS => {
                self.allocated += 1;
                vec![0; CHUNK]
            }
            Err(_) => self.free.recv().map_err(|_| stopped())?,
        };
        let buf = std::mem::replace(&mut self.cur, next);
        let full = self.full.as_ref().ok_or_else(stopped)?;
        full.send((buf, self.filled)).map_err(|_| stopped())?;
        self.filled = 0;
        Ok(())
    }

    /// Waits for the hash of everything written: the lowercase hex SHA-256 and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        if self.filled > 0 {
            self.send()?;
        }
        // Closing the channel ends the hashing thread's loop.
        self.full = None;
        self.hasher.join().map_err(|_| stopped())
    }
}

impl Sink for TeeHash<'_> {
    fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        while !bytes.is_empty() {
            let room = CHUNK - self.filled;
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            if let Some(dst) = self.cur.get_mut(self.filled..self.filled + now.len()) {
                dst.copy_from_slice(now);
            }
            self.filled += now.len();
            if self.filled == CHUNK {
                self.send()?;
            }
            bytes = later;
        }
        Ok(())
    }

    fn put_read(
        &mut self,
        src: &mut dyn Read,
        left: u64,
        _scratch: &mut Vec<u8>,
    ) -> Result<usize, DataError> {
        if CHUNK - self.filled < MIN_READ {
            self.send().map_err(DataError::Write)?;
        }
        let want = left.min((CHUNK - self.filled) as u64) as usize;
        let start = self.filled;
        let Some(room) = self.cur.get_mut(start..start + want) else {
            return Err(DataError::Write(stopped()));
        };
        let n = read_some(src, room).map_err(DataError::Read)?;
        let read = room.get(..n).unwrap_or_default();
        self.out.write_all(read).map_err(DataError::Write)?;
        self.filled += n;
        if self.filled == CHUNK {
            self.send().map_err(DataError::Write)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockertools_common::hash::sha256_hex;

    #[test]
    fn the_output_and_the_hash_see_the_same_bytes_in_order() -> io::Result<()> {
        let data: Vec<u8> = (0..(5 * CHUNK + 123)).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut tee = TeeHash::new(&mut out);
        tee.put(b"head")?;
        let mut src = &data[..];
        let mut left = data.len() as u64;
        let mut scratch = Vec::new();
        while left > 0 {
            let n = tee
                .put_read(&mut src, left, &mut scratch)
                .map_err(io::Error::other)?;
            left -= n as u64;
            tee.put(b"pad")?;
        }
        let big = vec![7u8; 3 * CHUNK];
        tee.put(&big)?;
        let (hash, count) = tee.finish()?;
        assert_eq!(count, out.len() as u64);
        assert_eq!(hash, sha256_hex(&out));
        assert!(out.starts_with(b"head"));
        assert!(out.ends_with(&big));
        Ok(())
    }

    #[test]
    fn nothing_written_hashes_as_the_empty_string() -> io::Result<()> {
        let mut out = Vec::new();
        let (hash, count) = TeeHash::new(&mut out).finish()?;
        assert_eq!((hash, count), (sha256_hex(b""), 0));
        Ok(())
    }
}
