//! Bad input gets a clear error naming the file or entry, exit code 1, and no half-written output.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use pipeline_tests::{tool, TempDir};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn tarsum_errors_go_to_stderr_with_the_entry() {
    let mut child = Command::new(tool("tarsum"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&[b'x'; 1024])
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let err = stderr_of(&out);
    assert!(err.starts_with("tarsum: entry 0 at byte offset 0"), "{err}");
}

#[test]
fn stream_layered_writes_nothing_on_a_missing_path() {
    let tmp = TempDir::new("bad-sl");
    let conf = r#"{"architecture": "amd64", "config": {}, "store_dir": "/nix/store", "from_image": null,
      "store_layers": [["/nix/store/00000000000000000000000000000000-missing"]], "customisation_layer": "/nonexistent",
      "repo_tag": "x:y", "created": "1970-01-01T00:00:01Z", "mtime": "1970-01-01T00:00:01Z", "uid": 0, "gid": 0, "uname": "root", "gname": "root"}"#;
    fs::write(tmp.join("conf.json"), conf).expect("write");
    let out = Command::new(tool("stream-layered"))
        .arg(tmp.join("conf.json"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no partial image on stdout");
    assert!(
        stderr_of(&out).contains("/nonexistent/checksum") || stderr_of(&out).contains("missing"),
        "{}",
        stderr_of(&out)
    );
    // A conf that is not JSON names the conf file.
    fs::write(tmp.join("bad.json"), "{").expect("write");
    let out = Command::new(tool("stream-layered"))
        .arg(tmp.join("bad.json"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("bad.json"), "{}", stderr_of(&out));
}

#[test]
fn stream_layered_into_a_closed_pipe_exits_quietly() {
    let tmp = TempDir::new("pipe-sl");
    let store = tmp.join("store");
    fs::create_dir_all(store.join("x/d")).expect("mkdir");
    fs::write(store.join("x/d/big"), vec![1u8; 4 << 20]).expect("write");
    let cust = tmp.join("cust");
    fs::create_dir_all(&cust).expect("mkdir");
    fs::write(cust.join("layer.tar"), vec![0u8; 10240]).expect("write");
    fs::write(cust.join("checksum"), format!("{}\n", "0".repeat(64))).expect("write");
    let conf = format!(
        r#"{{"architecture": "amd64", "config": {{}}, "store_dir": "{0}", "from_image": null, "store_layers": [["{0}/x"]],
        "customisation_layer": "{1}", "repo_tag": "x:y", "created": "now", "uid": "0", "gid": "0", "uname": "", "gname": ""}}"#,
        store.display(),
        cust.display()
    );
    fs::write(tmp.join("conf.json"), conf).expect("write");
    let script = format!(
        "'{}' '{}' 2>err | head -c 100 > /dev/null; echo ${{PIPESTATUS[0]}}",
        tool("stream-layered").display(),
        tmp.join("conf.json").display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&tmp.0)
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "exit status of stream-layered | head"
    );
    assert_eq!(
        fs::read_to_string(tmp.join("err"))
            .expect("err")
            .lines()
            .filter(|l| l.starts_with("stream-layered:"))
            .count(),
        0
    );
}

#[test]
fn merge_images_rejects_unsafe_entries_and_leaves_no_output() {
    let tmp = TempDir::new("bad-mi");
    // An input with an absolute member name.
    let evil = tmp.join("evil.tar");
    let out = Command::new("tar")
        .args(["-cf"])
        .arg(&evil)
        .args(["-P", "--transform", "s,^,/abs,", "-C"])
        .arg(&tmp.0)
        .arg(".")
        .output()
        .expect("tar");
    assert!(out.status.success());
    let out = Command::new(tool("merge-images"))
        .arg(tmp.join("out.tar"))
        .arg(&evil)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("evil.tar"), "{}", stderr_of(&out));
    assert!(!tmp.join("out.tar").exists());
    // Not an image at all.
    fs::write(tmp.join("junk.tar.gz"), b"\x1f\x8b\x08\x00garbage").expect("write");
    let out = Command::new(tool("merge-images"))
        .arg(tmp.join("out.tar"))
        .arg(tmp.join("junk.tar.gz"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("junk.tar.gz"));
    assert!(!tmp.join("out.tar").exists());
    let leftovers: Vec<_> = fs::read_dir(&tmp.0)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn fake_nss_rejects_bad_lines_and_non_empty_outdir() {
    let tmp = TempDir::new("bad-nss");
    let out = Command::new(tool("fake-nss"))
        .arg(tmp.join("o"))
        .args(["--extra-passwd-line", "a:b"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("a:b"));
    assert!(!tmp.join("o").exists());
    fs::write(tmp.join("f"), b"x").expect("write");
    let out = Command::new(tool("fake-nss"))
        .arg(&tmp.0)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(tool("fake-nss")).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn popularity_sorter_names_the_cycle() {
    let tmp = TempDir::new("bad-ps");
    let g = r#"{"graph": [{"path": "/nix/store/a-x", "references": ["/nix/store/b-y"]}, {"path": "/nix/store/b-y", "references": ["/nix/store/c-z"]},
        {"path": "/nix/store/c-z", "references": ["/nix/store/b-y"]}]}"#;
    fs::write(tmp.join("g.json"), g).expect("write");
    let out = Command::new(tool("popularity-sorter"))
        .args(["closure-graph"])
        .arg(tmp.join("g.json"))
        .arg("graph")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("cycle"), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());
}

#[test]
fn layer_packer_names_the_bad_input_and_leaves_no_output() {
    let tmp = TempDir::new("bad-lp");
    let src = tmp.join("src");
    fs::create_dir_all(src.join("d")).expect("mkdir");
    fs::write(src.join("d/f"), b"data").expect("write");
    let out_dir = tmp.join("out");
    let missing = tmp.join("missing");
    let cases: [(Vec<String>, String); 2] = [
        (
            vec!["pure".into(), missing.display().to_string()],
            missing.display().to_string(),
        ),
        (
            vec![
                "pure".into(),
                "--uid".into(),
                u64::MAX.to_string(),
                src.display().to_string(),
            ],
            "does not fit".into(),
        ),
    ];
    for (args, named) in cases {
        let out = Command::new(tool("layer-packer"))
            .args(&args[..1])
            .arg("--out")
            .arg(&out_dir)
            .args(&args[1..])
            .output()
            .expect("run");
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&named), "{args:?}: {err}");
        assert!(!out_dir.exists(), "{args:?} left output behind");
        let leftovers: Vec<_> = fs::read_dir(&tmp.0)
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".dt-"))
            .collect();
        assert!(leftovers.is_empty(), "{args:?} left {leftovers:?}");
    }
    // A bad option value is a usage error: exit 2, `layer-packer: ...`, nothing written.
    let out = Command::new(tool("layer-packer"))
        .args(["pure", "--mtime", "yesterday", "--out"])
        .arg(&out_dir)
        .arg(&src)
        .output()
        .expect("run");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("layer-packer: ") && err.contains("yesterday"),
        "{err}"
    );
    assert!(!out_dir.exists());
}
