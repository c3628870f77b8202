//! A corrupt or extended compressed input is an error naming it, exit code 1, and no output:
//! gzip CRC32 and zstd checksums are checked to the end of the stream, past the tar's end.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pipeline_tests::{require, tool, TempDir};
use sha2::{Digest, Sha256};

/// A docker-archive with one 1 MiB layer of random bytes (stored as is by gzip and zstd, so a
/// flipped bit changes the layer and nothing else), compressed by `gzip -n` and `zstd` (which
/// writes a content checksum).
fn images(tmp: &TempDir) -> (PathBuf, PathBuf) {
    let dir = tmp.join("image");
    let mut x: u64 = 17;
    let layer: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    let sha = hex(&Sha256::digest(&layer));
    fs::create_dir_all(dir.join(&sha)).unwrap();
    fs::write(dir.join(&sha).join("layer.tar"), &layer).unwrap();
    let config = format!(r#"{{"rootfs": {{"type": "layers", "diff_ids": ["sha256:{sha}"]}}}}"#);
    fs::write(dir.join("config.json"), config).unwrap();
    let manifest = format!(
        r#"[{{"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["{sha}/layer.tar"]}}]"#
    );
    fs::write(dir.join("manifest.json"), manifest).unwrap();
    let tar = tmp.join("img.tar");
    let ok = Command::new("tar")
        .args(["--format=gnu", "--sort=name", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let gz = tmp.join("img.tar.gz");
    let out = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::write(&gz, out.stdout).unwrap();
    let zst = tmp.join("img.tar.zst");
    let ok = Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(&zst)
        .arg(&tar)
        .status()
        .unwrap();
    assert!(ok.success());
    (gz, zst)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A copy of `src` named `name` with one bit flipped in the middle.
fn flipped(src: &Path, name: &str) -> PathBuf {
    let mut bytes = fs::read(src).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let dst = src.with_file_name(name);
    fs::write(&dst, bytes).unwrap();
    dst
}

fn merge(tmp: &TempDir, out: &str, input: &Path) -> Output {
    Command::new(tool("merge-images"))
        .current_dir(tmp.join(""))
        .arg(tmp.join(out))
        .arg(input)
        .output()
        .unwrap()
}

/// Asserts a run failed with exit code 1 and a message naming `input` and saying `what`.
fn failed(out: &Output, input: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("merge-images: ") || err.starts_with("stream-layered: "),
        "{err}"
    );
    assert!(err.contains(input) && err.contains(what), "{err}");
}

/// The folder holds exactly `names` (no output, no temporary or spool file left).
fn only(dir: &Path, names: &[&str]) {
    let mut have: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(have, want);
}

const INPUTS: [&str; 4] = ["image", "img.tar", "img.tar.gz", "img.tar.zst"];

#[test]
fn merge_images_refuses_a_flipped_bit_in_a_gzip_or_zstd_input() {
    if !require("gzip") || !require("zstd") {
        return;
    }
    let tmp = TempDir::new("crc-merge");
    let (gz, zst) = images(&tmp);
    // The intact inputs merge.
    for input in [&gz, &zst] {
        let out = merge(&tmp, "ok.tar", input);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_file(tmp.join("ok.tar")).unwrap();
    }
    let bad_gz = flipped(&gz, "bad.tar.gz");
    failed(
        &merge(&tmp, "out.tar", &bad_gz),
        "bad.tar.gz",
        "gzip data: crc mismatch",
    );
    let bad_zst = flipped(&zst, "bad.tar.zst");
    failed(
        &merge(&tmp, "out.tar", &bad_zst),
        "bad.tar.zst",
        "zstd data: checksum mismatch",
    );
    let mut left = INPUTS.to_vec();
    left.extend(["bad.tar.gz", "bad.tar.zst"]);
    only(&tmp.join(""), &left);
}

#[test]
fn merge_images_refuses_trailing_garbage_after_gzip_data_even_from_a_pipe() {
    if !require("gzip") || !require("zstd") {
        return;
    }
    let tmp = TempDir::new("garbage-merge");
    let (gz, _) = images(&tmp);
    let mut bytes = fs::read(&gz).unwrap();
    bytes.extend_from_slice(b"garbage\n");
    let mut child = Command::new(tool("merge-images"))
        .arg(tmp.join("out.tar"))
        .arg("/dev/stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    // merge-images may stop reading once it has failed.
    let _ = feeder.join().unwrap();
    failed(&out, "/dev/stdin", "trailing garbage after gzip data");
    only(&tmp.join(""), &INPUTS);
}

#[test]
fn stream_layered_refuses_a_flipped_bit_in_its_base_image() {
    if !require("gzip") || !require("zstd") {
        return;
    }
    let tmp = TempDir::new("crc-from-image");
    let (gz, zst) = images(&tmp);
    let cust = tmp.join("cust");
    fs::create_dir_all(&cust).unwrap();
    fs::write(cust.join("layer.tar"), vec![0u8; 10240]).unwrap();
    fs::write(cust.join("checksum"), format!("{}\n", "0".repeat(64))).unwrap();
    for (src, name, what) in [
        (&gz, "bad.tar.gz", "gzip data: crc mismatch"),
        (&zst, "bad.tar.zst", "zstd data: checksum mismatch"),
    ] {
        let bad = flipped(src, name);
        let conf = format!(
            r#"{{"architecture": "amd64", "config": {{}}, "store_dir": "/nix/store", "from_image": "{}",
            "store_layers": [], "customisation_layer": "{}", "repo_tag": "x:y", "created": "1970-01-01T00:00:01Z",
            "mtime": "1970-01-01T00:00:01Z", "uid": "0", "gid": "0", "uname": "root", "gname": "root"}}"#,
            bad.display(),
            cust.display()
        );
        fs::write(tmp.join("conf.json"), conf).unwrap();
        let out = Command::new(tool("stream-layered"))
            .arg(tmp.join("conf.json"))
            .output()
            .unwrap();
        failed(&out, name, what);
        assert!(out.stdout.is_empty(), "no image on stdout");
    }
}
