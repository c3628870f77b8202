//! `stream-layered --layer-info N` and the conf's `store_layer_infos`: the infos name exactly the
//! tars the stream writes, an image streamed with them is byte for byte the image streamed
//! without, and a layer that no longer matches its info stops the stream before
//! `manifest.json`, naming the layer.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pipeline_tests::{tool, write_conf, TempDir};
use serde_json::{json, Value};

/// A store of three paths (files, a folder, a symlink, an empty file), a customisation layer,
/// and a conf writer.
struct Store {
    tmp: TempDir,
    dir: PathBuf,
}

fn stream_layered(args: &[&str]) -> Output {
    Command::new(tool("stream-layered"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stream-layered")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Store {
    fn new(tag: &str) -> Store {
        let tmp = TempDir::new(tag);
        let dir = tmp.join("store");
        for (p, body) in [
            ("aaa-one/bin/one", "#!/bin/sh\necho one\n"),
            ("aaa-one/share/empty", ""),
            ("bbb-two/lib/data", "two two two\n"),
            ("ccc-three", "a store path that is a file\n"),
        ] {
            let path = dir.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, body).unwrap();
        }
        symlink("../lib/data", dir.join("bbb-two/lib/link")).unwrap();
        let cust = dir.join("custom");
        fs::create_dir_all(&cust).unwrap();
        let layer = vec![0u8; 10240];
        let sum = pipeline_tests::sha256_file(&{
            fs::write(cust.join("layer.tar"), &layer).unwrap();
            cust.join("layer.tar")
        });
        fs::write(cust.join("checksum"), format!("{sum}\n")).unwrap();
        Store { tmp, dir }
    }

    fn layers(&self) -> Value {
        let s = self.dir.display();
        json!([
            [format!("{s}/aaa-one")],
            [format!("{s}/bbb-two"), format!("{s}/ccc-three")],
            [format!("{s}/aaa-one/bin")]
        ])
    }

    /// Writes a conf (with `extra` keys merged in) and returns its path.
    fn conf(&self, name: &str, extra: Value) -> PathBuf {
        let conf = json!({
            "architecture": "amd64", "config": {"Cmd": ["/bin/one"]}, "os": "linux",
            "store_dir": self.dir.display().to_string(), "from_image": null,
            "store_layers": self.layers(),
            "customisation_layer": format!("{}/custom", self.dir.display()), "repo_tag": "t:1",
            "created": "1970-01-01T00:00:01+00:00", "mtime": "1980-01-01T00:00:00+00:00",
            "uid": "1000", "gid": "100", "uname": "alice", "gname": "users"
        });
        write_conf(self.tmp.join(name), conf, extra)
    }

    /// `--layer-info N` of `conf`, as printed.
    fn info(&self, conf: &Path, n: usize) -> String {
        let out = stream_layered(&[conf.to_str().unwrap(), "--layer-info", &n.to_string()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Every store layer's info, parsed.
    fn infos(&self, conf: &Path) -> Vec<Value> {
        (1..=3)
            .map(|n| serde_json::from_str(&self.info(conf, n)).unwrap())
            .collect()
    }
}

fn stream(args: &[&str]) -> Vec<u8> {
    let out = stream_layered(args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out.stdout
}

/// `manifest.json` of a docker-archive.
fn manifest(image: &[u8], tmp: &TempDir) -> Value {
    let path = tmp.join("image.tar");
    fs::write(&path, image).unwrap();
    let out = Command::new("tar")
        .args(["-xOf"])
        .arg(&path)
        .arg("manifest.json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn infos_name_the_streamed_tars_and_leave_the_bytes_unchanged() {
    let s = Store::new("info-same");
    let conf = s.conf("conf.json", json!({}));
    let infos = s.infos(&conf);
    assert!(s.info(&conf, 2).starts_with("{\"diff_id\": \"sha256:"));
    assert!(s.info(&conf, 2).ends_with("}\n"));
    let plain = stream(&[conf.to_str().unwrap()]);
    let members: Vec<String> = manifest(&plain, &s.tmp)[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    for (info, member) in infos.iter().zip(&members) {
        let hex = info["diff_id"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        assert_eq!(member, &format!("{hex}/layer.tar"));
    }
    let fed = s.conf("fed.json", json!({ "store_layer_infos": infos }));
    assert_eq!(
        stream(&[fed.to_str().unwrap()]),
        plain,
        "same docker-archive"
    );
    let oci = |c: &Path| stream(&[c.to_str().unwrap(), "--format", "oci-archive"]);
    assert_eq!(oci(&fed), oci(&conf), "same oci-archive");
}

#[test]
fn a_conf_of_only_the_layer_keys_gives_the_same_info() {
    let s = Store::new("info-small");
    let full = s.conf("conf.json", json!({}));
    let small = s.tmp.join("small.json");
    let keys = json!({
        "store_dir": s.dir.display().to_string(), "store_layers": [s.layers()[1].clone()],
        "mtime": "1980-01-01T00:00:00+00:00", "created": "now",
        "uid": 1000, "gid": 100, "uname": "alice", "gname": "users"
    });
    fs::write(&small, keys.to_string()).unwrap();
    assert_eq!(s.info(&small, 1), s.info(&full, 2));
    // The owner and the mtime are part of the tar, so part of the info.
    let other = s.conf("other.json", json!({"uid": "0"}));
    assert_ne!(s.info(&other, 2), s.info(&full, 2));
}

#[test]
fn a_layer_that_changed_since_its_info_stops_the_stream_naming_it() {
    let s = Store::new("info-stale");
    let conf = s.conf("conf.json", json!({}));
    let infos = s.infos(&conf);
    let fed = s.conf("fed.json", json!({ "store_layer_infos": infos }));
    // Same size, other bytes: only the digest can tell.
    fs::write(s.dir.join("bbb-two/lib/data"), "two two TWO\n").unwrap();
    let out = stream_layered(&[fed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("stream-layered: layer 2 does not match its store_layer_infos entry"),
        "{err}"
    );
    assert!(err.contains("its blob had sha256"), "{err}");
    // The consumer sees layer 1 and the whole of layer 2's member, then the stream stops:
    // no manifest.json, so no client loads it.
    assert!(!out.stdout.is_empty());
    assert!(!out.stdout.windows(13).any(|w| w == b"manifest.json"));
    // A file that grew past the tar's last record: refused at the member's end, never written past it.
    fs::write(s.dir.join("aaa-one/bin/one"), "#".repeat(30_000)).unwrap();
    let out = stream_layered(&[fed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("layer 1 does not match its store_layer_infos entry"),
        "{err}"
    );
    // The excess is counted, not written: the message gives the tar's real length.
    assert!(
        err.contains("size changed while reading: header says 10240 bytes, found 40960"),
        "{err}"
    );
}

#[test]
fn bad_infos_and_layer_numbers_are_refused() {
    let s = Store::new("info-bad");
    let conf = s.conf("conf.json", json!({}));
    for n in ["0", "4"] {
        let out = stream_layered(&[conf.to_str().unwrap(), "--layer-info", n]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("the conf has 3 store layers"),
            "{}",
            text(&out.stderr)
        );
    }
    let good = s.infos(&conf);
    let bad_digest = json!([good[0], {"diff_id": "sha256:XYZ", "size": 1}, good[2]]);
    for (infos, needle) in [
        (json!([good[0]]), "1 infos for 3 store layers"),
        (bad_digest, "store layer 2: diff_id must be"),
        (
            json!([good[0], good[1], {"diff_id": good[2]["diff_id"], "size": -1}]),
            "store layer 3: size must be",
        ),
        (json!("x"), "expected a list"),
    ] {
        let fed = s.conf("bad.json", json!({ "store_layer_infos": infos }));
        let out = stream_layered(&[fed.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{needle}");
        assert!(out.stdout.is_empty(), "refused before the first byte");
        let err = text(&out.stderr);
        assert!(
            err.contains("store_layer_infos") && err.contains(needle),
            "{needle:?} not in {err}"
        );
    }
    for flags in [
        &["--format", "oci-archive"][..],
        &["-t", "x:y"],
        &["--tls-verify=false"],
    ] {
        let mut args = vec![conf.to_str().unwrap(), "--layer-info", "1"];
        args.extend_from_slice(flags);
        let out = stream_layered(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flags:?}: {}",
            text(&out.stderr)
        );
    }
}

/// Nix settings for an offline build without a daemon (as tests/tests/nixpkgs_harness.rs).
const NIX_CONFIG: &str = "build-users-group =\nsubstituters =\nexperimental-features = nix-command\nsandbox = false\nmax-jobs = 2\ncores = 2";

/// Builds `nix/tests/layer-infos.nix` with nix-bin, once more on failure (Nix 2.8's signal 9
/// race on quick builders; a second attempt only rebuilds what failed).
fn build_layer_infos_test(out_link: &Path) -> Option<PathBuf> {
    let programs = ["nix-build", "fakeroot", "jq", "lndir", "busybox"];
    if !pipeline_tests::require_root() || !programs.iter().all(|p| pipeline_tests::require(p)) {
        return None;
    }
    let reference = pipeline_tests::root()
        .join("../shared/reference/nixpkgs")
        .canonicalize()
        .expect("the nixpkgs reference at ../shared/reference/nixpkgs");
    let tools = pipeline_tests::bin_dir()
        .canonicalize()
        .expect("tools folder");
    let expr = pipeline_tests::root().join("nix/tests/layer-infos.nix");
    let run = || {
        Command::new("nix-build")
            .arg(&expr)
            .args(["--argstr", "nixpkgs"])
            .arg(&reference)
            .args(["--argstr", "tools"])
            .arg(&tools)
            .arg("-o")
            .arg(out_link)
            .env("NIX_CONFIG", NIX_CONFIG)
            .output()
            .expect("nix-build runs")
    };
    let mut out = run();
    if !out.status.success() {
        eprintln!("nix-build failed once, retrying: {}", text(&out.stderr));
        out = run();
    }
    pipeline_tests::ok(&out, "nix-build nix/tests/layer-infos.nix");
    Some(out_link.to_path_buf())
}

#[test]
fn the_overlay_opt_in_feeds_per_layer_infos_and_the_image_is_unchanged() {
    let tmp = TempDir::new("info-nix");
    let Some(result) = build_layer_infos_test(&tmp.join("result")) else {
        return;
    };
    let plain = fs::read(result.join("plain.tar")).unwrap();
    assert!(plain.windows(13).any(|w| w == b"manifest.json"));
    assert_eq!(fs::read(result.join("fed.tar")).unwrap(), plain);
    // The opted-in stream script runs stream-layered on the conf with infos.
    let script = text(&fs::read(result.join("fed-stream-script")).unwrap());
    let conf_path = script
        .split_whitespace()
        .find(|w| w.ends_with("-conf.json"))
        .expect("the wrapper names its conf");
    let fed_conf = fs::read(conf_path).unwrap();
    assert_eq!(fs::read(result.join("fed-conf.json")).unwrap(), fed_conf);
    let conf: Value = serde_json::from_slice(&fed_conf).unwrap();
    let infos = conf["store_layer_infos"].as_array().unwrap();
    assert_eq!(infos.len(), conf["store_layers"].as_array().unwrap().len());
    assert_eq!(infos.len(), 4);
    for info in infos {
        let hex = info["diff_id"].as_str().unwrap().strip_prefix("sha256:");
        let member = format!("{}/layer.tar", hex.unwrap());
        assert!(plain.windows(member.len()).any(|w| w == member.as_bytes()));
    }
    // One derivation per layer; the image with one leaf changed has exactly one other.
    let drvs: Value = serde_json::from_slice(&fs::read(result.join("drvs.json")).unwrap()).unwrap();
    assert_eq!(drvs["image"].as_array().unwrap().len(), 4);
    assert_eq!(drvs["onlyInChanged"].as_array().unwrap().len(), 1);
    assert_eq!(drvs["onlyInImage"].as_array().unwrap().len(), 1);
}
