//! Memory does not grow with the size of a file: a 1 GiB file goes through layer-packer and
//! tarsum, piped as mkPureLayer pipes them, with each process capped at 400 MB of address space.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::process::Command;

use pipeline_tests::{tool, TempDir};

#[test]
fn a_file_larger_than_the_memory_cap_is_packed_and_summed() {
    let tmp = TempDir::new("flat-memory");
    let src = tmp.join("src");
    fs::create_dir(&src).unwrap();
    // Sparse: a gigabyte of zeros to read, none of it on disk.
    fs::File::create(src.join("big"))
        .and_then(|f| f.set_len(1 << 30))
        .unwrap();
    fs::write(src.join("small"), b"hi\n").unwrap();
    let out = Command::new("bash")
        .args([
            "-c",
            "set -o pipefail; ulimit -v 400000 && \"$1\" pure --out - \"$3\" | \"$2\"",
            "_",
        ])
        .arg(tool("layer-packer"))
        .arg(tool("tarsum"))
        .arg(&src)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let sum = String::from_utf8_lossy(&out.stdout);
    assert!(sum.starts_with("tarsum.v1+sha256:"), "{sum}");
    assert_eq!(sum.trim_end().len(), "tarsum.v1+sha256:".len() + 64);
}
