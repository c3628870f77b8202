//! The two header dialects checked byte for byte against their oracles:
//! Python's `tarfile` (PAX) and GNU tar 1.34 (gnu). Both programs are on every machine;
//! under CI a missing one is a failure, elsewhere the test says so and passes.

// Integration tests: a failed step fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use dockertools_common::tar::{gnu, pax, Header, DIR, REGULAR, SYMLINK};

/// Compares two archives, reporting the first differing byte instead of dumping both.
fn same_bytes(ours: &[u8], theirs: &[u8], what: &str) {
    if ours == theirs {
        return;
    }
    let at = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(theirs.len()));
    let show = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.saturating_sub(16)..(at + 16).min(b.len())]).into_owned()
    };
    panic!("{what}: differs at byte {at} (block {}, offset {}): ours {:?} theirs {:?} (lengths {} and {})", at / 512, at % 512, show(ours), show(theirs), ours.len(), theirs.len());
}

fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is required under CI"
        );
        eprintln!("{program} not found: oracle comparison not run");
    }
    ok
}

struct PyCase<'a> {
    name: &'a [u8],
    typeflag: u8,
    size: u64,
    mtime: i64,
    uid: u64,
    linkname: &'a [u8],
    uname: &'a str,
}

/// Python writes one header with the given fields; returns its header blocks.
fn python_header(c: &PyCase<'_>) -> Vec<u8> {
    let script = r#"
import sys, tarfile, os
name = os.fsdecode(bytes.fromhex(sys.argv[1]))
link = os.fsdecode(bytes.fromhex(sys.argv[6]))
ti = tarfile.TarInfo(name)
ti.type = sys.argv[2].encode()
ti.size = int(sys.argv[3]); ti.mtime = int(sys.argv[4]); ti.uid = int(sys.argv[5])
ti.linkname = link; ti.uname = sys.argv[7]; ti.gname = "grp"; ti.mode = 0o755
sys.stdout.buffer.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
"#;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &hex(c.name),
            &(c.typeflag as char).to_string(),
            &c.size.to_string(),
            &c.mtime.to_string(),
            &c.uid.to_string(),
            &hex(c.linkname),
            c.uname,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn pax_dialect_matches_python_tarfile() {
    if !have("python3") {
        return;
    }
    let long = "d/".repeat(60) + "file";
    let x100 = "x".repeat(100);
    let x101 = "x".repeat(101);
    let case = |name: &'static [u8]| PyCase {
        name,
        typeflag: REGULAR,
        size: 5,
        mtime: 1,
        uid: 0,
        linkname: b"",
        uname: "root",
    };
    let cases: Vec<PyCase<'_>> = vec![
        PyCase {
            size: 1234,
            ..case(b"/nix/store/abc-hello/bin/hello")
        },
        PyCase {
            typeflag: DIR,
            size: 0,
            ..case(b"/nix/store/")
        },
        PyCase {
            name: long.as_bytes(),
            ..case(b"")
        },
        PyCase {
            name: x100.as_bytes(),
            ..case(b"")
        },
        PyCase {
            name: x101.as_bytes(),
            ..case(b"")
        },
        PyCase {
            name: "/nix/store/ünïcødé".as_bytes(),
            ..case(b"")
        },
        case(b"/nix/store/bad-\xff\xfe-name"),
        PyCase {
            typeflag: SYMLINK,
            size: 0,
            linkname: long.as_bytes(),
            ..case(b"/l")
        },
        PyCase {
            size: 9 << 30,
            mtime: -5,
            uid: 3_000_000,
            uname: "a-very-long-user-name-of-more-than-32-chars",
            ..case(b"/big")
        },
        PyCase {
            size: 0,
            mtime: 8_589_934_592,
            uid: 7,
            uname: "ñ",
            ..case(b"/u")
        },
    ];
    for c in &cases {
        let h = Header {
            name: c.name.to_vec(),
            mode: 0o755,
            uid: c.uid,
            size: c.size,
            mtime: c.mtime,
            typeflag: c.typeflag,
            linkname: c.linkname.to_vec(),
            uname: c.uname.as_bytes().to_vec(),
            gname: b"grp".to_vec(),
            ..Header::default()
        };
        let mut ours = Vec::new();
        pax::encode(&h, &mut ours);
        same_bytes(
            &ours,
            &python_header(c),
            &format!("PAX header of {:?}", String::from_utf8_lossy(c.name)),
        );
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dialects-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

#[test]
fn gnu_dialect_matches_gnu_tar() {
    if !have("tar") {
        return;
    }
    let dir = temp_dir("gnu");
    let long_name = "n".repeat(120);
    let target = "t".repeat(150);
    // "./" + 98 bytes = 100 bytes: the longest name GNU tar stores without a long-name record.
    let exact = "e".repeat(98);
    let link100 = "u".repeat(100);
    std::os::unix::fs::symlink(&link100, dir.join("link100")).expect("symlink");
    std::fs::write(dir.join(&long_name), b"hello").expect("write");
    std::os::unix::fs::symlink(&target, dir.join("link")).expect("symlink");
    std::fs::write(dir.join(&exact), b"").expect("write");
    for numeric in [false, true] {
        let mut args = vec![
            "--sort=name",
            "--mtime=@315532800",
            "--owner=0",
            "--group=0",
            "--hard-dereference",
            "-cf",
            "-",
            ".",
        ];
        if numeric {
            args.insert(0, "--numeric-owner");
        }
        let out = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(&args)
            .output()
            .expect("tar runs");
        assert!(out.status.success());
        let opts = gnu::GnuOptions {
            numeric_owner: numeric,
        };
        let names: &[u8] = if numeric { b"" } else { b"root" };
        let base = Header {
            mtime: 315532800,
            uname: names.to_vec(),
            gname: names.to_vec(),
            ..Header::default()
        };
        let entries = [
            Header {
                name: b"./".to_vec(),
                mode: mode_of(&dir),
                typeflag: DIR,
                ..base.clone()
            },
            Header {
                name: format!("./{exact}").into_bytes(),
                mode: mode_of(&dir.join(&exact)),
                typeflag: REGULAR,
                ..base.clone()
            },
            Header {
                name: b"./link".to_vec(),
                mode: 0o777,
                typeflag: SYMLINK,
                linkname: target.clone().into_bytes(),
                ..base.clone()
            },
            Header {
                name: b"./link100".to_vec(),
                mode: 0o777,
                typeflag: SYMLINK,
                linkname: link100.clone().into_bytes(),
                ..base.clone()
            },
            Header {
                name: format!("./{long_name}").into_bytes(),
                mode: mode_of(&dir.join(&long_name)),
                size: 5,
                typeflag: REGULAR,
                ..base.clone()
            },
        ];
        let mut ours = Vec::new();
        for h in &entries {
            gnu::encode(h, opts, &mut ours).expect("fits");
        }
        ours.extend_from_slice(b"hello");
        ours.resize(ours.len() + 507, 0);
        same_bytes(
            &ours,
            &out.stdout[..ours.len().min(out.stdout.len())],
            &format!("numeric_owner={numeric}"),
        );
        assert!(out.stdout[ours.len()..].iter().all(|&b| b == 0));
        assert_eq!(out.stdout.len() % 10240, 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gnu_base256_for_large_ids_and_negative_times() {
    if !have("tar") {
        return;
    }
    let dir = temp_dir("b256");
    std::fs::write(dir.join("f"), b"").expect("write");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args([
            "--mtime=@-5",
            "--owner=u:12345678",
            "--group=g:0",
            "-cf",
            "-",
            "f",
        ])
        .output()
        .expect("tar runs");
    let h = Header {
        name: b"f".to_vec(),
        mode: mode_of(&dir.join("f")),
        uid: 12345678,
        mtime: -5,
        typeflag: REGULAR,
        uname: b"u".to_vec(),
        gname: b"g".to_vec(),
        ..Header::default()
    };
    let mut ours = Vec::new();
    gnu::encode(&h, gnu::GnuOptions::default(), &mut ours).expect("fits");
    same_bytes(&ours, &out.stdout[..512], "base-256 header");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gnu_owner_names_over_31_bytes_are_cut_as_gnu_tar_cuts_them() {
    if !have("tar") {
        return;
    }
    let dir = temp_dir("longowner");
    std::fs::write(dir.join("f"), b"").expect("write");
    let (user, group) = ("a".repeat(40), "b".repeat(32));
    let out = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["--mtime=@1", "-cf", "-", "f"])
        .arg(format!("--owner={user}:5"))
        .arg(format!("--group={group}:6"))
        .output()
        .expect("tar runs");
    let h = Header {
        name: b"f".to_vec(),
        mode: mode_of(&dir.join("f")),
        uid: 5,
        gid: 6,
        mtime: 1,
        typeflag: REGULAR,
        uname: user.into_bytes(),
        gname: group.into_bytes(),
        ..Header::default()
    };
    let mut ours = Vec::new();
    gnu::encode(&h, gnu::GnuOptions::default(), &mut ours).expect("fits");
    same_bytes(&ours, &out.stdout[..512], "owner names cut to 31 bytes");
    let _ = std::fs::remove_dir_all(&dir);
}
