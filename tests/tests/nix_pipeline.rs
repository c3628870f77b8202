//! The whole pipeline on a real Nix store (nix-bin, offline, no daemon): a closure built with
//! `builtins.derivation`, its graph from `exportReferencesGraph`, then popularity-sorter,
//! fake-nss, layer-packer and stream-layered as streamLayeredImage composes them
//! (`nix/example/build-image.sh`); the image runs in podman, skopeo verifies it, umoci's rootfs
//! matches the closure byte for byte, and two such images merged load and run together.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::process::Command;

use pipeline_tests::{ok, require, require_root, root, tool, Podman, TempDir};

#[test]
fn real_nix_store_image_runs_verifies_and_merges() {
    if !require_root()
        || !require("nix-build")
        || !require("podman")
        || !require("skopeo")
        || !require("umoci")
        || !require("busybox")
    {
        return;
    }
    let tmp = TempDir::new("nix-pipeline");
    let out = Command::new("bash")
        .arg(root().join("nix/example/build-image.sh"))
        .arg("--nix")
        .arg(tmp.join("demo"))
        .env("PATH", pipeline_tests::tools_path())
        .output()
        .expect("build-image.sh");
    ok(&out, "build-image.sh --nix");
    let image = tmp.join("demo/image.tar");

    let podman = Podman::new(&tmp.join("podman"));
    ok(
        &podman.run(&["load", "-i", &image.display().to_string()]),
        "podman load",
    );
    let run = podman.run_container("dockertools-demo:latest", &[]);
    ok(&run, "podman run");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "Hello from a dockertools-rs image built from a real Nix store"
    );

    let oci = tmp.join("oci");
    let out = Command::new("skopeo")
        .args([
            "copy",
            &format!("docker-archive:{}", image.display()),
            &format!("oci:{}:t", oci.display()),
        ])
        .output()
        .expect("skopeo");
    ok(&out, "skopeo copy");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:t", oci.display())])
        .arg(tmp.join("bundle"))
        .output()
        .expect("umoci");
    ok(&out, "umoci unpack");
    let graph: serde_json::Value =
        serde_json::from_slice(&fs::read(tmp.join("demo/graph-list.json")).expect("graph"))
            .expect("json");
    for node in graph.as_array().expect("nodes") {
        let p = node["path"].as_str().expect("path");
        let out = Command::new("diff")
            .args(["-r", "--no-dereference", p])
            .arg(format!("{}{p}", tmp.join("bundle/rootfs").display()))
            .output()
            .expect("diff");
        ok(&out, &format!("rootfs copy of {p}"));
    }

    // A second tag of the same image, merged with the first: one load, both run.
    let retagged = tmp.join("demo/retagged.tar");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' '{}' -t dockertools-demo:second > '{}'",
            tool("stream-layered").display(),
            tmp.join("demo/conf.json").display(),
            retagged.display()
        ))
        .output()
        .expect("stream-layered");
    ok(&out, "stream-layered -t");
    let merged = tmp.join("merged.tar");
    let out = Command::new(tool("merge-images"))
        .arg(&merged)
        .arg(&image)
        .arg(&retagged)
        .output()
        .expect("merge-images");
    ok(&out, "merge-images");
    let podman = Podman::new(&tmp.join("podman-merged"));
    ok(
        &podman.run(&["load", "-i", &merged.display().to_string()]),
        "podman load merged",
    );
    for tag in ["dockertools-demo:latest", "dockertools-demo:second"] {
        let run = podman.run_container(tag, &[]);
        ok(&run, &format!("podman run {tag}"));
        assert!(String::from_utf8_lossy(&run.stdout).contains("real Nix store"));
    }
}
