//! Issue 16's figures: the CPU of streaming s1g with `store_layer_infos` against without (and
//! the wall time against `tar -cf - | cat`), and pushes of the s300 image to a local
//! docker-registry with `--format registry` against `stream-layered > file; skopeo copy` (this skopeo refuses a pipe): a first
//! push, and a second one after one layer changed.
//! The push rows are skipped, with a message, when docker-registry or skopeo is absent.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{in_store, sh, Ctx};

/// Adds the registry rows.
pub fn bench(ctx: &mut Ctx) -> Result<()> {
    cpu_rows(ctx)?;
    let missing: Vec<&str> = ["docker-registry", "skopeo", "jq"]
        .into_iter()
        .filter(|p| !on_path(p))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "bench: registry push rows skipped: {} not installed",
            missing.join(", ")
        );
        return Ok(());
    }
    push_rows(ctx)
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a bash script and returns its wall time and its children's CPU (user + sys) seconds.
fn timed_cpu(script: &str) -> Result<(f64, f64)> {
    let start = Instant::now();
    let out = Command::new("bash")
        .args([
            "-c",
            // `times` in this shell: in a pipeline's subshell its children's times would be 0.
            &format!("set -euo pipefail\n{script}\ntimes"),
        ])
        .stderr(Stdio::null())
        .output()
        .context("bash")?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("benchmark command failed: {script}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let cpu = line
        .split_whitespace()
        .map(bash_time)
        .sum::<Option<f64>>()
        .with_context(|| format!("bash `times` printed {line:?}"))?;
    Ok((wall, cpu))
}

/// Seconds of one of bash's `times` fields (`1m2.345s`).
fn bash_time(field: &str) -> Option<f64> {
    let (m, s) = field.strip_suffix('s')?.split_once('m')?;
    Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Best wall time and best CPU of `runs` runs.
fn best_cpu(runs: usize, script: &str) -> Result<(f64, f64)> {
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..runs {
        let (w, c) = timed_cpu(script)?;
        best = (best.0.min(w), best.1.min(c));
    }
    Ok(best)
}

/// Writes `conf` with `store_layer_infos` from `stream-layered --layer-info` added, as the Nix
/// side does (the conf's text kept, one key added before its closing brace); returns its path.
fn fed_conf(ctx: &Ctx, store: &Path, conf: &Path, name: &str) -> Result<String> {
    let lines = ctx.w(&format!("{name}.infos"));
    let sl = ctx.tool("stream-layered");
    let conf = conf.display().to_string();
    sh(&in_store(
        store,
        &format!(
            "n=$(jq '.store_layers | length' {conf}); for i in $(seq 1 $n); do {sl} {conf} --layer-info $i; done > {lines}"
        ),
    ))?;
    let infos = fs::read_to_string(&lines).with_context(|| lines.clone())?;
    let text = fs::read_to_string(&conf).with_context(|| conf.clone())?;
    let Some(body) = text.trim_end().strip_suffix('}') else {
        bail!("{conf}: not a JSON object");
    };
    let list: Vec<&str> = infos.lines().collect();
    let out = ctx.w(&format!("{name}.json"));
    fs::write(
        &out,
        format!("{body},\"store_layer_infos\":[{}]}}\n", list.join(",")),
    )?;
    Ok(out)
}

/// (a) s1g streamed with and without infos: CPU seconds, and wall time against tar | cat.
fn cpu_rows(ctx: &mut Ctx) -> Result<()> {
    let s1g = ctx.store("s1g");
    let conf = ctx.conf("s1g");
    let fed = fed_conf(ctx, &s1g, &conf, "s1g-fed")?;
    let sl = ctx.tool("stream-layered");
    let (t_tar, c_tar) = best_cpu(
        2,
        &in_store(&s1g, "tar -C /nix/store -cf - . | cat > /dev/null"),
    )?;
    ctx.push(
        "registry: GNU tar of the s1g store | cat (floor)",
        t_tar,
        None,
        format!("{c_tar:.2} s CPU"),
    );
    let plain = format!("{sl} {} > /dev/null 2>&1", conf.display());
    let (t_plain, c_plain) = best_cpu(2, &in_store(&s1g, &plain))?;
    ctx.push(
        "stream-layered s1g, no infos",
        t_plain,
        None,
        format!(
            "{c_plain:.2} s CPU (user+sys); {:.2}x tar's wall time",
            t_plain / t_tar
        ),
    );
    let (t_fed, c_fed) = best_cpu(2, &in_store(&s1g, &format!("{sl} {fed} > /dev/null 2>&1")))?;
    ctx.push(
        "stream-layered s1g, store_layer_infos",
        t_fed,
        None,
        format!(
            "{c_fed:.2} s CPU (user+sys), {:.2}x the CPU without infos; {:.2}x tar's wall time",
            c_fed / c_plain,
            t_fed / t_tar
        ),
    );
    Ok(())
}

/// A docker-registry on 127.0.0.1 storing under `dir`, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Result<Registry> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        fs::create_dir_all(dir.join("data"))?;
        let conf = dir.join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        fs::write(&conf, yaml)?;
        let log = fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&conf)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("docker-registry")?;
        let reg = Registry { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("docker-registry never listened on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(reg)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pushes being compared, with what they need.
struct Pushes {
    sl: String,
    cache: String,
    ours: u16,
    skopeo: u16,
    /// The temporary docker-archive of the skopeo pipeline.
    archive: String,
}

impl Pushes {
    fn ours(&self, store: &Path, conf: &str, tag: &str) -> Result<f64> {
        let script = format!(
            "XDG_CACHE_HOME={} {} {conf} --format registry --tls-verify=false --output docker://127.0.0.1:{}/s300:{tag}",
            self.cache, self.sl, self.ours
        );
        Ok(timed_cpu(&in_store(store, &script))?.0)
    }

    /// This skopeo refuses `docker-archive:/dev/stdin` on a pipe (`loading tar component
    /// manifest.json: archive/tar: invalid tar header`, gzip-compressed or not), so the archive
    /// goes through a file on the way, which is what skopeo would do with a stream anyway.
    fn skopeo(&self, store: &Path, conf: &str, tag: &str) -> Result<f64> {
        let script = format!(
            "{} {conf} 2>/dev/null > {tar}; skopeo copy --quiet --dest-tls-verify=false docker-archive:{tar} docker://127.0.0.1:{}/s300:{tag}; rm {tar}",
            self.sl,
            self.skopeo,
            tar = self.archive
        );
        Ok(timed_cpu(&in_store(store, &script))?.0)
    }
}

/// (b) and (c): first push of s300, then a push after one layer changed.
fn push_rows(ctx: &mut Ctx) -> Result<()> {
    let ours = Registry::start(&PathBuf::from(ctx.w("registry-ours")))?;
    let theirs = Registry::start(&PathBuf::from(ctx.w("registry-skopeo")))?;
    let p = Pushes {
        sl: ctx.tool("stream-layered"),
        cache: ctx.w("xdg-cache"),
        ours: ours.port,
        skopeo: theirs.port,
        archive: ctx.w("s300.tar"),
    };
    first_push_rows(ctx, &p)?;
    changed_push_rows(ctx, &p)
}

/// (b): into empty registries, with an empty cache.
fn first_push_rows(ctx: &mut Ctx, p: &Pushes) -> Result<()> {
    let s300 = ctx.store("s300");
    let conf = ctx.conf("s300");
    let conf_s = conf.display().to_string();
    let t_ours = p.ours(&s300, &conf_s, "first")?;
    let t_skopeo = p.skopeo(&s300, &conf_s, "first")?;
    // The same first push with infos, as a Nix build has them: into a registry and a cache of
    // its own, so that nothing is known yet.
    let fed = fed_conf(ctx, &s300, &conf, "s300-fed")?;
    let fresh = Registry::start(&PathBuf::from(ctx.w("registry-fed")))?;
    let p_fed = Pushes {
        sl: p.sl.clone(),
        cache: ctx.w("xdg-cache-fed"),
        ours: fresh.port,
        skopeo: p.skopeo,
        archive: p.archive.clone(),
    };
    let t_fed = p_fed.ours(&s300, &fed, "first")?;
    ctx.push(
        "stream-layered > file; skopeo copy docker-archive:file to docker-registry, s300 first push",
        t_skopeo,
        None,
        String::new(),
    );
    for (what, t) in [("no infos", t_ours), ("store_layer_infos", t_fed)] {
        ctx.push(
            &format!("stream-layered --format registry, s300 first push (gz, {what})"),
            t,
            None,
            format!("{:.2}x faster than skopeo (goal 1.5x)", t_skopeo / t),
        );
    }
    Ok(())
}

/// Appends `text` to the first file (by name) of the first path of store layer 1 in `store`.
fn change_one_layer(store: &Path, conf: &str, text: &str) -> Result<()> {
    let store = store.display();
    sh(&format!(
        "p=$(jq -r '.store_layers[0][0]' {conf}); f=$(find {store}/${{p##*/}} -type f | sort | head -n 1); printf '{text}' >> \"$f\""
    ))
}

/// (c): a copy of the store with one layer changed, pushed after (b)'s pushes, to the same tag.
fn changed_push_rows(ctx: &mut Ctx, p: &Pushes) -> Result<()> {
    let s300 = ctx.store("s300");
    let conf = ctx.conf("s300");
    let conf_s = conf.display().to_string();
    let changed = PathBuf::from(ctx.w("s300-changed"));
    sh(&format!("cp -a {} {}", s300.display(), changed.display()))?;
    change_one_layer(&changed, &conf_s, "changed")?;
    let fed = fed_conf(ctx, &changed, &conf, "s300-changed-fed")?;
    // Under the first push's tag, as a rebuilt image is pushed again: the tag's manifest
    // then tells which blobs are there.
    let t_fed = p.ours(&changed, &fed, "first")?;
    let t_skopeo = p.skopeo(&changed, &conf_s, "first")?;
    // The same file changed again, pushed without infos: every layer is read for its digest.
    change_one_layer(&changed, &conf_s, "again")?;
    let t_plain = p.ours(&changed, &conf_s, "first")?;
    ctx.push(
        "stream-layered > file; skopeo copy, s300 after one layer changed",
        t_skopeo,
        None,
        String::new(),
    );
    for (what, t, goal) in [
        ("store_layer_infos", t_fed, " (goal 20x)"),
        ("no infos", t_plain, ""),
    ] {
        ctx.push(
            &format!("stream-layered --format registry, one layer changed, {what}"),
            t,
            None,
            format!("{:.1}x faster than skopeo{goal}", t_skopeo / t),
        );
    }
    Ok(())
}
