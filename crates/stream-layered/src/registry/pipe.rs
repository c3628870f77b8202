//! A bounded pipe between the thread that writes a blob (layer tar, compressor, digests) and the
//! HTTP request that sends it: the request body reads what the writer produced, chunk by chunk,
//! so a layer is compressed and uploaded at once and memory holds a few chunks, never a blob.
//! The reader hands each chunk it has read back to the writer, which fills it again: a fresh
//! chunk for every 256 KiB would cost a page fault per 4 KiB written.
//!
//! The writer must call [`PipeWriter::finish`]; a writer dropped without it (its layer failed)
//! makes the reader fail, so the request is cut short instead of sending a truncated blob as if
//! it were whole. A reader dropped early (the request failed) makes the writer fail.

use std::io::{self, Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

/// Bytes sent at once.
const CHUNK: usize = 256 << 10;
/// Chunks in flight.
const DEPTH: usize = 8;

enum Msg {
    Data(Vec<u8>),
    End,
}

/// The writing end.
pub struct PipeWriter {
    tx: SyncSender<Msg>,
    buf: Vec<u8>,
    /// Chunks the reader is done with.
    free: Receiver<Vec<u8>>,
}

/// The reading end.
pub struct PipeReader {
    rx: Receiver<Msg>,
    back: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    ended: bool,
}

/// A new pipe.
pub fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(DEPTH);
    let (back, free) = channel();
    (
        PipeWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            free,
        },
        PipeReader {
            rx,
            back,
            cur: Vec::new(),
            pos: 0,
            ended: false,
        },
    )
}

fn stopped() -> io::Error {
    // Not `BrokenPipe`: the tools treat that as a closed stdout and exit 0.
    io::Error::other("the upload stopped")
}

impl PipeWriter {
    fn send(&mut self) -> io::Result<()> {
        let mut next = self.free.try_recv().unwrap_or_default();
        next.clear();
        next.reserve(CHUNK);
        let chunk = std::mem::replace(&mut self.buf, next);
        self.tx.send(Msg::Data(chunk)).map_err(|_| stopped())
    }

    /// Sends what is left and the end of the stream.
    pub fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx.send(Msg::End).map_err(|_| stopped())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(d)) => {
                    let done = std::mem::replace(&mut self.cur, d);
                    // The writer may have finished and gone: the chunk is then just dropped.
                    let _ = self.back.send(done);
                    self.pos = 0;
                }
                Ok(Msg::End) => self.ended = true,
                Err(_) => return Err(io::Error::other("the blob's writer failed")),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pass_in_order_and_the_end_is_an_eof() -> io::Result<()> {
        let (mut w, mut r) = pipe();
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let copy = data.clone();
        let t = std::thread::spawn(move || -> io::Result<()> {
            w.write_all(&copy)?;
            w.finish()
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got)?;
        t.join()
            .map_err(|_| io::Error::other("writer panicked"))??;
        assert_eq!(got, data);
        Ok(())
    }

    #[test]
    fn a_writer_dropped_without_finish_fails_the_reader() {
        let (mut w, mut r) = pipe();
        let _ = w.write_all(b"partial");
        drop(w);
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
    }

    #[test]
    fn a_dropped_reader_fails_the_writer_without_a_broken_pipe() {
        let (mut w, r) = pipe();
        drop(r);
        let e = w.write_all(&vec![0u8; 2 * CHUNK]);
        assert!(
            matches!(e, Err(ref e) if e.kind() != io::ErrorKind::BrokenPipe),
            "{e:?}"
        );
    }
}
