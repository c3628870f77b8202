//! merge-images on hostile inputs and faults: what it merges, GNU tar extracts without an error
//! and Python's `tarfile.extractall` extracts without writing outside its target; what it
//! refuses, it refuses with a message naming the input and the member, exit 1, and no output.
//! Also: layer digests, `tar -r` updated inputs, pipes, signals, planted temporaries, a full
//! spool, a manifest too large, and an input changed while merging.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pipeline_tests::{require, require_root, tool, TempDir};

/// A member for the tests' archives.
#[derive(Clone, Copy)]
enum M<'a> {
    /// A file with this text.
    F(&'a str, &'a str),
    /// A file with these bytes.
    B(&'a str, &'a [u8]),
    /// A folder.
    D(&'a str),
    /// A symlink to a target.
    L(&'a str, &'a str),
    /// A hard link to a member.
    H(&'a str, &'a str),
}

/// Writes `value` as zero-padded octal with a NUL in `field`.
fn octal(field: &mut [u8], value: u64) {
    let s = format!("{value:0w$o}\0", w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

/// One ustar header block.
fn header(name: &str, typeflag: u8, size: u64, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(
        &mut h[100..108],
        if typeflag == b'5' { 0o755 } else { 0o644 },
    );
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A plain tar of `members`, with no `manifest.json` added.
fn raw_tar(members: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let (name, typeflag, data, link) = match *m {
            M::F(n, d) => (n, b'0', d.as_bytes(), ""),
            M::B(n, d) => (n, b'0', d, ""),
            M::D(n) => (n, b'5', &b""[..], ""),
            M::L(n, t) => (n, b'2', &b""[..], t),
            M::H(n, t) => (n, b'1', &b""[..], t),
        };
        out.extend_from_slice(&header(name, typeflag, data.len() as u64, link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A docker-archive-shaped tar: `manifest.json` (an empty list), then `members`.
fn image(members: &[M]) -> Vec<u8> {
    let mut all = vec![M::F("manifest.json", "[]")];
    all.extend_from_slice(members);
    raw_tar(&all)
}

fn merge(dir: &Path, args: &[&str]) -> Output {
    Command::new(tool("merge-images"))
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1")
        .output()
        .expect("merge-images runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names in a folder (not recursive), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `tar -tv` of an archive without `./` and `manifest.json`: `name` or `name -> target`.
fn listing(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(archive)
        .output()
        .expect("tar runs");
    assert!(out.status.success(), "tar -t: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .filter(|n| n != "./" && n != "manifest.json")
        .collect()
}

/// Extracts with GNU tar (which must succeed) and with Python's `tarfile.extractall` (which
/// must write nothing outside its target, a folder eight levels deep in a sandbox).
fn extract_with_the_oracles(archive: &Path, scratch: &Path) {
    let gnu = scratch.join("gnu");
    fs::create_dir_all(&gnu).expect("mkdir");
    let out = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&gnu)
        .output()
        .expect("tar runs");
    assert!(out.status.success(), "GNU tar -x: {}", stderr(&out));
    let sandbox = scratch.join("py");
    let root = sandbox.join("1/2/3/4/5/6/7/8/root");
    fs::create_dir_all(&root).expect("mkdir");
    let script = "import sys, tarfile\n\
        kw = {'filter': 'fully_trusted'} if hasattr(tarfile, 'fully_trusted_filter') else {}\n\
        tarfile.open(sys.argv[1]).extractall(sys.argv[2], **kw)\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(archive)
        .arg(&root)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "extractall: {}", stderr(&out));
    // Only the chain of folders down to the target may exist outside it.
    let mut dir = sandbox.clone();
    for level in ["1", "2", "3", "4", "5", "6", "7", "8"] {
        assert_eq!(
            names(&dir),
            [level],
            "extractall wrote into {}",
            dir.display()
        );
        dir = dir.join(level);
    }
    assert_eq!(
        names(&dir),
        ["root"],
        "extractall wrote into {}",
        dir.display()
    );
}

/// What a case should give: the output's listing, or an error containing these words.
enum Expect<'a> {
    Merged(&'a [&'a str]),
    Refused(&'a str),
}

fn check_case(name: &str, inputs: &[&[M]], expect: Expect) {
    let tmp = TempDir::new(&format!("mi-hostile-{name}"));
    let mut args = vec!["out.tar".to_string()];
    for (i, members) in inputs.iter().enumerate() {
        let file = format!("in{i}.tar");
        fs::write(tmp.join(&file), image(members)).expect("write input");
        args.push(file);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = merge(&tmp.0, &args);
    match expect {
        Expect::Merged(want) => {
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            assert_eq!(listing(&tmp.join("out.tar")), want, "{name}");
            extract_with_the_oracles(&tmp.join("out.tar"), &tmp.join("x"));
        }
        Expect::Refused(words) => {
            assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.starts_with("merge-images: "), "{name}: {err}");
            assert!(err.contains(words), "{name}: {err:?} lacks {words:?}");
            let inputs: Vec<String> = (0..inputs.len()).map(|i| format!("in{i}.tar")).collect();
            assert_eq!(names(&tmp.0), inputs, "{name}: something was left behind");
        }
    }
}

#[test]
fn a_symlink_that_escapes_through_another_symlink_is_refused() {
    if !require("python3") {
        return;
    }
    use M::*;
    let d04: &[M] = &[
        F("z/pwned", "PWNED\n"),
        D("a"),
        L("a/lnk", ".."),
        L("z", "a/lnk/.."),
    ];
    check_case(
        "d04",
        &[d04],
        Expect::Refused(r#"in0.tar: symlink "z" -> "a/lnk/.." leads outside the image"#),
    );
    let chain: &[M] = &[
        D("a/b/c/d"),
        L("a/b/c/up", ".."),
        L("a/b/up", "c/up/.."),
        L("a/x", "b/up/../.."),
    ];
    check_case(
        "chain",
        &[chain],
        Expect::Refused(r#"symlink "a/x" -> "b/up/../.." leads outside"#),
    );
    let inside: &[M] = &[
        D("a/b/c/d"),
        L("a/b/c/up", ".."),
        L("a/b/up", "c/up/.."),
        L("a/x", "b/up/.."),
    ];
    check_case(
        "chain-inside",
        &[inside],
        Expect::Merged(&[
            "a/",
            "a/b/",
            "a/b/c/",
            "a/b/c/d/",
            "a/b/c/up -> ..",
            "a/b/up -> c/up/..",
            "a/x -> b/up/..",
        ]),
    );
    // Each input alone is harmless; merged, the second leads out through the first's link.
    let first: &[M] = &[L("a/lnk", "..")];
    let second: &[M] = &[L("z", "a/lnk/..")];
    check_case(
        "across",
        &[first, second],
        Expect::Refused(r#"in1.tar: symlink "z" -> "a/lnk/..""#),
    );
    check_case(
        "absolute",
        &[&[L("x", "/etc/passwd")]],
        Expect::Refused(r#"symlink "x" -> "/etc/passwd" has an absolute target"#),
    );
    check_case(
        "deep",
        &[&[L("a/b/l", "../../..")]],
        Expect::Refused("leads outside the image"),
    );
    check_case(
        "root",
        &[&[L("a/b/l", "../..")]],
        Expect::Merged(&["a/", "a/b/", "a/b/l -> ../.."]),
    );
    check_case(
        "loop",
        &[&[L("a", "b"), L("b", "a")]],
        Expect::Refused(r#"symlink "a" -> "b" goes through too many levels of symlinks"#),
    );
}

#[test]
fn a_replaced_directory_loses_its_children() {
    if !require("python3") {
        return;
    }
    use M::*;
    check_case(
        "dir-file",
        &[&[F("a/x", "1"), F("a", "2")]],
        Expect::Merged(&["a"]),
    );
    check_case(
        "dir-symlink",
        &[&[F("d/x", "1"), D("e"), L("d", "e")]],
        Expect::Merged(&["d -> e", "e/"]),
    );
    check_case(
        "dir-escaping-symlink",
        &[&[F("d/x", "1"), L("d", "../..")]],
        Expect::Refused(r#"symlink "d" -> "../..""#),
    );
    check_case(
        "symlink-dir",
        &[&[L("l", "/etc"), D("l"), F("l/x", "1")]],
        Expect::Merged(&["l/", "l/x"]),
    );
}

#[test]
fn a_member_below_a_symlink_or_a_file_is_refused_with_a_clear_message() {
    use M::*;
    // D28: one input, so "differs between sw.tar and sw.tar" would make no sense.
    let sw: &[M] = &[D("dir"), L("lnk", "dir"), F("lnk/x", "1")];
    check_case(
        "d28",
        &[sw],
        Expect::Refused(r#"in0.tar: entry "lnk/x" is below the symlink "lnk""#),
    );
    let reordered: &[M] = &[
        D("a"),
        L("a/lnk", ".."),
        L("z", "a/lnk/.."),
        F("z/pwned", "1"),
    ];
    check_case(
        "d04-reordered",
        &[reordered],
        Expect::Refused(r#"entry "z/pwned" is below the symlink "z""#),
    );
    check_case(
        "file-dir",
        &[&[F("a", "1"), F("a/x", "2")]],
        Expect::Refused(r#"entry "a/x" is below the file "a""#),
    );
    // Across inputs the first input's kind stays; a different one is a conflict.
    let first: &[M] = &[D("dir"), L("lnk", "dir")];
    check_case(
        "across",
        &[first, &[F("lnk/x", "1")]],
        Expect::Refused(r#"entry "lnk" is a symlink in in0.tar and a folder in in1.tar"#),
    );
    check_case(
        "dir-vs-link",
        &[&[F("d/x", "1")], &[L("d", "../..")]],
        Expect::Refused(r#"entry "d" is a folder in in0.tar and a symlink in in1.tar"#),
    );
}

#[test]
fn hard_links_are_copied_as_the_file_they_linked_to_when_read() {
    if !require("python3") {
        return;
    }
    use M::*;
    check_case(
        "hardlink",
        &[&[F("f", "one"), H("h", "f"), F("f", "two")]],
        Expect::Merged(&["f", "h"]),
    );
    let tmp = TempDir::new("mi-hardlink");
    fs::write(
        tmp.join("in.tar"),
        image(&[F("f", "one"), H("h", "f"), F("f", "two")]),
    )
    .expect("write");
    let out = merge(&tmp.0, &["out.tar", "in.tar"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let x = tmp.join("x");
    fs::create_dir(&x).expect("mkdir");
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(tmp.join("out.tar"))
        .arg("-C")
        .arg(&x)
        .status();
    assert!(tar.expect("tar runs").success());
    assert_eq!(fs::read(x.join("f")).expect("f"), b"two");
    assert_eq!(fs::read(x.join("h")).expect("h"), b"one");
    check_case(
        "to-removed",
        &[&[F("d/f", "1"), F("d", "2"), H("h", "d/f")]],
        Expect::Refused(r#"entry "h": hard link to a file not in the archive"#),
    );
}

const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// A one-layer docker-archive whose layer member `layer` holds `body` and whose config says
/// the layer's diff_id is `diff_id`.
fn one_layer_image(layer: &str, body: &str, diff_id: &str) -> Vec<u8> {
    let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#);
    let manifest = format!(r#"[{{"Config":"c.json","RepoTags":["x:1"],"Layers":["{layer}"]}}]"#);
    raw_tar(&[
        M::F("manifest.json", &manifest),
        M::F("c.json", &config),
        M::F(layer, body),
    ])
}

#[test]
fn a_layer_whose_bytes_do_not_match_its_diff_id_is_an_error() {
    let tmp = TempDir::new("mi-digest");
    // buildImage names a layer folder by the sha256 of its legacy JSON, not of its bytes: only
    // the config's diff_ids say what the bytes must hash to.
    let legacy = format!("{}/layer.tar", "b".repeat(64));
    let named = format!("{HELLO_SHA256}/layer.tar");
    fs::write(
        tmp.join("legacy.tar"),
        one_layer_image(&legacy, "hello", HELLO_SHA256),
    )
    .expect("write");
    fs::write(
        tmp.join("named.tar"),
        one_layer_image(&named, "hello", HELLO_SHA256),
    )
    .expect("write");
    let out = merge(&tmp.0, &["out.tar", "legacy.tar", "named.tar"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fs::remove_file(tmp.join("out.tar")).expect("rm");
    let bad = format!("{}/layer.tar", "a".repeat(64));
    fs::write(
        tmp.join("bad.tar"),
        one_layer_image(&bad, "hellO", HELLO_SHA256),
    )
    .expect("write");
    let out = merge(&tmp.0, &["out.tar", "named.tar", "bad.tar"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!("merge-images: bad.tar: entry \"{bad}\": bytes hash to sha256 ");
    assert!(err.starts_with(&want), "{err}");
    assert!(
        err.ends_with(&format!(", not {HELLO_SHA256} (its diff_id in c.json)\n")),
        "{err}"
    );
    // A gzip input whose stream is intact but whose layer is not.
    let gz = Command::new("gzip")
        .args(["-nk", "bad.tar"])
        .current_dir(&tmp.0)
        .status();
    assert!(gz.expect("gzip runs").success());
    let out = merge(&tmp.0, &["out.tar", "bad.tar.gz"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("merge-images: bad.tar.gz: entry "), "{err}");
    assert_eq!(
        names(&tmp.0),
        ["bad.tar", "bad.tar.gz", "legacy.tar", "named.tar"]
    );
}

#[test]
fn an_oci_blob_whose_bytes_do_not_match_its_name_is_an_error() {
    let tmp = TempDir::new("mi-blob");
    let good = format!("blobs/sha256/{HELLO_SHA256}");
    let bad = format!("blobs/sha256/{}", "c".repeat(64));
    fs::write(tmp.join("good.tar"), image(&[M::F(&good, "hello")])).expect("write");
    fs::write(tmp.join("bad.tar"), image(&[M::F(&bad, "hello")])).expect("write");
    assert!(merge(&tmp.0, &["out.tar", "good.tar"]).status.success());
    let out = merge(&tmp.0, &["out2.tar", "bad.tar"]);
    let want = format!(
        "merge-images: bad.tar: entry \"{bad}\": bytes hash to sha256 {HELLO_SHA256}, not {} (its name)\n",
        "c".repeat(64)
    );
    assert_eq!((out.status.code(), stderr(&out)), (Some(1), want));
}

#[test]
fn a_config_whose_diff_ids_do_not_match_its_layers_is_refused() {
    let tmp = TempDir::new("mi-config");
    // A missing config leaves nothing to check against: merged as mergeImages merges it.
    let manifest = r#"[{"Config":"gone.json","RepoTags":["x:1"],"Layers":[]}]"#;
    fs::write(
        tmp.join("a.tar"),
        raw_tar(&[M::F("manifest.json", manifest)]),
    )
    .expect("write");
    let out = merge(&tmp.0, &["out.tar", "a.tar"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fs::remove_file(tmp.join("out.tar")).expect("rm");
    let config = r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = r#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#;
    let members = [
        M::F("manifest.json", manifest),
        M::F("c.json", config),
        M::F("l/layer.tar", "x"),
    ];
    fs::write(tmp.join("b.tar"), raw_tar(&members)).expect("write");
    let out = merge(&tmp.0, &["out.tar", "b.tar"]);
    assert!(
        stderr(&out).contains("c.json lists 0 diff_ids for 1 layers"),
        "{}",
        stderr(&out)
    );
    assert_eq!(names(&tmp.0), ["a.tar", "b.tar"]);
}

#[test]
fn an_input_updated_with_tar_r_merges_with_its_copy() {
    let tmp = TempDir::new("mi-tar-r");
    let sh = "set -e; echo '[]' > manifest.json; mkdir l; echo v1 > l/layer.tar
        tar -cf a.tar manifest.json l/layer.tar; echo v2 > l/layer.tar; tar -rf a.tar l/layer.tar
        cp a.tar b.tar";
    let status = Command::new("sh")
        .args(["-c", sh])
        .current_dir(&tmp.0)
        .status();
    assert!(status.expect("sh runs").success());
    let out = merge(&tmp.0, &["out.tar", "a.tar", "b.tar"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let x = tmp.join("x");
    fs::create_dir(&x).expect("mkdir");
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(tmp.join("out.tar"))
        .arg("-C")
        .arg(&x)
        .status();
    assert!(tar.expect("tar runs").success());
    assert_eq!(fs::read(x.join("l/layer.tar")).expect("layer"), b"v2\n");
}

/// Runs merge-images with `input` written to its stdin.
fn merge_from_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(tool("merge-images"))
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // The tool may stop reading at the tar's end; a broken pipe after that is fine.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait")
}

#[test]
fn a_pipe_input_is_read_once() {
    let tmp = TempDir::new("mi-pipe");
    let bytes = image(&[
        M::F("l/layer.tar", &"x".repeat(3 << 20)),
        M::F("c.json", "{}"),
    ]);
    fs::write(tmp.join("in.tar"), &bytes).expect("write");
    let out = merge(&tmp.0, &["file.tar", "in.tar"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = fs::read(tmp.join("file.tar")).expect("read");
    let out = merge_from_stdin(&tmp.0, &["plain.tar", "/dev/stdin"], &bytes);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        fs::read(tmp.join("plain.tar")).expect("read") == want,
        "plain pipe"
    );
    let gz = Command::new("gzip")
        .args(["-nc", "in.tar"])
        .current_dir(&tmp.0)
        .output();
    let gz = gz.expect("gzip runs").stdout;
    let out = merge_from_stdin(&tmp.0, &["gz.tar", "--compress", "none", "/dev/stdin"], &gz);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        fs::read(tmp.join("gz.tar")).expect("read") == want,
        "gzip pipe"
    );
    // bash's <(...) is a pipe too.
    let sh = format!("{} subst.tar <(cat in.tar)", tool("merge-images").display());
    let out = Command::new("bash")
        .args(["-c", &sh])
        .current_dir(&tmp.0)
        .env("SOURCE_DATE_EPOCH", "1")
        .output();
    let out = out.expect("bash runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        fs::read(tmp.join("subst.tar")).expect("read") == want,
        "process substitution"
    );
}

/// An input slow to merge: 8 MiB of random bytes, written with zstd at level 19.
fn slow_input(tmp: &TempDir) -> PathBuf {
    let random = Command::new("head")
        .args(["-c", "8M", "/dev/urandom"])
        .output();
    let random = random.expect("head runs").stdout;
    let path = tmp.join("in.tar");
    fs::write(&path, image(&[M::B("big.bin", &random)])).expect("write");
    path
}

fn spawn_slow_merge(tmp: &TempDir) -> Child {
    Command::new(tool("merge-images"))
        .args([
            "--compress",
            "zstd",
            "--level",
            "19",
            "out.tar.zst",
            "in.tar",
        ])
        .current_dir(&tmp.0)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Waits until the output's temporary exists, then a little longer: the merge is writing.
fn wait_for_the_temporary(tmp: &TempDir) {
    let start = Instant::now();
    while !names(&tmp.0).iter().any(|n| n.starts_with(".dt-")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn an_interrupted_merge_leaves_nothing_behind() {
    for (signal, number) in [("INT", 2), ("TERM", 15), ("HUP", 1)] {
        let tmp = TempDir::new("mi-signal");
        slow_input(&tmp);
        let mut child = spawn_slow_merge(&tmp);
        wait_for_the_temporary(&tmp);
        let kill = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status();
        assert!(kill.expect("kill runs").success());
        let status = child.wait().expect("wait");
        assert!(
            status.signal() == Some(number) || status.code() == Some(128 + number),
            "SIG{signal}: {status}"
        );
        assert_eq!(
            names(&tmp.0),
            ["in.tar"],
            "SIG{signal} left something behind"
        );
    }
}

#[test]
fn a_plain_input_changed_while_merging_is_named() {
    let tmp = TempDir::new("mi-changed");
    let input = slow_input(&tmp);
    let child = spawn_slow_merge(&tmp);
    wait_for_the_temporary(&tmp);
    fs::File::options()
        .write(true)
        .open(&input)
        .and_then(|f| f.set_len(1 << 20))
        .expect("truncate");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("merge-images: in.tar: "), "{err}");
    assert!(err.contains("changed while merging"), "{err}");
    assert_eq!(names(&tmp.0), ["in.tar"]);
}

#[test]
fn a_planted_symlink_at_a_temporary_name_is_never_followed() {
    let tmp = TempDir::new("mi-planted");
    fs::write(tmp.join("in.tar"), image(&[M::F("a", "1")])).expect("write");
    fs::write(tmp.join("victim"), "IMPORTANT").expect("write");
    // The old predictable name, and names in the new temporaries' pattern.
    let sh = format!(
        "ln -s victim .out.tar.tmp-$$; for i in 0 1 2 3 4 5 6 7; do ln -s victim .dt-0000000$i; done
         exec {} out.tar in.tar",
        tool("merge-images").display()
    );
    let out = Command::new("bash")
        .args(["-c", &sh])
        .current_dir(&tmp.0)
        .output();
    let out = out.expect("bash runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(tmp.join("victim")).expect("victim"), b"IMPORTANT");
    let meta = fs::symlink_metadata(tmp.join("out.tar")).expect("out.tar");
    assert!(meta.file_type().is_file(), "out.tar is not a regular file");
    assert_eq!(listing(&tmp.join("out.tar")), ["a"]);
}

#[test]
fn out_naming_a_folder_is_refused_before_any_work() {
    let tmp = TempDir::new("mi-outdir");
    fs::create_dir(tmp.join("outdir")).expect("mkdir");
    // A FIFO nobody writes to: opening or reading it would block, so a prompt exit shows that
    // no input was touched.
    let fifo = Command::new("mkfifo").arg(tmp.join("in.fifo")).status();
    assert!(fifo.expect("mkfifo runs").success());
    for (out, why) in [
        ("outdir", "outdir: is a folder"),
        (
            "out.tar/",
            "out.tar/: output path does not end in a file name",
        ),
    ] {
        let mut child = Command::new(tool("merge-images"))
            .args([out, "in.fifo"])
            .current_dir(&tmp.0)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let start = Instant::now();
        while child.try_wait().expect("try_wait").is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("merge-images {out} waited for its input");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = child.wait_with_output().expect("wait");
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(stderr(&output), format!("merge-images: {why}\n"));
    }
    assert_eq!(names(&tmp.0), ["in.fifo", "outdir"]);
    assert!(names(&tmp.join("outdir")).is_empty());
}

#[test]
fn a_spool_that_cannot_be_written_is_named_not_the_input() {
    if !require_root() || !require("unshare") {
        return;
    }
    let tmp = TempDir::new("mi-spool");
    let random = Command::new("head")
        .args(["-c", "3M", "/dev/urandom"])
        .output();
    let random = random.expect("head runs").stdout;
    fs::write(tmp.join("in.tar"), image(&[M::B("big.bin", &random)])).expect("write");
    let gz = Command::new("gzip")
        .args(["-n", "in.tar"])
        .current_dir(&tmp.0)
        .status();
    assert!(gz.expect("gzip runs").success());
    fs::create_dir(tmp.join("small")).expect("mkdir");
    // No memory for the spool: it goes to a file beside OUT, which cannot hold it. (A plain
    // output, or the large member would be compressed ahead instead of spooled.)
    let sh = format!(
        "mount -t tmpfs -o size=1m tmpfs small && MERGE_IMAGES_MEMORY=0 exec {} --compress none small/o.tar in.tar.gz",
        tool("merge-images").display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &sh])
        .current_dir(&tmp.0)
        .output()
        .expect("unshare runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "merge-images: spool file beside small/o.tar (for in.tar.gz): No space left on device (os error 28)\n"
    );
}

#[test]
fn a_manifest_over_64_mib_is_refused_naming_the_member_and_the_limit() {
    let tmp = TempDir::new("mi-bigjson");
    let size = 65u64 << 20;
    let path = tmp.join("big.tar");
    fs::write(&path, header("manifest.json", b'0', size, "")).expect("write");
    // The data is a hole: the file is as long as its header says, at no cost.
    let f = fs::File::options().write(true).open(&path).expect("open");
    f.set_len(512 + size + 1024).expect("set_len");
    let out = merge(&tmp.0, &["out.tar", "big.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "merge-images: big.tar: manifest.json is larger than 64 MiB\n"
    );
}

#[test]
fn a_level_that_does_not_fit_the_compression_is_a_usage_error() {
    let tmp = TempDir::new("mi-level");
    fs::write(tmp.join("in.tar"), image(&[])).expect("write");
    for (args, why) in [
        (&["out.tar", "in.tar", "--level", "5"][..], "not compressed"),
        (
            &["out.tar", "in.tar", "--compress", "gz", "--level", "15"],
            "out of range for gz (0-9)",
        ),
    ] {
        let out = merge(&tmp.0, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
    }
    assert_eq!(names(&tmp.0), ["in.tar"]);
}
