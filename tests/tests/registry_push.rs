//! `stream-layered --format registry` against real components: Debian's `docker-registry` on
//! 127.0.0.1 (plain, with htpasswd basic auth, and with token auth served by a small loopback
//! token endpoint below), skopeo checking the pushed image digest by digest, podman pulling and
//! running it. A counting proxy between the tool and the registry counts the blob uploads (and
//! injects 5xx answers); a registry on a tiny tmpfs has a full disk.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use pipeline_tests::{
    busybox_image_inputs, ok, require, require_root, with_store, Podman, TempDir,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn available() -> bool {
    require_root()
        && require("docker-registry")
        && require("skopeo")
        && require("podman")
        && require("htpasswd")
        && require("openssl")
        && require("busybox")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port {port} never opened"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// How the registry authenticates.
enum Auth {
    None,
    Htpasswd(PathBuf),
    Token { realm: String, cert: PathBuf },
}

/// A docker-registry process on 127.0.0.1, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    /// Starts a registry storing under `dir/data`; `disk` is a tmpfs size for a full disk.
    fn start(dir: &Path, auth: Auth, disk: Option<&str>) -> Registry {
        let port = free_port();
        let data = dir.join("data");
        fs::create_dir_all(&data).unwrap();
        let auth = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd(f) => format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                f.display()
            ),
            Auth::Token { realm, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let conf = dir.join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            data.display()
        );
        fs::write(&conf, yaml).unwrap();
        let log = fs::File::create(dir.join("registry.log")).unwrap();
        let mount = disk.map_or(String::new(), |size| {
            format!(
                "mount -t tmpfs -o size={size} tmpfs '{}' && ",
                data.display()
            )
        });
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "{mount}exec docker-registry serve '{}'",
                conf.display()
            ))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        wait_for_port(port);
        Registry { child, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads an HTTP request head (up to the blank line); returns it and any bytes read past it.
fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((text(&buf), rest));
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

type Fault = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// A loopback HTTP proxy in front of a registry, one request per connection: it logs each
/// request's method and path, and answers 500 to those `fault` picks instead of forwarding.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<(String, String)>>>,
    fault: Arc<Mutex<Fault>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let fault: Arc<Mutex<Fault>> = Arc::new(Mutex::new(Box::new(|_: &str, _: &str| false)));
        let (l, f) = (log.clone(), fault.clone());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (l, f) = (l.clone(), f.clone());
                thread::spawn(move || forward(conn, upstream, &l, &f));
            }
        });
        Proxy { port, log, fault }
    }

    fn requests(&self, method: &str, path_part: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(m, p)| m == method && p.contains(path_part))
            .count()
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }
}

fn forward(
    mut client: TcpStream,
    upstream: u16,
    log: &Mutex<Vec<(String, String)>>,
    fault: &Mutex<Fault>,
) {
    // A TLS handshake (a client probing for https) is refused at once, as Go's server does.
    let mut first = [0u8; 1];
    if client.peek(&mut first).is_err() || first[0] == 0x16 {
        return;
    }
    let Some((head, rest)) = read_head(&mut client) else {
        return;
    };
    let mut words = head.split_whitespace();
    let (method, path) = (
        words.next().unwrap_or("").to_string(),
        words.next().unwrap_or("").to_string(),
    );
    log.lock().unwrap().push((method.clone(), path.clone()));
    let faulty = (fault.lock().unwrap())(&method, &path);
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let _ = up.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes());
    let _ = up.write_all(&rest);
    let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    let body = thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
    });
    if faulty {
        // The registry takes the request (and the whole body); the client hears a 500.
        let _ = std::io::copy(&mut up, &mut std::io::sink());
        let _ = client.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    } else {
        let _ = std::io::copy(&mut up, &mut client);
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
    let _ = body.join();
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(h)) => {
                out.push(u8::from_str_radix(&text(h), 16).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    text(&out)
}

/// A loopback token endpoint for the registry's token auth: it checks basic credentials and
/// hands out RS256 JWTs (signed by openssl with a throwaway key whose certificate the registry
/// trusts) granting what the scope asks.
struct TokenServer {
    realm: String,
    cert: PathBuf,
}

impl TokenServer {
    fn start(dir: &Path, user: &'static str, password: &'static str) -> TokenServer {
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        ok(&out, "openssl req");
        let pem = fs::read_to_string(&cert).unwrap();
        let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let Some((head, _)) = read_head(&mut conn) else {
                    continue;
                };
                let reply = token_reply(&head, &key, &der_b64, user, password);
                let _ = conn.write_all(reply.as_bytes());
                let _ = conn.shutdown(Shutdown::Both);
            }
        });
        TokenServer {
            realm: format!("http://127.0.0.1:{port}/token"),
            cert,
        }
    }
}

fn token_reply(head: &str, key: &Path, x5c: &str, user: &str, password: &str) -> String {
    let want = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let authorized = head.lines().any(|l| {
        l.to_ascii_lowercase().trim() == format!("authorization: {}", want.to_ascii_lowercase())
    });
    if !authorized {
        return "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .into();
    }
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "scope" {
            let scope = percent_decode(v);
            let parts: Vec<&str> = scope.split(':').collect();
            if let [kind, name, actions] = parts.as_slice() {
                access.push(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}));
            }
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = json!({
        "iss": "test-issuer", "sub": user, "aud": "test-registry", "exp": now + 3600,
        "nbf": now - 60, "iat": now, "jti": format!("t{now}"), "access": access
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let sig = openssl.wait_with_output().unwrap().stdout;
    let body = json!({"token": format!("{signing_input}.{}", b64url(&sig))}).to_string();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Writes an auth file holding `user:password` for `host`.
fn auth_file(path: &Path, host: &str, user: &str, password: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs::write(path, json!({"auths": {host: {"auth": auth}}}).to_string()).unwrap();
}

/// Pushes `conf` (its store on /nix/store) to `dest` with `flags`; `env` is a shell prefix.
/// HOME, the cache and the runtime folder are the test's own.
fn push(tmp: &TempDir, store: &Path, conf: &Path, dest: &str, env: &str, flags: &str) -> Output {
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let script = format!(
        "export HOME='{h}' XDG_CACHE_HOME='{h}/cache' XDG_RUNTIME_DIR='{h}/run'; unset REGISTRY_AUTH_FILE; {env}\n\
         stream-layered '{}' --format registry --output '{dest}' --tls-verify=false {flags}",
        conf.display(),
        h = home.display()
    );
    with_store(store, &script, &tmp.0)
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs")
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The config member name of the docker-archive stream of `conf` (`<sha256>.json`).
fn archive_config(tmp: &TempDir, store: &Path, conf: &Path) -> String {
    let out = with_store(
        store,
        &format!(
            "stream-layered '{}' 2>/dev/null | tar -xOf - manifest.json",
            conf.display()
        ),
        &tmp.0,
    );
    ok(&out, "docker-archive manifest");
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    m[0]["Config"].as_str().unwrap().to_string()
}

#[test]
fn a_pushed_image_verifies_runs_and_a_second_push_uploads_only_what_changed() {
    if !available() {
        return;
    }
    let tmp = TempDir::new("registry-plain");
    let reg = Registry::start(&tmp.join("reg"), Auth::None, None);
    let proxy = Proxy::start(reg.port);
    let (store, conf) =
        busybox_image_inputs(&tmp.join("one"), "demo:one", "hello from the registry");
    let dest = format!("docker://127.0.0.1:{}/demo/app:v1", proxy.port);
    let out = push(&tmp, &store, &conf, &dest, "", "");
    ok(&out, "first push");
    assert_eq!(
        proxy.requests("PATCH", "/blobs/uploads/"),
        3,
        "three layer blobs uploaded"
    );
    let digest = text(&out.stdout).trim().to_string();
    let src = format!("docker://127.0.0.1:{}/demo/app:v1", reg.port);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &src]);
    ok(&raw, "skopeo inspect --raw");
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw.stdout)),
        digest,
        "the manifest pushed is the one printed"
    );
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The config is the docker-archive's, byte for byte.
    let config = archive_config(&tmp, &store, &conf);
    assert_eq!(
        manifest["config"]["digest"],
        format!("sha256:{}", config.trim_end_matches(".json"))
    );
    let copy = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &src,
        &format!("oci:{}:t", tmp.join("copy").display()),
    ]);
    ok(&copy, "skopeo copy (checks every digest and size)");
    let podman = Podman::new(&tmp.join("podman"));
    let image = format!("127.0.0.1:{}/demo/app:v1", reg.port);
    ok(
        &podman.run(&["pull", "-q", "--tls-verify=false", &image]),
        "podman pull",
    );
    let run = podman.run_container(&image, &[]);
    ok(&run, "podman run");
    assert_eq!(text(&run.stdout).trim(), "hello from the registry");

    // The same image again: every blob is known (the cache) and listed by the tag's manifest
    // (one GET, no HEAD), none uploaded.
    proxy.clear();
    let out = push(&tmp, &store, &conf, &dest, "", "");
    ok(&out, "second push");
    assert_eq!(proxy.requests("PATCH", "/blobs/uploads/"), 0);
    assert_eq!(proxy.requests("POST", "/blobs/uploads/"), 0);
    assert_eq!(proxy.requests("GET", "/manifests/v1"), 1);
    assert_eq!(
        proxy.requests("HEAD", "/blobs/"),
        0,
        "the tag lists every blob"
    );
    assert!(
        text(&out.stderr).contains("0 layers uploaded, 3 skipped"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), digest);

    // One layer changed (the app's script): that layer is uploaded, and the new config.
    let (store2, conf2) = busybox_image_inputs(&tmp.join("two"), "demo:two", "hello again");
    proxy.clear();
    let dest2 = format!("docker://127.0.0.1:{}/demo/app:v2", proxy.port);
    let out = push(&tmp, &store2, &conf2, &dest2, "", "");
    ok(&out, "push after one layer changed");
    assert_eq!(
        proxy.requests("PATCH", "/blobs/uploads/"),
        1,
        "one layer blob uploaded"
    );
    assert_eq!(
        proxy.requests("PUT", "/blobs/uploads/"),
        2,
        "that layer and the config"
    );
    assert!(
        text(&out.stderr).contains("1 layers uploaded, 2 skipped"),
        "{}",
        text(&out.stderr)
    );

    // Uncompressed layers: their digests are the config's diff_ids.
    let out = push(
        &tmp,
        &store,
        &conf,
        &format!("docker://127.0.0.1:{}/demo/plain:v1", reg.port),
        "",
        "--layer-compression none",
    );
    ok(&out, "uncompressed push");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://127.0.0.1:{}/demo/plain:v1", reg.port),
    ]);
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    let cfg = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://127.0.0.1:{}/demo/plain:v1", reg.port),
    ]);
    let cfg: Value = serde_json::from_slice(&cfg.stdout).unwrap();
    let digests: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let diff_ids: Vec<&Value> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(digests, diff_ids);
}

#[test]
fn basic_and_token_auth_use_the_auth_files_and_refuse_bad_credentials() {
    if !available() {
        return;
    }
    let tmp = TempDir::new("registry-auth");
    let (store, conf) = busybox_image_inputs(&tmp.join("img"), "demo:auth", "hi");
    let htpasswd = tmp.join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["alice", "s3cret"])
        .output()
        .unwrap();
    ok(&out, "htpasswd");
    let basic = Registry::start(&tmp.join("basic"), Auth::Htpasswd(htpasswd), None);
    let tokens = TokenServer::start(&tmp.0, "bob", "t0ken");
    let bearer = Registry::start(
        &tmp.join("bearer"),
        Auth::Token {
            realm: tokens.realm.clone(),
            cert: tokens.cert.clone(),
        },
        None,
    );
    for (port, user, password, file_var) in [
        (basic.port, "alice", "s3cret", "REGISTRY_AUTH_FILE"),
        (bearer.port, "bob", "t0ken", "XDG_RUNTIME_DIR"),
    ] {
        let host = format!("127.0.0.1:{port}");
        let dest = format!("docker://{host}/team/app:v1");
        let out = push(&tmp, &store, &conf, &dest, "", "");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("access denied (401) anonymously (no credentials for"),
            "{err}"
        );
        let (env, file) = match file_var {
            "REGISTRY_AUTH_FILE" => (
                format!(
                    "export REGISTRY_AUTH_FILE='{}';",
                    tmp.join("auth.json").display()
                ),
                tmp.join("auth.json"),
            ),
            _ => (String::new(), tmp.join("home/run/containers/auth.json")),
        };
        auth_file(&file, &host, user, "wrong");
        let out = push(&tmp, &store, &conf, &dest, &env, "");
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "with the credentials of \"{user}\" from {}",
                file.display()
            )),
            "{err}"
        );
        let creds = format!("{user}:{password}");
        let gone = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{host}/team/app:v1"),
        ]);
        assert!(!gone.status.success(), "no tag after refused pushes");
        auth_file(&file, &host, user, password);
        let out = push(&tmp, &store, &conf, &dest, &env, "");
        ok(&out, &format!("push with {user}'s credentials"));
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{host}/team/app:v1"),
        ]);
        ok(&raw, "skopeo inspect with credentials");
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw.stdout)),
            text(&out.stdout).trim()
        );
    }
}

#[test]
fn faults_exit_1_with_a_clear_message_and_leave_no_tag() {
    if !available() {
        return;
    }
    let tmp = TempDir::new("registry-faults");
    let (store, conf) = busybox_image_inputs(&tmp.join("img"), "demo:faults", "hi");
    // Nothing listens there.
    let out = push(
        &tmp,
        &store,
        &conf,
        &format!("docker://127.0.0.1:{}/x/y:z", free_port()),
        "",
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach the registry"),
        "{}",
        text(&out.stderr)
    );

    // Every blob upload answered 500 (after the retries, the push gives up).
    let reg = Registry::start(&tmp.join("reg"), Auth::None, None);
    let proxy = Proxy::start(reg.port);
    proxy.set_fault(Box::new(|m: &str, _: &str| m == "PATCH"));
    let out = push(
        &tmp,
        &store,
        &conf,
        &format!("docker://127.0.0.1:{}/x/y:z", proxy.port),
        "",
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("the registry answered 500"), "{err}");
    assert!(proxy.requests("PATCH", "/blobs/uploads/") >= 4, "retried");
    assert_eq!(
        proxy.requests("PUT", "/manifests/"),
        0,
        "no manifest, so no tag"
    );
    let gone = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://127.0.0.1:{}/x/y:z", reg.port),
    ]);
    assert!(!gone.status.success());

    // A layer that changed since its store_layer_infos entry was computed: the push stops at
    // that layer, naming it, and the tag is never written.
    let infos = with_store(
        &store,
        &format!(
            "for n in 1 2; do stream-layered '{}' --layer-info $n; done",
            conf.display()
        ),
        &tmp.0,
    );
    ok(&infos, "stream-layered --layer-info");
    let mut fed: Value = serde_json::from_slice(&fs::read(&conf).unwrap()).unwrap();
    fed["store_layer_infos"] = text(&infos.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect::<Vec<Value>>()
        .into();
    let fed_conf = tmp.join("fed.json");
    fs::write(&fed_conf, fed.to_string()).unwrap();
    let app = fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-app"))
        .unwrap()
        .join("bin/app");
    let script = fs::read_to_string(&app).unwrap();
    fs::write(&app, script.replace("'hi'", "'HI'")).unwrap();
    let stale = format!("docker://127.0.0.1:{}/x/stale:z", reg.port);
    let out = push(&tmp, &store, &fed_conf, &stale, "", "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("layer 2 does not match its store_layer_infos entry"),
        "{err}"
    );
    let gone = skopeo(&["inspect", "--raw", "--tls-verify=false", &stale]);
    assert!(!gone.status.success(), "no tag on a stale layer");

    // A registry whose disk is full.
    let full = Registry::start(&tmp.join("full"), Auth::None, Some("64k"));
    let out = push(
        &tmp,
        &store,
        &conf,
        &format!("docker://127.0.0.1:{}/x/y:z", full.port),
        "",
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the registry answered"),
        "{}",
        text(&out.stderr)
    );
    let gone = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://127.0.0.1:{}/x/y:z", full.port),
    ]);
    assert!(!gone.status.success(), "no tag on a partial image");
}

#[test]
fn registry_options_are_checked_before_any_work() {
    let tmp = TempDir::new("registry-usage");
    let conf = tmp.join("missing.json");
    let c = conf.to_str().unwrap();
    for args in [
        vec![c, "--format", "registry", "--output", "oci:x"],
        vec![c, "--format", "registry", "--output", "docker://host"],
        vec![
            c,
            "--format",
            "registry",
            "--output",
            "docker://host/Repo:t",
        ],
        vec![
            c,
            "--format",
            "registry",
            "--output",
            "docker://host/r",
            "--compress",
            "gz",
        ],
        vec![c, "--tls-verify=false"],
        vec![c, "--format", "registry"],
    ] {
        let out = Command::new(pipeline_tests::tool("stream-layered"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
