//! Fuzzes merge-images' input reader: an arbitrary input file (plain, gzip or zstd, chosen by
//! its bytes) is merged or refused with an error, never a panic, and a refused merge leaves
//! no output behind.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = PathBuf::from(std::env::var("FUZZ_TMP").unwrap_or_else(|_| "/dev/shm".into()))
        .join(format!("merge-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let input = dir.join("in.tar");
    let out = dir.join("out.tar");
    let _ = std::fs::remove_file(&out);
    if std::fs::write(&input, data).is_err() {
        return;
    }
    let opts = merge_images::Options { mtime: 1, compress: None, level: Some(1), memory: merge_images::DEFAULT_MEMORY };
    let result = merge_images::merge(&out, &[input], &opts);
    if result.is_err() {
        assert!(!out.exists(), "a failed merge left {}", out.display());
    }
});
