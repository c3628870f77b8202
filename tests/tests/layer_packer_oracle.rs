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

/// `rsync -ak --chown=0:0` of each source into a fresh layer, `chmod ug+w`, then GNU tar: the
/// pure layer mkPureLayer builds.
fn rsync_layer(tmp: &TempDir, sources: &[&Path]) -> Vec<u8> {
    let layer = tmp.join("rsync-layer");
    fs::create_dir(&layer).expect("mkdir");
    for s in sources {
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
    gnu_tar(&layer, &["--owner=0", "--group=0"])
}

/// `layer-packer pure` of `sources` into `tmp/name`; its layer.tar.
fn pure_layer(tmp: &TempDir, name: &str, sources: &[&Path]) -> Vec<u8> {
    let out = Command::new(tool("layer-packer"))
        .args(["pure", "--mtime", "315532800", "--out"])
        .arg(tmp.join(name))
        .args(sources)
        .output()
        .expect("layer-packer");
    ok(&out, "layer-packer pure");
    fs::read(tmp.join(name).join("layer.tar")).expect("layer.tar")
}

/// Sets the mtime of everything in `dir` to 1, as in the Nix store.
fn store_mtimes(dir: &Path) {
    let status = Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d", "@1", "{}", "+"])
        .status()
        .expect("find");
    assert!(status.success());
}

#[test]
fn a_same_size_clash_keeps_the_first_content_and_the_last_mode() {
    if !require("rsync") || !require("tar") {
        return;
    }
    let tmp = TempDir::new("lp-quick");
    let [s1, s2, s3] = ["s1", "s2", "s3"].map(|s| tmp.join(s));
    for (s, data, mode) in [
        (&s1, "AAAA", 0o644),
        (&s2, "BBBB", 0o755),
        (&s3, "CCCC", 0o555),
    ] {
        fs::create_dir_all(s.join("bin")).expect("mkdir");
        write(&s.join("bin/hi"), data.as_bytes(), mode);
    }
    // Another size: the later content.
    fs::create_dir_all(s1.join("lib")).expect("mkdir");
    fs::create_dir_all(s2.join("lib")).expect("mkdir");
    write(&s1.join("lib/x"), b"12", 0o644);
    write(&s2.join("lib/x"), b"123", 0o600);
    // A same-size clash below a directory symlink that -k copies as a directory.
    fs::create_dir_all(s1.join("share/man")).expect("mkdir");
    write(&s1.join("share/man/page"), b"first page", 0o644);
    fs::create_dir_all(s2.join("real-share/man")).expect("mkdir");
    write(&s2.join("real-share/man/page"), b"later page", 0o444);
    symlink("real-share", s2.join("share")).expect("symlink");
    // Type clashes, and a directory's mode.
    write(&s1.join("file-link"), b"ab", 0o644);
    symlink("ab", s2.join("file-link")).expect("symlink");
    symlink("ab", s1.join("link-file")).expect("symlink");
    write(&s2.join("link-file"), b"ab", 0o644);
    symlink("ab", s1.join("link-link")).expect("symlink");
    symlink("cd", s2.join("link-link")).expect("symlink");
    write(&s1.join("file-dir"), b"ab", 0o644);
    fs::create_dir_all(s2.join("file-dir")).expect("mkdir");
    write(&s2.join("file-dir/x"), b"x", 0o644);
    fs::create_dir_all(s1.join("emptydir-file")).expect("mkdir");
    write(&s2.join("emptydir-file"), b"ab", 0o640);
    fs::create_dir_all(s1.join("etc")).expect("mkdir");
    fs::create_dir_all(s3.join("etc")).expect("mkdir");
    fs::set_permissions(s3.join("etc"), fs::Permissions::from_mode(0o700)).expect("chmod");
    for s in [&s1, &s2, &s3] {
        store_mtimes(s);
    }
    let want = rsync_layer(&tmp, &[&s1, &s2, &s3]);
    let hi = fs::read(tmp.join("rsync-layer/bin/hi")).expect("bin/hi");
    assert_eq!(hi, b"AAAA", "the oracle keeps the first content");
    let got = pure_layer(&tmp, "out", &[&s1, &s2, &s3]);
    assert_eq!(
        first_difference(&got, &want),
        None,
        "pure layer differs from rsync + GNU tar"
    );
}

#[test]
fn a_directory_symlink_bomb_is_refused_with_a_clear_error() {
    // 32 links to 32 links to a folder of 2048 files: 2^21 entries once expanded, each read
    // cheaply, so the cap (2^20) is what stops it.
    let tmp = TempDir::new("lp-bomb");
    let src = tmp.join("bomb");
    for d in ["d0", "d1", "d2"] {
        fs::create_dir_all(src.join(d)).expect("mkdir");
    }
    for i in 0..32 {
        symlink("../d1", src.join(format!("d0/l{i}"))).expect("symlink");
        symlink("../d2", src.join(format!("d1/l{i}"))).expect("symlink");
    }
    for i in 0..2048 {
        fs::write(src.join(format!("d2/f{i}")), b"").expect("write");
    }
    let out = Command::new(tool("layer-packer"))
        .args(["pure", "--out"])
        .arg(tmp.join("out"))
        .arg(src.join("d0"))
        .output()
        .expect("layer-packer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "layer-packer: {}: more than 1048576 entries in the layer",
        src.join("d0").display()
    );
    assert!(stderr.starts_with(&want), "{stderr}");
    assert!(!tmp.join("out").exists(), "nothing written");
}

#[test]
fn a_directory_symlink_cycle_is_an_error_naming_the_link() {
    let tmp = TempDir::new("lp-cycle");
    let src = tmp.join("src");
    fs::create_dir_all(src.join("a")).expect("mkdir");
    symlink("..", src.join("a/up")).expect("symlink");
    if require("rsync") {
        // rsync -k follows the loop until the kernel's symlink limit and fails.
        let layer = tmp.join("rsync-layer");
        let out = Command::new("rsync")
            .args(["-ak"])
            .arg(format!("{}/", src.display()))
            .arg(format!("{}/", layer.display()))
            .output()
            .expect("rsync");
        assert!(!out.status.success(), "rsync copies a symlink loop");
    }
    let out = Command::new(tool("layer-packer"))
        .args(["pure", "--out"])
        .arg(tmp.join("out"))
        .arg(&src)
        .output()
        .expect("layer-packer");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "layer-packer: {}: directory symlink cycle: /a/up in the layer leads back to {}\n",
            src.join("a/up").display(),
            src.display()
        )
    );
    assert!(!tmp.join("out").exists(), "nothing written");
}

#[test]
fn a_diamond_of_directory_symlinks_is_expanded_at_every_link_as_rsync_does() {
    if !require("rsync") || !require("tar") {
        return;
    }
    let tmp = TempDir::new("lp-diamond");
    let src = tmp.join("src");
    fs::create_dir_all(src.join("t/sub")).expect("mkdir");
    write(&src.join("t/sub/f"), b"data", 0o644);
    symlink("t", src.join("l1")).expect("symlink");
    symlink(src.join("t"), src.join("l2")).expect("symlink");
    symlink("../l1", src.join("t/sub/back")).expect("symlink");
    let want = rsync_layer(&tmp, &[&src]);
    let got = pure_layer(&tmp, "out", &[&src]);
    assert_eq!(
        first_difference(&got, &want),
        None,
        "pure layer differs from rsync + GNU tar"
    );
}

#[test]
fn a_plain_tree_2000_levels_deep_is_packed() {
    if !require("tar") {
        return;
    }
    let tmp = TempDir::new("lp-deep");
    let src = tmp.join("src");
    let mut p = src.clone();
    fs::create_dir(&p).expect("mkdir");
    for i in 0..2000 {
        p.push("d");
        fs::create_dir(&p).expect("mkdir");
        if i % 250 == 0 {
            write(&p.join("f"), i.to_string().as_bytes(), 0o644);
        }
    }
    // rsync cannot copy a tree this deep; GNU tar packs the source itself (its root made
    // writable as mkPureLayer's `chmod ug+w` does).
    fs::set_permissions(&src, fs::Permissions::from_mode(0o775)).expect("chmod");
    let want = gnu_tar(&src, &["--owner=0", "--group=0"]);
    let got = pure_layer(&tmp, "out", &[&src]);
    assert_eq!(
        first_difference(&got, &want),
        None,
        "pure layer differs from GNU tar"
    );
    let out = Command::new(tool("layer-packer"))
        .args(["customisation", "--out"])
        .arg(tmp.join("join"))
        .arg(&src)
        .output()
        .expect("layer-packer");
    ok(&out, "layer-packer customisation");
    let out = Command::new("tar")
        .arg("-tf")
        .arg(tmp.join("join/layer.tar"))
        .output()
        .expect("tar");
    ok(&out, "tar -t");
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 2009);
}

#[test]
fn relative_sources_give_absolute_links() {
    let tmp = TempDir::new("lp-relative");
    fs::create_dir_all(tmp.join("pkg/bin")).expect("mkdir");
    write(&tmp.join("pkg/bin/hi"), b"hi", 0o755);
    let run = |mode: &str, out: &str, source: &Path| {
        let o = Command::new(tool("layer-packer"))
            .current_dir(&tmp.0)
            .args([mode, "--out", out])
            .arg(source)
            .output()
            .expect("layer-packer");
        ok(&o, "layer-packer");
        fs::read(tmp.join(out).join("layer.tar")).expect("layer.tar")
    };
    for mode in ["customisation", "pure"] {
        let relative = run(mode, &format!("{mode}-rel"), Path::new("./pkg"));
        let absolute = run(mode, &format!("{mode}-abs"), &tmp.join("pkg"));
        assert_eq!(
            first_difference(&relative, &absolute),
            None,
            "{mode}: a relative source gives another layer"
        );
    }
    let join = fs::read(tmp.join("customisation-rel/layer.tar")).expect("layer.tar");
    let target = tmp.join("pkg/bin/hi");
    let target = target.as_os_str().as_encoded_bytes();
    assert!(
        join.windows(target.len()).any(|w| w == target),
        "the link points at the absolute source"
    );
}
