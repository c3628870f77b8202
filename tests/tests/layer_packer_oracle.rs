//! layer-packer against its oracles on awkward trees: `rsync -a -k` + GNU tar for mkPureLayer,
//! `lndir` + GNU tar for the customisation layer; and its reported tarsum against `tarsum`.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use pipeline_tests::{ok, require, tool, TempDir};

fn write(p: &Path, data: &[u8], mode: u32) {
    fs::write(p, data).expect("write");
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Two sources with long names, long link targets, non-UTF-8 names, hard links, a FIFO,
/// a socket, symlinks to directories, an empty folder and a clash the second source wins.
fn make_sources(tmp: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let s1 = tmp.join("src1");
    let s2 = tmp.join("src2");
    fs::create_dir_all(s1.join("a/deep/er")).expect("mkdir");
    fs::create_dir_all(s1.join("empty")).expect("mkdir");
    fs::create_dir_all(s2.join("a")).expect("mkdir");
    fs::create_dir_all(s2.join("b")).expect("mkdir");
    write(&s1.join("a/f"), b"first", 0o644);
    write(&s2.join("a/f"), b"second wins", 0o755);
    write(&s1.join("a/deep/er/x"), &vec![7u8; 70_000], 0o444);
    write(&s1.join("n".repeat(120)), b"long name", 0o644);
    write(&s1.join("e".repeat(98)), b"", 0o644);
    fs::write(
        s1.join(std::ffi::OsStr::from_encoded_bytes_unchecked_safe(
            b"bad-\xff-name",
        )),
        b"non-utf8",
    )
    .expect("write");
    write(&s1.join("h1"), b"hard linked", 0o644);
    fs::hard_link(s1.join("h1"), s1.join("h2")).expect("hard link");
    symlink("a/f", s1.join("rel-link")).expect("symlink");
    symlink("t".repeat(150), s1.join("long-target")).expect("symlink");
    symlink("a", s1.join("dir-link")).expect("symlink");
    symlink("/nonexistent/target", s1.join("dangling")).expect("symlink");
    write(&s2.join("b/c"), b"c", 0o600);
    let status = Command::new("mkfifo")
        .arg(s1.join("fifo"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let status = Command::new("python3")
        .args([
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])",
        ])
        .arg(s1.join("sock"))
        .status()
        .expect("python3");
    assert!(status.success());
    fs::set_permissions(&s1, fs::Permissions::from_mode(0o555)).expect("chmod");
    (s1, s2)
}

trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn gnu_tar(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--sort=name", "--hard-dereference", "--mtime=@315532800"])
        .args(extra)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// None when equal; else where and how the two archives first differ.
fn first_difference(a: &[u8], b: &[u8]) -> Option<String> {
    if a == b {
        return None;
    }
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let block = at / 512 * 512;
    let name = |t: &[u8]| {
        String::from_utf8_lossy(&t[block..(block + 100).min(t.len())])
            .trim_end_matches('\0')
            .to_string()
    };
    Some(format!(
        "byte {at} (offset {} in the block at {block}): ours {:?}, theirs {:?}",
        at % 512,
        name(a),
        name(b)
    ))
}

fn tarsum_of(path: &Path) -> String {
    let out = Command::new(tool("tarsum"))
        .stdin(fs::File::open(path).expect("open"))
        .output()
        .expect("tarsum");
    ok(&out, "tarsum");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pure_layer_matches_rsync_and_gnu_tar() {
    if !require("rsync") || !require("tar") || !require("python3") {
        return;
    }
    let tmp = TempDir::new("lp-pure");
    let (s1, s2) = make_sources(&tmp);
    let layer = tmp.join("layer");
    fs::create_dir(&layer).expect("mkdir");
    for s in [&s1, &s2] {
        let out = Command::new("rsync")
            .args(["-ak", "--chown=0:0"])
            .arg(format!("{}/", s.display()))
            .arg(format!("{}/", layer.display()))
            .output()
            .expect("rsync");
        ok(&out, "rsync");
    }
    let status = Command::new("chmod")
        .arg("ug+w")
        .arg(&layer)
        .status()
        .expect("chmod");
    assert!(status.success());
    let want = gnu_tar(&layer, &["--owner=0", "--group=0"]);
    let out = Command::new(tool("layer-packer"))
        .args(["pure", "--mtime", "315532800", "--out"])
        .arg(tmp.join("out"))
        .arg(&s1)
        .arg(&s2)
        .output()
        .expect("layer-packer");
    ok(&out, "layer-packer pure");
    let got = fs::read(tmp.join("out/layer.tar")).expect("layer.tar");
    assert_eq!(
        first_difference(&got, &want),
        None,
        "pure layer differs from rsync + GNU tar"
    );
    // The customisation-style outputs are absent; the tarsum it computed in the same pass is right.
    assert!(!tmp.join("out/checksum").exists());
    let out = Command::new(tool("layer-packer"))
        .args(["pure", "--mtime", "315532800", "--base-json"])
        .arg(tmp.join("base.json"))
        .arg("--out")
        .arg(tmp.join("out2"))
        .arg(&s1)
        .output()
        .expect("layer-packer");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a missing base JSON is an error"
    );
    assert!(!tmp.join("out2").exists(), "nothing written on error");
    fs::write(
        tmp.join("base.json"),
        br#"{"a": "x/y", "n": [1, 2.5, {}], "u": "\u00fc"}"#,
    )
    .expect("write");
    let out = Command::new(tool("layer-packer"))
        .args(["pure", "--mtime", "315532800", "--base-json"])
        .arg(tmp.join("base.json"))
        .arg("--out")
        .arg(tmp.join("out3"))
        .arg(&s1)
        .arg(&s2)
        .output()
        .expect("layer-packer");
    ok(&out, "layer-packer pure --base-json");
    let json = fs::read_to_string(tmp.join("out3/json")).expect("json");
    let sum = tarsum_of(&tmp.join("out3/layer.tar"));
    assert_eq!(json, format!("{{\n \"a\": \"x\\/y\",\n \"n\": [\n  1,\n  2.5,\n  {{}}\n ],\n \"u\": \"ü\",\n \"checksum\": \"{sum}\"\n}}\n"));
    assert_eq!(fs::read(tmp.join("out3/VERSION")).expect("VERSION"), b"1.0");
}

#[test]
fn customisation_layer_matches_lndir_and_gnu_tar() {
    if !require("lndir") || !require("tar") || !require("python3") {
        return;
    }
    let tmp = TempDir::new("lp-join");
    let (s1, s2) = make_sources(&tmp);
    let join = tmp.join("join");
    fs::create_dir(&join).expect("mkdir");
    fs::set_permissions(&join, fs::Permissions::from_mode(0o755)).expect("chmod");
    for s in [&s1, &s2] {
        let out = Command::new("lndir")
            .arg("-silent")
            .arg(s)
            .arg(&join)
            .output()
            .expect("lndir");
        ok(&out, "lndir");
    }
    fs::create_dir(join.join("tmp")).expect("mkdir");
    fs::set_permissions(join.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    let want = gnu_tar(&join, &["--numeric-owner"]);
    let out = Command::new(tool("layer-packer"))
        .args([
            "customisation",
            "--mtime",
            "315532800",
            "--mkdir",
            "tmp:1777",
            "--out",
        ])
        .arg(tmp.join("out"))
        .arg(&s1)
        .arg(&s2)
        .output()
        .expect("layer-packer");
    ok(&out, "layer-packer customisation");
    let got = fs::read(tmp.join("out/layer.tar")).expect("layer.tar");
    assert_eq!(
        first_difference(&got, &want),
        None,
        "customisation layer differs from lndir + GNU tar"
    );
    let checksum = fs::read_to_string(tmp.join("out/checksum")).expect("checksum");
    assert_eq!(
        checksum,
        format!(
            "{}\n",
            pipeline_tests::sha256_file(&tmp.join("out/layer.tar"))
        )
    );
}

#[test]
fn missing_source_is_an_error_and_writes_nothing() {
    let tmp = TempDir::new("lp-err");
    let out = Command::new(tool("layer-packer"))
        .args(["customisation", "--out"])
        .arg(tmp.join("out"))
        .arg(tmp.join("nope"))
        .output()
        .expect("layer-packer");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "the message names the source"
    );
    assert!(!tmp.join("out").exists());
}
