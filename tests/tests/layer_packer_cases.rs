//! The layer-packer data cases of the conformance suite, mapped onto layer-packer's CLI.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;

use pipeline_tests::{fixtures, ok, require_root, sha256_file, tool, with_store, TempDir};
use serde_json::Value;

#[test]
fn conformance_data_cases() {
    if !require_root() {
        return;
    }
    let fix = fixtures();
    let cases = pipeline_tests::conformance().join("cases/layer-packer");
    let mut ran = 0;
    for entry in fs::read_dir(&cases).expect("cases") {
        let case = entry.expect("entry").path();
        let input: Value =
            serde_json::from_slice(&fs::read(case.join("input.json")).expect("input.json"))
                .expect("json");
        let store = fs::read_to_string(case.join("store"))
            .expect("store")
            .trim()
            .to_string();
        let tmp = TempDir::new("lp-case");
        let contents: Vec<String> = input["contents"]
            .as_array()
            .expect("contents")
            .iter()
            .map(|c| c.as_str().expect("path").to_string())
            .collect();
        let mtime = input["sourceDateEpoch"].as_i64().expect("epoch");
        let lp = tool("layer-packer");
        let script = if input["what"] == "mkPureLayer" {
            let dirlinks = if input["keepContentsDirlinks"] == true {
                "--keep-dirlinks"
            } else {
                ""
            };
            format!(
                "'{}' pure --out out --mtime {mtime} --uid {} --gid {} {dirlinks} --base-json '{}' {}",
                lp.display(),
                input["uid"],
                input["gid"],
                input["baseJson"].as_str().expect("baseJson"),
                contents.join(" ")
            )
        } else {
            assert_eq!(
                input["extraCommands"], "mkdir -p tmp && chmod 1777 tmp",
                "unmapped extraCommands"
            );
            format!(
                "'{}' customisation --out out --mtime {mtime} --mkdir tmp:1777 {}",
                lp.display(),
                contents.join(" ")
            )
        };
        let out = with_store(&fix.join("stores").join(&store), &script, &tmp.0);
        ok(&out, &format!("layer-packer on {}", case.display()));
        let expect = |name: &str| fs::read(case.join(name)).ok();
        let want_tar = String::from_utf8(expect("expected.layer.tar.sha256").expect("tar digest"))
            .expect("utf8");
        assert_eq!(
            sha256_file(&tmp.join("out/layer.tar")),
            want_tar.split_whitespace().next().unwrap_or_default(),
            "{}",
            case.display()
        );
        for (file, expected) in [
            ("checksum", "expected.checksum"),
            ("json", "expected.json"),
            ("VERSION", "expected.VERSION"),
        ] {
            if let Some(want) = expect(expected) {
                assert_eq!(
                    fs::read(tmp.join("out").join(file)).expect("output file"),
                    want,
                    "{} {file}",
                    case.display()
                );
            }
        }
        if let Some(want) = expect("expected.tarsum") {
            let got = std::process::Command::new(tool("tarsum"))
                .stdin(fs::File::open(tmp.join("out/layer.tar")).expect("tar"))
                .output()
                .expect("tarsum");
            assert_eq!(got.stdout, want, "{} tarsum", case.display());
        }
        ran += 1;
    }
    assert_eq!(ran, 3, "expected the three layer-packer cases");
}
