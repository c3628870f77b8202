//! Real clients accept the images: podman loads and runs them, skopeo verifies every digest,
//! umoci unpacks a rootfs whose store paths match the store byte for byte.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::process::Command;

use pipeline_tests::{
    busybox_image_inputs, fixtures, ok, require, require_root, tool, with_store, Podman, TempDir,
};

fn clients_available() -> bool {
    require_root() && require("podman") && require("skopeo") && require("umoci") && require("runc")
}

/// Streams the image of fixture store `name` into `dir/image.tar`.
fn fixture_image(name: &str, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let fix = fixtures();
    let store = fix.join("stores").join(name);
    let conf = fix.join("confs").join(format!("{name}.json"));
    let out = with_store(
        &store,
        &format!("stream-layered '{}' > image.tar", conf.display()),
        dir,
    );
    ok(&out, &format!("stream-layered {name}"));
    (store, conf)
}

#[test]
fn a_many_layered_image_loads_in_podman() {
    if !clients_available() {
        return;
    }
    // s10: 37 layers. podman's vfs driver copies every lower layer into each new one, so the
    // 100-layer, 300 MB s300 image would take minutes here without testing anything more.
    let tmp = TempDir::new("clients-s10");
    fixture_image("s10", &tmp.0);
    let podman = Podman::new(&tmp.0);
    ok(
        &podman.run(&["load", "-i", &tmp.join("image.tar").display().to_string()]),
        "podman load",
    );
    let images = podman.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        String::from_utf8_lossy(&images.stdout).contains("other-image"),
        "loaded image listed"
    );
}

#[test]
fn s300_image_verifies_and_unpacks() {
    if !clients_available() {
        return;
    }
    let tmp = TempDir::new("clients-s300");
    let (store, conf) = fixture_image("s300", &tmp.0);
    let oci = format!("oci:{}:t", tmp.join("oci").display());
    let out = Command::new("skopeo")
        .args([
            "copy",
            &format!("docker-archive:{}", tmp.join("image.tar").display()),
            &oci,
        ])
        .output()
        .expect("skopeo");
    ok(&out, "skopeo copy (checks every layer digest)");
    // Every store path of the conf is in the rootfs with the same contents.
    pipeline_tests::assert_umoci_rootfs_matches(
        &format!("{}:t", tmp.join("oci").display()),
        &store,
        &conf,
        &tmp.0,
    );
}

/// Two images gzipped by pigz (level 6, sync points every 128 KiB) merged at the default
/// level: merge-images reuses their deflate data. GNU gzip and Python's zlib read the output as
/// the tar the plain inputs merge to, and skopeo checks every layer digest of both images in it.
#[test]
fn merged_pigz_images_keep_every_digest() {
    if !clients_available() || !require("pigz") || !require("python3") {
        return;
    }
    let tmp = TempDir::new("clients-merge-gz");
    let mut inputs = Vec::new();
    for name in ["s300", "s10"] {
        let dir = tmp.join(name);
        fs::create_dir_all(&dir).expect("mkdir");
        fixture_image(name, &dir);
        let status = Command::new("pigz")
            .args(["-n", "-k", "-f"])
            .arg(dir.join("image.tar"))
            .status()
            .expect("pigz");
        assert!(status.success());
        inputs.push(dir.join("image.tar"));
    }
    let merge = |out: &str, gz: bool| {
        let mut cmd = Command::new(tool("merge-images"));
        cmd.arg(tmp.join(out)).args(["--compress", "gz"]);
        for input in &inputs {
            let mut name = input.clone().into_os_string();
            if gz {
                name.push(".gz");
            }
            cmd.arg(name);
        }
        ok(&cmd.output().expect("merge-images"), "merge-images");
    };
    merge("plain.tar.gz", false);
    merge("reused.tar.gz", true);
    let sh = |script: &str| {
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(&tmp.0)
            .output()
            .expect("sh");
        ok(&out, script);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let want = sh("gzip -dc plain.tar.gz | sha256sum");
    assert_eq!(sh("gzip -dc reused.tar.gz | sha256sum"), want);
    let py = "import sys, zlib, hashlib; d = zlib.decompressobj(31); \
              b = d.decompress(open(sys.argv[1], 'rb').read()); \
              assert d.eof and not d.unused_data; print(hashlib.sha256(b).hexdigest() + '  -')";
    assert_eq!(sh(&format!("python3 -c \"{py}\" reused.tar.gz")), want);
    // The gzip bytes differ: the inputs' own deflate data is in the output.
    assert_ne!(
        sh("sha256sum < reused.tar.gz"),
        sh("sha256sum < plain.tar.gz")
    );
    sh("gzip -dc reused.tar.gz > merged.tar");
    for (tag, dir) in [("test-image:latest", "oci-a"), ("other-image:v1", "oci-b")] {
        let out = Command::new("skopeo")
            .args([
                "copy",
                &format!("docker-archive:{}:{tag}", tmp.join("merged.tar").display()),
                &format!("oci:{}:t", tmp.join(dir).display()),
            ])
            .output()
            .expect("skopeo");
        ok(
            &out,
            &format!("skopeo copy {tag} (checks every layer digest)"),
        );
    }
}

#[test]
fn corrupted_layer_is_rejected_by_skopeo() {
    if !clients_available() {
        return;
    }
    let fix = fixtures();
    let tmp = TempDir::new("clients-corrupt");
    let out = with_store(
        &fix.join("stores/s10"),
        &format!(
            "stream-layered '{}' > image.tar",
            fix.join("confs/s10.json").display()
        ),
        &tmp.0,
    );
    ok(&out, "stream-layered s10");
    // Flip one byte inside the first layer's data (past the outer header and the /nix entries).
    let mut bytes = fs::read(tmp.join("image.tar")).expect("image");
    bytes[512 + 2048] ^= 0xff;
    fs::write(tmp.join("bad.tar"), &bytes).expect("write");
    let out = Command::new("skopeo")
        .args([
            "copy",
            &format!("docker-archive:{}", tmp.join("bad.tar").display()),
            &format!("oci:{}:t", tmp.join("oci").display()),
        ])
        .output()
        .expect("skopeo");
    assert!(
        !out.status.success(),
        "skopeo must reject a layer whose digest does not match"
    );
}

#[test]
fn busybox_image_runs_and_merged_images_load_together() {
    if !clients_available() || !require("busybox") {
        return;
    }
    let tmp = TempDir::new("clients-run");
    let mut images = Vec::new();
    for (tag, msg) in [
        ("demo-one:v1", "hello from one"),
        ("demo-two:v2", "hello from two"),
    ] {
        let dir = tmp.join(tag.replace(':', "-"));
        fs::create_dir_all(&dir).expect("mkdir");
        let (store, conf) = busybox_image_inputs(&dir, tag, msg);
        let image = dir.join("image.tar");
        let out = with_store(
            &store,
            &format!(
                "stream-layered '{}' > '{}'",
                conf.display(),
                image.display()
            ),
            &dir,
        );
        ok(&out, "stream-layered busybox");
        images.push(image);
    }
    let podman = Podman::new(&tmp.join("single"));
    ok(
        &podman.run(&["load", "-i", &images[0].display().to_string()]),
        "podman load",
    );
    let run = podman.run_container("demo-one:v1", &[]);
    ok(&run, "podman run");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "hello from one"
    );

    // Merge a plain image with a zstd one; this podman (4.3) reads only uncompressed
    // docker-archives, so ask for an uncompressed output.
    let zst = tmp.join("two.tar.zst");
    let status = Command::new("zstd")
        .args(["-q", "-f"])
        .arg(&images[1])
        .arg("-o")
        .arg(&zst)
        .status()
        .expect("zstd");
    assert!(status.success());
    let merged = tmp.join("merged.tar");
    let out = Command::new(tool("merge-images"))
        .arg(&merged)
        .arg(&images[0])
        .arg(&zst)
        .arg("--compress")
        .arg("none")
        .output()
        .expect("merge-images");
    ok(&out, "merge-images");
    fs::create_dir_all(tmp.join("merged-store")).expect("mkdir");
    let podman = Podman::new(&tmp.join("merged-store"));
    ok(
        &podman.run(&["load", "-i", &merged.display().to_string()]),
        "podman load merged",
    );
    for (tag, msg) in [
        ("demo-one:v1", "hello from one"),
        ("demo-two:v2", "hello from two"),
    ] {
        let run = podman.run_container(tag, &[]);
        ok(&run, &format!("podman run {tag}"));
        assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), msg);
    }
}
