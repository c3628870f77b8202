//! dockertools-compress: the compressors of dockerTools (`pigz -p$NIX_BUILD_CORES -nTR`,
//! `pigz -d`, `zstd -T$NIX_BUILD_CORES`, `zstd -d`) as one in-process program, so that an
//! overlay can hand dockerTools a `pigz` and a `zstd` that are these tools.
//!
//! Input: standard input. Output: standard output, compressed by the shared compressors
//! (deterministic: the bytes depend on the input, the format and the level, never on the thread
//! count) or decompressed and verified (gzip CRC32 and length of every member, zstd checksums,
//! no trailing garbage).
//! Invoked as `pigz` or `zstd` (a symlink), it reads that program's flags; invoked by its own name
//! it takes `gz|zstd` first. Only the stdin-to-stdout use is supported: a file operand is a usage
//! error, as is any flag the program does not know, so nothing is ever silently ignored.
//! The gzip bytes differ from pigz's (other block boundaries), the zstd bytes may differ from
//! the zstd command's; every reader reads both.

use std::io::{self, Read, Write};

use dockertools_common::compress::{decompress, Compression, Compressor};

/// A flag or operand this program does not take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Usage(pub String);

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Job {
    /// The format.
    pub kind: Compression,
    /// Decompress instead.
    pub decompress: bool,
    /// Compression level.
    pub level: i32,
    /// Threads (`-p N`, `-T N`); `None` or 0 means rayon's default.
    pub threads: Option<usize>,
}

fn number(flag: &str, v: &str) -> Result<usize, Usage> {
    v.parse()
        .map_err(|_| Usage(format!("{flag}: {v:?} is not a number")))
}

/// Reads pigz's flags: `-d`, `-p N`, `-#` (1-9), and `-n -N -T -R -c -k -f -q`, which change
/// nothing here (no name or time is ever stored; output always goes to stdout).
pub fn pigz_args(args: &[String]) -> Result<Job, Usage> {
    let mut job = Job {
        kind: Compression::Gzip,
        decompress: false,
        level: 6,
        threads: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => {}
            "--decompress" | "--uncompress" => job.decompress = true,
            "--fast" => job.level = 1,
            "--best" => job.level = 9,
            "--processes" => {
                let v = it
                    .next()
                    .ok_or_else(|| Usage("--processes needs N".into()))?;
                job.threads = Some(number("--processes", v)?);
            }
            "--no-name" | "--name" | "--no-time" | "--rsyncable" | "--stdout" | "--to-stdout"
            | "--keep" | "--force" | "--quiet" => {}
            s if s.starts_with("--") || !s.starts_with('-') => {
                return Err(Usage(format!("{s}: not supported (stdin to stdout only)")))
            }
            s => pigz_cluster(&s[1..], &mut it, &mut job)?,
        }
    }
    Ok(job)
}

/// One cluster of short pigz flags such as `-nTR` or `-p4`.
fn pigz_cluster<'a>(
    cluster: &str,
    rest: &mut impl Iterator<Item = &'a String>,
    job: &mut Job,
) -> Result<(), Usage> {
    for (i, c) in cluster.char_indices() {
        match c {
            'd' => job.decompress = true,
            'n' | 'N' | 'T' | 'R' | 'c' | 'k' | 'f' | 'q' => {}
            '1'..='9' => job.level = i32::from(c as u8 - b'0'),
            'p' => {
                let attached = &cluster[i + 1..];
                let v = if attached.is_empty() {
                    rest.next()
                        .map(String::as_str)
                        .ok_or_else(|| Usage("-p needs N".into()))?
                } else {
                    attached
                };
                job.threads = Some(number("-p", v)?);
                return Ok(());
            }
            other => return Err(Usage(format!("-{other}: not supported"))),
        }
    }
    Ok(())
}

/// Reads zstd's flags: `-d`, `-T#` (or `--threads=#`), `-#` (1-19), and `-q -c -f -k
/// --no-progress`, which change nothing here.
pub fn zstd_args(args: &[String]) -> Result<Job, Usage> {
    let mut job = Job {
        kind: Compression::Zstd,
        decompress: false,
        level: 3,
        threads: None,
    };
    for a in args {
        let a = a.as_str();
        if let Some(n) = a
            .strip_prefix("--threads=")
            .or_else(|| a.strip_prefix("-T"))
        {
            job.threads = Some(number("-T", n)?);
            continue;
        }
        match a {
            "-" | "-q" | "-c" | "-f" | "-k" | "--quiet" | "--stdout" | "--force" | "--keep"
            | "--no-progress" => {}
            "-d" | "--decompress" | "--uncompress" => job.decompress = true,
            s => match s.strip_prefix('-').map(str::parse::<i32>) {
                Some(Ok(level)) if (1..=19).contains(&level) => job.level = level,
                _ => return Err(Usage(format!("{s}: not supported (stdin to stdout only)"))),
            },
        }
    }
    Ok(job)
}

/// Reads this program's own form: `gz|zstd [-d] [-#]`.
pub fn own_args(args: &[String]) -> Result<Job, Usage> {
    match args.split_first() {
        Some((f, rest)) if f == "gz" => pigz_args(rest),
        Some((f, rest)) if f == "zstd" => zstd_args(rest),
        _ => Err(Usage(
            "usage: dockertools-compress gz|zstd [-d] [-LEVEL] [-p N] < in > out (or run it as pigz or zstd)"
                .into(),
        )),
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or decompressing stdin failed.
    #[error("stdin: {0}")]
    Input(#[source] io::Error),
    /// Writing stdout failed.
    #[error("stdout: {0}")]
    Output(#[source] io::Error),
    /// Decompressing input that is not in the expected format.
    #[error("stdin: not {0} data")]
    NotFormat(&'static str),
}

/// Runs `job` from `input` to `output`.
pub fn run<R: Read + Send + 'static, W: Write>(job: &Job, input: R, output: W) -> Result<W, Error> {
    if job.decompress {
        let (kind, mut data) = decompress(input).map_err(Error::Input)?;
        if kind != job.kind {
            return Err(Error::NotFormat(if job.kind == Compression::Gzip {
                "gzip"
            } else {
                "zstd"
            }));
        }
        let mut output = output;
        copy(&mut data, &mut output)?;
        data.finish().map_err(Error::Input)?;
        return Ok(output);
    }
    let mut input = input;
    let mut c = Compressor::new(output, job.kind, job.level).map_err(Error::Output)?;
    copy(&mut input, &mut c)?;
    c.finish().map_err(Error::Output)
}

/// Copies all of `r` into `w`, telling read errors from write errors.
fn copy(r: &mut impl Read, w: &mut impl Write) -> Result<(), Error> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Input(e)),
        };
        w.write_all(&buf[..n]).map_err(Error::Output)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn pigz_reads_the_flags_docker_tools_passes() {
        let job = pigz_args(&args("-p4 -nTR")).unwrap();
        assert_eq!(
            (job.decompress, job.threads, job.level),
            (false, Some(4), 6)
        );
        let job = pigz_args(&args("-d -p 2")).unwrap();
        assert_eq!((job.decompress, job.threads), (true, Some(2)));
        assert_eq!(pigz_args(&args("-9")).unwrap().level, 9);
    }

    #[test]
    fn zstd_reads_the_flags_docker_tools_passes() {
        let job = zstd_args(&args("-T2")).unwrap();
        assert_eq!(
            (job.decompress, job.threads, job.level),
            (false, Some(2), 3)
        );
        let job = zstd_args(&args("-d -T0")).unwrap();
        assert_eq!((job.decompress, job.threads), (true, Some(0)));
        assert_eq!(zstd_args(&args("-19 -q")).unwrap().level, 19);
    }

    #[test]
    fn file_operands_and_unknown_flags_are_usage_errors() {
        assert!(pigz_args(&args("image.tar")).is_err());
        assert!(pigz_args(&args("-z")).is_err());
        assert!(pigz_args(&args("--recursive")).is_err());
        assert!(zstd_args(&args("image.tar")).is_err());
        assert!(zstd_args(&args("-20")).is_err());
        assert!(own_args(&args("bzip2")).is_err());
    }

    #[test]
    fn round_trips_and_refuses_the_wrong_format() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for kind in ["gz", "zstd"] {
            let job = own_args(&args(kind)).unwrap();
            let packed = run(&job, io::Cursor::new(data.clone()), Vec::new()).unwrap();
            let back = own_args(&args(&format!("{kind} -d"))).unwrap();
            let out = run(&back, io::Cursor::new(packed.clone()), Vec::new()).unwrap();
            assert_eq!(out, data);
            let other = if kind == "gz" { "zstd -d" } else { "gz -d" };
            let wrong = run(
                &own_args(&args(other)).unwrap(),
                io::Cursor::new(packed),
                Vec::new(),
            );
            assert!(matches!(wrong, Err(Error::NotFormat(_))));
        }
    }
}
