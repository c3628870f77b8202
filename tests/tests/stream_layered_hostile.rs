//! stream-layered on hostile or unlucky input: store paths that try to leave the store, files it
//! may not read, base images that lie or grow, options that do not apply, output folders that
//! cannot work, interrupted runs, and full disks.
//! Each test is named after the behaviour it pins (adversarial defects D2, D3, D7, D8, D10, D13,
//! D14, D16, D18, D25, D32, D33).

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pipeline_tests::{require, require_root, root, tool, write_conf, TempDir};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A small store (`pkg/bin/hi`, a file outside it, a symlink out of it) and a customisation layer.
struct Fixture {
    tmp: TempDir,
    store: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let tmp = TempDir::new(tag);
        let store = tmp.join("store");
        fs::create_dir_all(store.join("pkg/bin")).unwrap();
        fs::write(store.join("pkg/bin/hi"), "hi\n").unwrap();
        fs::create_dir_all(tmp.join("outside")).unwrap();
        fs::write(tmp.join("outside/secret"), "secret\n").unwrap();
        symlink(tmp.join("outside"), store.join("evil")).unwrap();
        fs::create_dir_all(tmp.join("storeX")).unwrap();
        fs::write(tmp.join("storeX/s"), "sibling\n").unwrap();
        // An empty tar (two zero blocks and record padding) as the customisation layer.
        let cust = store.join("custom");
        fs::create_dir_all(&cust).unwrap();
        let layer = vec![0u8; 10240];
        fs::write(cust.join("checksum"), format!("{}\n", hex_sha256(&layer))).unwrap();
        fs::write(cust.join("layer.tar"), layer).unwrap();
        Fixture { tmp, store }
    }

    fn s(&self) -> String {
        self.store.display().to_string()
    }

    /// Writes a conf with these store layers (and `extra` keys merged in), returns its path.
    fn conf(&self, name: &str, layers: Value, extra: Value) -> PathBuf {
        let conf = json!({
            "architecture": "amd64", "config": {"Env": ["PATH=/bin"]}, "os": "linux",
            "store_dir": self.s(), "from_image": null, "store_layers": layers,
            "customisation_layer": format!("{}/custom", self.s()), "repo_tag": "t:1",
            "created": "1970-01-01T00:00:01+00:00", "mtime": "1970-01-01T00:00:01+00:00",
            "uid": "0", "gid": "0", "uname": "root", "gname": "root"
        });
        write_conf(self.tmp.join(name), conf, extra)
    }
}

fn stream_layered(args: &[&str]) -> Output {
    Command::new(tool("stream-layered"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stream-layered")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit 1, nothing on stdout, and a `stream-layered:` message containing `needle`.
fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(out.stdout.is_empty(), "no partial image on stdout");
    let err = stderr(out);
    assert!(err.starts_with("stream-layered: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

/// `tar -tv` of the first member (the first layer) of a docker-archive.
fn first_layer_listing(image: &Path) -> String {
    let script = "tar -xOf \"$1\" \"$(tar -tf \"$1\" | head -1)\" | tar -tv --numeric-owner";
    let out = Command::new("bash")
        .args(["-c", script, "_"])
        .arg(image)
        .output()
        .expect("tar");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_symlinked_store_path_with_a_trailing_slash_is_not_followed() {
    let f = Fixture::new("sl-slash");
    for (i, p) in ["evil/", "evil", "evil/.", "evil//"].iter().enumerate() {
        let conf = f.conf(
            &format!("c{i}.json"),
            json!([[format!("{}/{p}", f.s())]]),
            json!({}),
        );
        let out = stream_layered(&[conf.to_str().unwrap()]);
        assert!(out.status.success(), "{p}: {}", stderr(&out));
        let image = f.tmp.join(format!("i{i}.tar"));
        fs::write(&image, &out.stdout).unwrap();
        let listing = first_layer_listing(&image);
        assert!(
            !listing.contains("secret"),
            "{p}: the link was followed:\n{listing}"
        );
        let last = listing.lines().last().unwrap_or_default();
        assert!(
            last.starts_with('l')
                && last.ends_with(&format!("{}/evil -> {}/outside", f.s(), f.tmp.0.display())),
            "{p}: {last}"
        );
    }
    // Every spelling gives the layer of the plain one (the history comment keeps the spelling,
    // as the original's does).
    let plain = first_layer_listing(&f.tmp.join("i1.tar"));
    for i in [0, 2, 3] {
        assert_eq!(
            first_layer_listing(&f.tmp.join(format!("i{i}.tar"))),
            plain,
            "i{i}"
        );
    }
}

#[test]
fn a_store_path_with_dotdot_is_refused() {
    let f = Fixture::new("sl-dotdot");
    for p in [
        format!("{}/../outside/secret", f.s()),
        format!("{}/pkg/../pkg", f.s()),
        format!("{}/../../../../../../../../etc/hostname", f.s()),
    ] {
        let conf = f.conf("c.json", json!([[p]]), json!({}));
        assert_refused(
            &stream_layered(&[conf.to_str().unwrap()]),
            "has a \"..\" component",
        );
    }
}

#[test]
fn a_sibling_prefix_of_the_store_is_refused() {
    let f = Fixture::new("sl-sibling");
    let conf = f.conf("c.json", json!([[format!("{}X/s", f.s())]]), json!({}));
    assert_refused(
        &stream_layered(&[conf.to_str().unwrap()]),
        "is not under store_dir",
    );
}

#[test]
fn the_store_folder_itself_is_not_a_store_path() {
    let f = Fixture::new("sl-itself");
    for p in [f.s(), format!("{}/", f.s())] {
        let conf = f.conf("c.json", json!([[p]]), json!({}));
        assert_refused(
            &stream_layered(&[conf.to_str().unwrap()]),
            "is store_dir itself",
        );
    }
}

#[test]
fn a_store_path_through_a_symlink_out_of_the_store_is_refused() {
    let f = Fixture::new("sl-through");
    let conf = f.conf(
        "c.json",
        json!([[format!("{}/evil/secret", f.s())]]),
        json!({}),
    );
    assert_refused(
        &stream_layered(&[conf.to_str().unwrap()]),
        "leads out of store_dir",
    );
    // Through a symlink that stays in the store is fine, as in the original.
    symlink("pkg", f.store.join("inlink")).unwrap();
    let conf = f.conf(
        "c2.json",
        json!([[format!("{}/inlink/bin/hi", f.s())]]),
        json!({}),
    );
    let out = stream_layered(&[conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The original script, when python3 and the reference checkout are there.
fn original() -> Option<PathBuf> {
    let script = root()
        .join("../shared/reference/nixpkgs/pkgs/build-support/docker/stream_layered_image.py");
    (require("python3") && script.exists()).then_some(script)
}

#[test]
fn store_path_spellings_the_original_handles_give_its_bytes() {
    let Some(script) = original() else { return };
    let f = Fixture::new("sl-spellings");
    fs::write(f.store.join("afile"), "f\n").unwrap();
    symlink("pkg", f.store.join("inlink")).unwrap();
    for p in [
        "pkg",
        "pkg/",
        "/pkg",
        "./pkg",
        "pkg/.",
        "pkg//bin/",
        "evil/",
        "evil/.",
        "inlink/",
        "inlink/bin/hi",
        "afile/",
        "pkg/bin/hi",
    ] {
        let conf = f.conf("c.json", json!([[format!("{}/{p}", f.s())]]), json!({}));
        let ours = stream_layered(&[conf.to_str().unwrap()]);
        let theirs = Command::new("python3")
            .arg(&script)
            .arg(&conf)
            .output()
            .expect("python3");
        assert!(theirs.status.success(), "{p}: {}", stderr(&theirs));
        assert!(ours.status.success(), "{p}: {}", stderr(&ours));
        assert!(
            ours.stdout == theirs.stdout,
            "{p}: the bytes differ from the original's"
        );
    }
}

#[test]
fn an_unreadable_file_fails_before_the_first_byte() {
    let f = Fixture::new("sl-unreadable");
    fs::create_dir_all(f.store.join("b")).unwrap();
    fs::write(f.store.join("b/secret"), "s\n").unwrap();
    let conf = f.conf(
        "c.json",
        json!([[format!("{}/pkg", f.s())], [format!("{}/b", f.s())]]),
        json!({}),
    );
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&f.tmp.0)
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(f.store.join("b/secret"), fs::Permissions::from_mode(0o000)).unwrap();
    // Root may open anything: run as nobody then.
    let mut cmd = if require_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(tool("stream-layered"));
        c
    } else {
        Command::new(tool("stream-layered"))
    };
    let out = cmd.arg(&conf).stdin(Stdio::null()).output().expect("run");
    assert_refused(&out, "layer 2: ");
    assert!(
        stderr(&out).contains("b/secret: Permission denied"),
        "{}",
        stderr(&out)
    );
}

/// Writes a docker-archive base image with one layer member whose bytes are `layer` and whose
/// diff_id is `diff_id`, plus `extra` members (name, size in MiB of zeros), with python3.
fn make_base(path: &Path, layer_hex_bytes: &str, diff_id: &str, empty_members: usize) {
    let script = r#"
import tarfile, io, json, sys
out, layer, diff_id, n = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4])
with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    add("base/layer.tar", layer)
    cfg = json.dumps({"config": {"Env": ["A=1"]}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    add("c.json", cfg)
    for i in range(n):
        ti = tarfile.TarInfo("f%07d" % i); t.addfile(ti)
    add("manifest.json", json.dumps([{"Config": "c.json", "RepoTags": ["b:1"], "Layers": ["base/layer.tar"]}]).encode())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .args([layer_hex_bytes, diff_id, &empty_members.to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_base_image_layer_that_does_not_match_its_diff_id_is_an_error() {
    if !require("python3") {
        return;
    }
    let f = Fixture::new("sl-diffid");
    let layer = vec![0u8; 10240];
    let layer_hex: String = layer.iter().map(|b| format!("{b:02x}")).collect();
    let good = f.tmp.join("good.tar");
    make_base(
        &good,
        &layer_hex,
        &format!("sha256:{}", hex_sha256(&layer)),
        0,
    );
    let bad = f.tmp.join("bad.tar");
    make_base(&bad, &layer_hex, &format!("sha256:{}", "0".repeat(64)), 0);
    let pkg = json!([[format!("{}/pkg", f.s())]]);
    let ok_conf = f.conf("ok.json", pkg.clone(), json!({"from_image": good}));
    let out = stream_layered(&[ok_conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = f.conf("bad.json", pkg, json!({"from_image": bad}));
    let c = conf.to_str().unwrap();
    let dir = f.tmp.join("oci");
    let dir_s = dir.to_str().unwrap();
    for args in [
        vec![c],
        vec![c, "--format", "oci-archive"],
        vec![c, "--format", "oci-dir", "--output", dir_s],
    ] {
        let out = stream_layered(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("from_image {}", bad.display())),
            "{err}"
        );
        let found = format!("layer base/layer.tar has sha256 {}", hex_sha256(&layer));
        assert!(err.contains(&found), "{err}");
        assert!(err.contains("but the config's diff_id is 0000"), "{err}");
    }
    assert!(!dir.exists(), "no OCI folder from a bad base");
}

#[test]
fn a_base_image_with_many_members_loads_in_linear_time() {
    if !require("python3") {
        return;
    }
    // The old member list was de-duplicated with a scan per member: 100k members took a minute.
    let f = Fixture::new("sl-many");
    let layer = vec![0u8; 10240];
    let layer_hex: String = layer.iter().map(|b| format!("{b:02x}")).collect();
    let base = f.tmp.join("many.tar");
    make_base(
        &base,
        &layer_hex,
        &format!("sha256:{}", hex_sha256(&layer)),
        100_000,
    );
    let conf = f.conf("c.json", json!([]), json!({"from_image": base}));
    let out = stream_layered(&[conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Adding base layer 1 from base/layer.tar"));
}

#[test]
fn a_base_image_keeps_only_its_manifest_and_config() {
    if !require("python3") || !require("zstd") {
        return;
    }
    // 16 JSON members of 60 MiB each (32 KB compressed): only manifest.json and c.json are read,
    // so the run fits in 600 MB of address space where keeping them would need a gigabyte.
    let f = Fixture::new("sl-jsonbomb");
    let script = r#"
import tarfile, io, json, sys
class Z(io.RawIOBase):
    def __init__(s, n): s.left = n
    def readinto(s, b):
        k = min(len(b), s.left); b[:k] = bytes(k); s.left -= k; return k
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.USTAR_FORMAT) as t:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    for i in range(16):
        ti = tarfile.TarInfo("j%03d.json" % i); ti.size = 60 << 20; t.addfile(ti, Z(60 << 20))
    add("c.json", json.dumps({"config": {}, "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    add("manifest.json", json.dumps([{"Config": "c.json", "RepoTags": ["b:1"], "Layers": []}]).encode())
"#;
    let base = f.tmp.join("bomb.tar.zst");
    let out = Command::new("bash")
        .args(["-c", "python3 -c \"$1\" | zstd -q -3 > \"$2\"", "_", script])
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = f.conf("c.json", json!([]), json!({"from_image": base}));
    let out = Command::new("bash")
        .args([
            "-c",
            "ulimit -v 600000 && exec \"$1\" \"$2\" > /dev/null",
            "_",
        ])
        .arg(tool("stream-layered"))
        .arg(&conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // A config beyond the cap is a clear error.
    let big = f.tmp.join("bigconf.tar");
    let out = Command::new("python3")
        .args(["-c", "import tarfile, io, sys\nwith tarfile.open(sys.argv[1], 'w') as t:\n    d = b'{' + b' ' * (17 << 20) + b'}'\n    ti = tarfile.TarInfo('c.json'); ti.size = len(d); t.addfile(ti, io.BytesIO(d))\n    m = b'[{\"Config\": \"c.json\", \"Layers\": []}]'\n    ti = tarfile.TarInfo('manifest.json'); ti.size = len(m); t.addfile(ti, io.BytesIO(m))"])
        .arg(&big)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = f.conf("big.json", json!([]), json!({"from_image": big}));
    assert_refused(
        &stream_layered(&[conf.to_str().unwrap()]),
        "c.json is 17825794 bytes, more than the 16777216 bytes a JSON member may have",
    );
}

#[test]
fn an_option_that_does_not_apply_is_a_usage_error() {
    let f = Fixture::new("sl-usage");
    let conf = f.conf("c.json", json!([[format!("{}/pkg", f.s())]]), json!({}));
    let c = conf.to_str().unwrap();
    let make = [
        "--make-conf",
        "--base-json",
        c,
        "--store-layers",
        c,
        "--customisation-layer",
        "x",
        "--conf-repo-tag",
        "a:b",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![c, "--repo-tag", "want:1"], "unexpected argument '--repo-tag'"),
        (vec![c, "--conf-repo-tag", "want:1"], "--conf-repo-tag only applies with --make-conf (to override the image's tag, use --repo_tag/-t)"),
        (vec![c, "--uid", "5", "--store-dir", "/x", "--created", "now"], "--store-dir, --created, --uid only apply with --make-conf"),
        (vec![c, "--output", "somewhere"], "--output only applies to --format oci-dir"),
        (vec![c, "--layer-compression", "gz"], "--layer-compression does not apply to --format docker-archive"),
        (vec![c, "--format", "oci-dir", "--output", "o", "--compress", "gz"], "--compress does not apply to --format oci-dir"),
        (vec![c, "--level", "3"], "--level only applies with --compress or --layer-compression"),
        (vec![c, "--compress", "gz", "--level", "12"], "--level 12 is out of range for"),
        (vec![c, "--format", "oci-archive", "--layer-compression", "zstd", "--level", "0"], "--level 0 is out of range for"),
        ([&make[..], &["-t", "x:1"]].concat(), "--repo_tag does not apply to --make-conf"),
        ([&make[..], &[c]].concat(), "CONF does not apply to --make-conf"),
        ([&make[..], &["--compress", "gz"]].concat(), "--compress does not apply to --make-conf"),
        (vec![c, "--format", "oci-dir"], "--output <DIR|docker://…>"),
    ];
    for (args, want) in cases {
        let out = stream_layered(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = stderr(&out);
        assert!(err.starts_with("stream-layered: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
    }
    assert!(!f.tmp.join("o").exists() && !Path::new("somewhere").exists());
}

/// Names in `dir` that are atomic-output temporaries.
fn temporaries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dt-"))
        .collect()
}

#[test]
fn an_interrupted_oci_dir_leaves_nothing_behind() {
    let f = Fixture::new("sl-signal");
    fs::create_dir_all(f.store.join("big")).unwrap();
    // Incompressible data, so that gzip keeps the run busy for a while.
    let mut data = vec![0u8; 96 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(f.store.join("big/data"), data).unwrap();
    let conf = f.conf("c.json", json!([[format!("{}/big", f.s())]]), json!({}));
    let out_dir = f.tmp.join("out");
    fs::create_dir(&out_dir).unwrap();
    for sig in ["INT", "TERM", "HUP"] {
        let target = out_dir.join("oci");
        let mut child = Command::new(tool("stream-layered"))
            .arg(&conf)
            .args([
                "--format",
                "oci-dir",
                "--layer-compression",
                "gz",
                "--level",
                "9",
                "--output",
            ])
            .arg(&target)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The temporary folder exists from the start; wait for it, then interrupt.
        while temporaries(&out_dir).is_empty() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{sig}: finished before the signal"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "{sig}: {status}");
        assert!(
            temporaries(&out_dir).is_empty(),
            "{sig}: {:?} left",
            temporaries(&out_dir)
        );
        assert!(!target.exists(), "{sig}: an output appeared");
    }
}

#[test]
fn a_non_empty_output_folder_is_refused_before_any_work() {
    let f = Fixture::new("sl-outdir");
    let full = f.tmp.join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("keep"), "x").unwrap();
    let file = f.tmp.join("file");
    fs::write(&file, "x").unwrap();
    // The conf does not exist: an output check that came after reading it would name the conf.
    let missing_conf = f.tmp.join("no-such-conf.json");
    let m = missing_conf.to_str().unwrap();
    for (target, why) in [
        (full.clone(), "exists and is not an empty folder"),
        (file.clone(), "exists and is not an empty folder"),
        (
            f.tmp.join("no/such/parent/oci"),
            "parent folder does not exist",
        ),
    ] {
        let out = stream_layered(&[
            m,
            "--format",
            "oci-dir",
            "--output",
            target.to_str().unwrap(),
        ]);
        assert_refused(&out, &format!("output {}: {why}", target.display()));
    }
    assert_eq!(fs::read(full.join("keep")).unwrap(), b"x");
    assert_eq!(fs::read(&file).unwrap(), b"x");
    assert!(!f.tmp.join("no").exists(), "no parent folder was created");
    assert!(temporaries(&f.tmp.0).is_empty());
    // An empty folder is fine, and is filled.
    let empty = f.tmp.join("empty");
    fs::create_dir(&empty).unwrap();
    let conf = f.conf("c.json", json!([[format!("{}/pkg", f.s())]]), json!({}));
    let out = stream_layered(&[
        conf.to_str().unwrap(),
        "--format",
        "oci-dir",
        "--output",
        empty.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(empty.join("index.json").exists() && empty.join("oci-layout").exists());
}

#[test]
fn done_is_printed_after_the_last_byte() {
    let f = Fixture::new("sl-done");
    let conf = f.conf("c.json", json!([[format!("{}/pkg", f.s())]]), json!({}));
    let c = conf.to_str().unwrap();
    for format in ["docker-archive", "oci-archive"] {
        let full = Command::new(tool("stream-layered"))
            .args([c, "--format", format])
            .stdout(fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert_eq!(full.status.code(), Some(1), "{format}");
        let err = stderr(&full);
        assert!(!err.contains("Done."), "{format}: {err}");
        assert!(
            err.ends_with(
                "stream-layered: writing output: No space left on device (os error 28)\n"
            ),
            "{format}: {err}"
        );
        let out = stream_layered(&[c, "--format", format]);
        assert!(out.status.success());
        assert!(
            stderr(&out).ends_with("Done.\n"),
            "{format}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_id_out_of_range_names_the_key() {
    let f = Fixture::new("sl-uid");
    let conf = f.conf("c.json", json!([]), json!({}));
    let text = fs::read_to_string(&conf)
        .unwrap()
        .replace("\"uid\":\"0\"", "\"uid\":1e400");
    fs::write(&conf, text).unwrap();
    assert_refused(
        &stream_layered(&[conf.to_str().unwrap()]),
        "key \"uid\": 1e+400 is out of range (an id is from 0 to 18446744073709551615)",
    );
}

#[test]
fn a_conf_from_before_owner_keys_gives_root_files_and_0555_store_folders() {
    let f = Fixture::new("sl-oldconf");
    let conf = f.conf("c.json", json!([[format!("{}/pkg", f.s())]]), json!({}));
    let mut v: Value = serde_json::from_slice(&fs::read(&conf).unwrap()).unwrap();
    for key in ["uid", "gid", "uname", "gname", "mtime"] {
        v.as_object_mut().unwrap().remove(key);
    }
    fs::write(&conf, v.to_string()).unwrap();
    let out = stream_layered(&[conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let image = f.tmp.join("i.tar");
    fs::write(&image, &out.stdout).unwrap();
    let listing = first_layer_listing(&image);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].starts_with("dr-xr-xr-x 0/0") && lines[0].ends_with(" /nix/"),
        "{listing}"
    );
    assert!(
        lines[1].starts_with("dr-xr-xr-x 0/0") && lines[1].ends_with(" /nix/store/"),
        "{listing}"
    );
    assert!(
        lines.iter().skip(2).all(|l| l.contains(" 0/0 ")),
        "{listing}"
    );
    assert!(
        lines.iter().all(|l| l.contains("1970-01-01 00:00")),
        "mtime from created: {listing}"
    );
}
