//! Helpers for the pipeline tests: the built binaries, the conformance fixtures, temporary
//! folders, and outside programs (which must exist under CI and are skipped, loudly, elsewhere).

// Test helpers: a failed setup step must fail the test at once, so panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Folder of the built tool binaries: `$DOCKERTOOLS_BIN`, else `target/release`, else `target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKERTOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let release = root().join("target/release");
    if release.join("stream-layered").exists() {
        return release;
    }
    root().join("target/debug")
}

/// `$PATH` with the built tools first, as a shell pipeline using them would have it.
pub fn tools_path() -> String {
    format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Path of one tool binary.
pub fn tool(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --release --workspace` first",
        p.display()
    );
    p
}

/// True when running under CI, where a missing outside program is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Whether `program` can run; under CI its absence fails the test.
pub fn require(program: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(!in_ci(), "{program} is required under CI");
        eprintln!("SKIPPED: {program} not installed");
    }
    ok
}

/// Whether we are root (needed for mount namespaces); under CI this must hold.
pub fn require_root() -> bool {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let ok = out.trim_ascii() == b"0";
    if !ok {
        assert!(!in_ci(), "the real-client tests need root under CI");
        eprintln!("SKIPPED: not root");
    }
    ok
}

/// A fresh temporary folder, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/dockertools-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> TempDir {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("dockertools-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// A path inside.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The conformance suite folder (`../shared/conformance`).
pub fn conformance() -> PathBuf {
    root().join("../shared/conformance")
}

/// Builds (or reuses) the conformance fixtures and returns their folder; once per test
/// process, so tests running in parallel threads never build the same store twice at once.
pub fn fixtures() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(build_fixtures).clone()
}

fn build_fixtures() -> PathBuf {
    let dir = std::env::var_os("DOCKERTOOLS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dockertools-conformance"));
    let status = Command::new("bash")
        .arg(conformance().join("make-fixtures.sh"))
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("make-fixtures.sh runs");
    assert!(status.success(), "make-fixtures.sh failed");
    dir
}

/// Runs `script` with bash in a private mount namespace with `store` bind-mounted on /nix/store.
pub fn with_store(store: &Path, script: &str, cwd: &Path) -> Output {
    let full = format!(
        "set -euo pipefail\nmkdir -p /nix/store\nmount --bind '{}' /nix/store\n{script}",
        store.display()
    );
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", &full])
        .current_dir(cwd)
        .env("PATH", tools_path())
        .output()
        .expect("unshare runs")
}

/// sha256 of a file, hex.
pub fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Asserts a command succeeded, showing its stderr otherwise.
pub fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A podman with its own fresh vfs storage (podman reuses stored layers by diff_id, so every
/// test that loads images gets a storage root of its own).
pub struct Podman {
    conf: PathBuf,
}

impl Podman {
    /// Sets up storage under `dir`.
    pub fn new(dir: &Path) -> Podman {
        std::fs::create_dir_all(dir).expect("create podman dir");
        let conf = dir.join("storage.conf");
        let text = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("graph").display(),
            dir.join("run").display()
        );
        std::fs::write(&conf, text).expect("write storage.conf");
        Podman { conf }
    }

    /// Runs `podman ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .args(args)
            .env("CONTAINERS_STORAGE_CONF", &self.conf)
            .output()
            .expect("podman runs")
    }

    /// Runs a container of `image` with the flags this machine needs (runc, no network, ulimits).
    pub fn run_container(&self, image: &str, cmd: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--rm",
            "--runtime",
            "runc",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            image,
        ];
        args.extend_from_slice(cmd);
        self.run(&args)
    }
}

/// A runnable example store: busybox in one store path, an app script referencing it in another,
/// and a customisation layer made by layer-packer; returns (store folder, conf path).
pub fn busybox_image_inputs(dir: &Path, tag: &str, message: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::symlink;
    let store = dir.join("store");
    let bb = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-busybox";
    let app = "cccccccccccccccccccccccccccccccc-app";
    let cust = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-customisation-layer";
    std::fs::create_dir_all(store.join(bb).join("bin")).expect("mkdir");
    std::fs::create_dir_all(store.join(app).join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", store.join(bb).join("bin/busybox")).expect("copy busybox");
    symlink("busybox", store.join(bb).join("bin/sh")).expect("symlink");
    let script = format!("#!/nix/store/{bb}/bin/sh\necho '{message}'\n");
    std::fs::write(store.join(app).join("bin/app"), script).expect("write");
    let status = Command::new("chmod")
        .arg("0555")
        .arg(store.join(app).join("bin/app"))
        .status()
        .expect("chmod");
    assert!(status.success());
    let custsrc = dir.join("custsrc");
    std::fs::create_dir_all(custsrc.join("bin")).expect("mkdir");
    symlink(format!("/nix/store/{app}/bin/app"), custsrc.join("bin/app")).expect("symlink");
    let out = Command::new(tool("layer-packer"))
        .args(["customisation", "--mkdir", "tmp:1777", "--out"])
        .arg(store.join(cust))
        .arg(&custsrc)
        .output()
        .expect("layer-packer");
    ok(&out, "layer-packer customisation");
    let conf = serde_json_conf(tag, bb, app, cust);
    let conf_path = dir.join("conf.json");
    std::fs::write(&conf_path, conf).expect("write conf");
    (store, conf_path)
}

fn serde_json_conf(tag: &str, bb: &str, app: &str, cust: &str) -> String {
    format!(
        r#"{{"architecture": "amd64", "config": {{"Cmd": ["/bin/app"], "Env": ["PATH=/bin"]}}, "store_dir": "/nix/store", "from_image": null,
"store_layers": [["/nix/store/{bb}"], ["/nix/store/{app}"]], "customisation_layer": "/nix/store/{cust}", "repo_tag": "{tag}",
"created": "1970-01-01T00:00:01Z", "mtime": "1970-01-01T00:00:01Z", "uid": "0", "gid": "0", "uname": "root", "gname": "root"}}"#
    )
}

/// Unpacks `image` (`DIR:TAG` of an OCI layout) with umoci into `cwd/bundle`, then checks the
/// rootfs with [`assert_rootfs_matches`].
pub fn assert_umoci_rootfs_matches(image: &str, store: &Path, conf: &Path, cwd: &Path) {
    let out = Command::new("umoci")
        .args(["unpack", "--image", image])
        .arg(cwd.join("bundle"))
        .output()
        .expect("umoci");
    ok(&out, &format!("umoci unpack {image}"));
    assert_rootfs_matches(store, conf, &cwd.join("bundle/rootfs"), cwd);
}

/// Checks that every store path of `conf`'s store_layers is in `rootfs` with the same
/// contents (`diff -r`, symlinks compared as links), with `store` mounted on /nix/store.
pub fn assert_rootfs_matches(store: &Path, conf: &Path, rootfs: &Path, cwd: &Path) {
    let conf_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(conf).expect("conf")).expect("json");
    let mut diffs = String::new();
    for layer in conf_json["store_layers"].as_array().expect("layers") {
        for p in layer.as_array().expect("paths") {
            let p = p.as_str().expect("path");
            diffs.push_str(&format!(
                "diff -r --no-dereference '{p}' '{}{p}'\n",
                rootfs.display()
            ));
        }
    }
    ok(
        &with_store(store, &diffs, cwd),
        "the unpacked rootfs matches the store",
    );
}

/// Writes `conf` with the keys of `extra` (an object) merged over its own to `path`, and
/// returns the path: the conf a test case varies from a fixture's base.
pub fn write_conf(path: PathBuf, mut conf: serde_json::Value, extra: serde_json::Value) -> PathBuf {
    if let (serde_json::Value::Object(c), serde_json::Value::Object(e)) = (&mut conf, extra) {
        c.extend(e);
    }
    std::fs::write(&path, conf.to_string()).expect("write conf");
    path
}
