//! Differential fuzzing of the parallel gzip writer's block joining: for any input, block size
//! (down to one byte) and libdeflate level (0-12), the output is one gzip member that flate2,
//! miniz_oxide and our own checked decoder all read back as the input; every 64th input also
//! goes through the `gzip -d` command (a process per input would slow the fuzzer tenfold;
//! the unit test `gzip_output_with_any_block_size_and_level_is_read_by_gzip_and_flate2` runs
//! the command on many inputs at once).
//!
//! Input layout: level byte, repeat byte, two block-size bytes, then the data, repeated
//! `1 + repeat % 8` times so that libdeflate also writes several deflate blocks per chunk;
//! with bit 3 of the repeat byte set, a block is cut after each repetition; with bit 4 set, a
//! run of random bytes follows each repetition (the stored segments).
#![no_main]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use dockertools_common::compress::{decompress, ParGz};
use libfuzzer_sys::fuzz_target;

static RUNS: AtomicUsize = AtomicUsize::new(0);

fuzz_target!(|raw: &[u8]| {
    let Some((&[level, repeat, b0, b1], tail)) = raw.split_first_chunk::<4>() else {
        return;
    };
    let level = i32::from(level % 13);
    let mut data = tail.repeat(1 + usize::from(repeat % 8));
    if repeat & 16 != 0 {
        // A run of random bytes (seeded by the input) after each copy, 1-24 KiB long, so that
        // whole segments are stored and stored and deflated pieces alternate.
        let mut x = (u64::from(b0) << 8 | u64::from(b1)) * 2 + 1;
        let run = 1024 * (1 + usize::from(b0 % 24));
        let mut mixed = Vec::with_capacity(data.len() + 8 * run);
        for copy in data.chunks(tail.len().max(1)) {
            mixed.extend_from_slice(copy);
            mixed.extend((0..run).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            }));
        }
        data = mixed;
    }
    // Small blocks half of the time, otherwise anything up to twice the data; at most about
    // 256 blocks, which keeps the fuzzer fast (the unit test covers 1-byte blocks on longer
    // inputs).
    let pick = usize::from(u16::from_le_bytes([b0, b1]));
    let block = if pick & 1 == 0 {
        1 + (pick >> 1) % 64
    } else {
        1 + (pick >> 1) % (2 * data.len() + 1)
    };
    let block = block.max(data.len() / 256);

    let mut gz = ParGz::with_block_size(Vec::new(), level, block).unwrap();
    if repeat & 8 == 0 {
        gz.write_all(&data).unwrap();
    } else {
        // A cut (a block boundary the caller chooses) after each repetition.
        for piece in data.chunks(tail.len().max(1)) {
            gz.write_all(piece).unwrap();
            gz.cut().unwrap();
        }
    }
    let bytes = gz.finish().unwrap();

    let mut back = Vec::new();
    let mut flate = flate2::read::GzDecoder::new(&bytes[..]);
    flate.read_to_end(&mut back).unwrap();
    assert!(
        back == data,
        "flate2 read other bytes (level {level}, block {block})"
    );
    assert!(flate.into_inner().is_empty(), "bytes after the gzip member");

    // The member as written: a 10-byte header, raw deflate, CRC32 and length.
    let body = &bytes[10..bytes.len() - 8];
    let mini = miniz_oxide::inflate::decompress_to_vec(body).unwrap();
    assert!(
        mini == data,
        "miniz_oxide read other bytes (level {level}, block {block})"
    );
    let trailer = &bytes[bytes.len() - 8..];
    assert_eq!(trailer[..4], crc32fast::hash(&data).to_le_bytes());
    assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());

    let (_, mut ours) = decompress(std::io::Cursor::new(bytes.clone())).unwrap();
    let mut back = Vec::new();
    ours.read_to_end(&mut back).unwrap();
    assert!(back == data, "our decoder read other bytes");
    ours.finish().unwrap();

    if RUNS.fetch_add(1, Ordering::Relaxed) % 64 == 0 {
        assert!(
            gzip_d(bytes) == data,
            "gzip -d read other bytes (level {level}, block {block})"
        );
    }
});

fn gzip_d(bytes: Vec<u8>) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -d failed");
    out.stdout
}
