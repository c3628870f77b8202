//! `stream-layered --make-conf` writes the conf.json streamLayeredImage's jq step writes:
//! checked against the fixture confs, which were written by that jq program.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::process::Command;

use pipeline_tests::{conformance, ok, tool, TempDir};
use serde_json::Value;

#[test]
fn make_conf_equals_the_jq_conf() {
    for store in ["s10", "s300"] {
        let dir = conformance().join("stores").join(store);
        let conf_bytes = fs::read(dir.join("conf.json")).expect("conf");
        let conf: Value = serde_json::from_slice(&conf_bytes).expect("json");
        let base = fs::read_dir(&dir)
            .expect("ls")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-base.json"))
            .expect("base json");
        let tmp = TempDir::new("make-conf");
        fs::write(
            tmp.join("layers.json"),
            serde_json::to_string(&conf["store_layers"]).expect("ser"),
        )
        .expect("write");
        let s = |k: &str| conf[k].as_str().expect("string").to_string();
        let out = Command::new(tool("stream-layered"))
            .arg("--make-conf")
            .arg("--base-json")
            .arg(&base)
            .arg("--store-layers")
            .arg(tmp.join("layers.json"))
            .args([
                "--customisation-layer",
                &s("customisation_layer"),
                "--conf-repo-tag",
                &s("repo_tag"),
            ])
            .args([
                "--created",
                &s("created"),
                "--mtime",
                &s("mtime"),
                "--uname",
                &s("uname"),
                "--gname",
                &s("gname"),
            ])
            .output()
            .expect("run");
        ok(&out, "stream-layered --make-conf");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&conf_bytes),
            "{store}"
        );
    }
}
