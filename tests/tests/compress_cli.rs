//! dockertools-compress run as `pigz` and `zstd` with the flags dockerTools passes: what it
//! writes is read by the real gzip and zstd, it reads what they write, and it refuses what it
//! does not support.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use pipeline_tests::{require, tool, TempDir};

/// Runs `program args` with `input` on stdin; returns (exit code, stdout, stderr).
fn pipe(program: &std::path::Path, args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample() -> Vec<u8> {
    let mut x: u32 = 7;
    (0..3_000_000)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 3 == 0 {
                (x >> 24) as u8
            } else {
                b"layer"[(x >> 29) as usize % 5]
            }
        })
        .collect()
}

#[test]
fn as_pigz_and_zstd_it_round_trips_with_the_real_programs() {
    if !require("gzip") || !require("zstd") {
        return;
    }
    let tmp = TempDir::new("compress-cli");
    for name in ["pigz", "zstd"] {
        std::os::unix::fs::symlink(tool("dockertools-compress"), tmp.join(name)).unwrap();
    }
    let data = sample();
    let (code, gz, err) = pipe(&tmp.join("pigz"), &["-p2", "-nTR"], &data);
    assert_eq!(code, Some(0), "{err}");
    let (_, back, _) = pipe("gzip".as_ref(), &["-dc"], &gz);
    assert_eq!(back, data, "gzip -d reads pigz-mode output");
    let (code, one_thread, _) = pipe(&tmp.join("pigz"), &["-p1", "-nTR"], &data);
    assert_eq!(
        (code, &one_thread),
        (Some(0), &gz),
        "bytes independent of -p"
    );
    let (code, zst, err) = pipe(&tmp.join("zstd"), &["-T2"], &data);
    assert_eq!(code, Some(0), "{err}");
    let (_, back, _) = pipe("zstd".as_ref(), &["-dc"], &zst);
    assert_eq!(back, data, "zstd -d reads zstd-mode output");
    // And the other way: it decompresses (and verifies) what the real programs write.
    let (_, real_gz, _) = pipe("gzip".as_ref(), &["-c"], &data);
    let (code, back, err) = pipe(&tmp.join("pigz"), &["-d", "-p2"], &real_gz);
    assert_eq!((code, back == data), (Some(0), true), "{err}");
    let (_, real_zst, _) = pipe("zstd".as_ref(), &["-c", "-q"], &data);
    let (code, back, err) = pipe(&tmp.join("zstd"), &["-d", "-T2"], &real_zst);
    assert_eq!((code, back == data), (Some(0), true), "{err}");
}

#[test]
fn a_corrupt_input_a_file_operand_or_an_unknown_flag_is_refused() {
    let tmp = TempDir::new("compress-cli-bad");
    std::os::unix::fs::symlink(tool("dockertools-compress"), tmp.join("pigz")).unwrap();
    let (_, mut gz, _) = pipe(&tmp.join("pigz"), &[], &sample());
    let mid = gz.len() / 2;
    gz[mid] ^= 0x10;
    let (code, _, err) = pipe(&tmp.join("pigz"), &["-d"], &gz);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("pigz: stdin: "), "{err}");
    for args in [&["image.tar"][..], &["-z"], &["--recursive"]] {
        let (code, out, err) = pipe(&tmp.join("pigz"), args, b"x");
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            out.is_empty() && err.starts_with("pigz: "),
            "{args:?}: {err}"
        );
    }
}
