//! OCI output of stream-layered: skopeo verifies every digest of the oci-archive and the oci-dir,
//! podman loads the oci-archive, umoci unpacks the oci-dir into a rootfs matching the store;
//! and the stream compression reads back with gzip -d and zstd -d.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::process::Command;

use pipeline_tests::{fixtures, ok, require, require_root, with_store, Podman, TempDir};

/// `skopeo copy SRC dir:DEST`, which checks every digest and size.
fn skopeo_copy(src: &str, dest: &std::path::Path) {
    let out = Command::new("skopeo")
        .args(["copy", src, &format!("dir:{}", dest.display())])
        .output()
        .expect("skopeo");
    ok(
        &out,
        &format!("skopeo copy {src} (checks every digest and size)"),
    );
}

#[test]
fn oci_archive_and_dir_are_accepted_by_real_clients() {
    if !require_root() || !require("skopeo") || !require("umoci") || !require("podman") {
        return;
    }
    let fix = fixtures();
    let tmp = TempDir::new("oci");
    let conf = fix.join("confs/s10.json");
    let script = format!(
        "stream-layered '{c}' --format oci-archive --layer-compression gz > oci.tar\n\
         stream-layered '{c}' --format oci-archive --layer-compression zstd --compress gz > oci-zstd.tar.gz\n\
         stream-layered '{c}' --format oci-dir --output ocidir --layer-compression gz\n\
         stream-layered '{c}' --compress zstd --level 19 > docker.tar.zst\n\
         stream-layered '{c}' > docker.tar\n\
         cmp docker.tar <(zstd -dc docker.tar.zst)\n\
         gzip -dc oci-zstd.tar.gz > oci-zstd.tar",
        c = conf.display()
    );
    let out = with_store(&fix.join("stores/s10"), &script, &tmp.0);
    ok(&out, "stream-layered OCI outputs");
    for src in [
        format!("oci-archive:{}", tmp.join("oci.tar").display()),
        format!("oci-archive:{}", tmp.join("oci-zstd.tar").display()),
        format!("oci:{}", tmp.join("ocidir").display()),
    ] {
        skopeo_copy(&src, &tmp.join(format!("copy-{}", src.len())));
    }
    let podman = Podman::new(&tmp.join("podman"));
    ok(
        &podman.run(&["load", "-i", &tmp.join("oci.tar").display().to_string()]),
        "podman load oci-archive",
    );
    let images = podman.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(String::from_utf8_lossy(&images.stdout).contains("other-image:v1"));
    pipeline_tests::assert_umoci_rootfs_matches(
        &format!("{}:other-image:v1", tmp.join("ocidir").display()),
        &fix.join("stores/s10"),
        &conf,
        &tmp.0,
    );
}

#[test]
fn bad_format_and_level_are_usage_errors() {
    let bin = pipeline_tests::tool("stream-layered");
    for args in [
        &["x.json", "--format", "tarball"][..],
        &["x.json", "--compress", "gz", "--level", "12"][..],
        &["x.json", "--level", "99"][..],
    ] {
        let out = Command::new(&bin).args(args).output().expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn oci_output_on_a_base_image_carries_the_base_layers() {
    if !require_root() || !require("skopeo") || !require("umoci") || !require("jq") {
        return;
    }
    let fix = fixtures();
    let tmp = TempDir::new("oci-base");
    let conf = fix.join("confs/s10.json");
    // The base is the s10 image; on top of it, the s10 conf again with another tag and Env.
    let script = format!(
        "stream-layered '{c}' > base.tar\n\
         jq --arg f \"$PWD/base.tar\" '.from_image = $f | .repo_tag = \"on-base:v2\" | .config.Env = [\"NEW=1\"]' '{c}' > conf.json\n\
         stream-layered conf.json > docker.tar\n\
         stream-layered conf.json --format oci-archive --layer-compression gz > oci.tar\n\
         stream-layered conf.json --format oci-dir --output ocidir",
        c = conf.display()
    );
    let out = with_store(&fix.join("stores/s10"), &script, &tmp.0);
    ok(&out, "stream-layered OCI outputs on a base image");
    for src in [
        format!("oci-archive:{}", tmp.join("oci.tar").display()),
        format!("oci:{}", tmp.join("ocidir").display()),
    ] {
        skopeo_copy(&src, &tmp.join(format!("copy-{}", src.len())));
    }
    // Same config as the docker-archive: the diff_ids, base layers first, and the merged Env.
    let jq = |args: &[&str]| -> String {
        let out = Command::new("jq")
            .args(args)
            .current_dir(&tmp.0)
            .output()
            .expect("jq");
        ok(&out, "jq");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let docker_config = {
        let out = Command::new("bash")
            .arg("-c")
            .arg("tar -xOf docker.tar \"$(tar -xOf docker.tar manifest.json | jq -r '.[0].Config')\"")
            .current_dir(&tmp.0)
            .output()
            .expect("tar");
        ok(&out, "docker config");
        out.stdout
    };
    std::fs::write(tmp.join("docker-config.json"), docker_config).expect("write");
    let index = jq(&["-r", ".manifests[0].digest", "ocidir/index.json"]);
    let manifest = tmp.join(format!(
        "ocidir/blobs/sha256/{}",
        index.trim().trim_start_matches("sha256:")
    ));
    let config_digest = jq(&["-r", ".config.digest", &manifest.display().to_string()]);
    let oci_config = format!(
        "ocidir/blobs/sha256/{}",
        config_digest.trim().trim_start_matches("sha256:")
    );
    for filter in [".rootfs.diff_ids", ".config.Env", "[.history[].comment]"] {
        assert_eq!(
            jq(&[filter, &oci_config]),
            jq(&[filter, "docker-config.json"]),
            "{filter}"
        );
    }
    pipeline_tests::assert_umoci_rootfs_matches(
        &format!("{}:on-base:v2", tmp.join("ocidir").display()),
        &fix.join("stores/s10"),
        &conf,
        &tmp.0,
    );
}
