//! merge-images: several docker-archive images (plain, gzip or zstd) merged into one archive,
//! byte-identical (after decompression) to nixpkgs' `mergeImages`.
//!
//! Input: image files. Output: one archive, compressed like the last input unless told otherwise.
//! The output tar is what `mergeImages`' final `tar --sort=name --hard-dereference --owner=0
//! --group=0 --mtime=@SOURCE_DATE_EPOCH --xform s:^./:: -c .` gives for the union of the inputs:
//! GNU format, `./` first, then every folder and member sorted by path component; `manifest.json`
//! is the concatenation of the inputs' manifests and `repositories` the merge of theirs, printed as
//! `jq` prints them.
//!
//! Nothing is unpacked: a first pass reads each input's headers (plain inputs are read in place,
//! seeking over data; compressed inputs are decompressed once into an unlinked spool file beside
//! OUT so that members can be read back in output order), a second pass streams the members.
//! Memory: the member index (a few hundred bytes per member) and the JSON members.
//! Deterministic: the bytes depend only on the inputs, the mtime and the compression options.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use dockertools_common::atomic::AtomicFile;
use dockertools_common::compress::{open_decompressed, Compression, Compressor, Decompressed};
use dockertools_common::jq;
use dockertools_common::tar::reader::{ReadError, Reader};
use dockertools_common::tar::writer::{DataError, TarWriter};
use dockertools_common::tar::{self as tarfmt, gnu, Header};
use serde_json::{Map, Value};

/// Largest JSON member (`manifest.json`, `repositories`) read into memory.
const JSON_LIMIT: u64 = 64 << 20;

/// Errors of merge-images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input could not be opened or read.
    #[error("{}: {source}", .input.display())]
    Io {
        /// The input.
        input: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An input is not a readable tar (truncated, corrupt compression, garbage).
    #[error("{}: {source}", .input.display())]
    Tar {
        /// The input.
        input: PathBuf,
        /// The error.
        #[source]
        source: ReadError,
    },
    /// An entry that must not be merged (absolute, `..`, link out of the archive, device).
    #[error("{}: entry {entry:?}: {why}", .input.display())]
    Unsafe {
        /// The input.
        input: PathBuf,
        /// The entry name.
        entry: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An input without a usable `manifest.json`.
    #[error("{}: not a docker-archive: {why}", .input.display())]
    NotImage {
        /// The input.
        input: PathBuf,
        /// What is missing.
        why: String,
    },
    /// Two inputs hold different bytes (or kinds) under one path.
    #[error("entry {entry:?} differs between {} and {}", .first.display(), .second.display())]
    Conflict {
        /// The path.
        entry: String,
        /// The input that provided it first.
        first: PathBuf,
        /// The input that disagrees.
        second: PathBuf,
    },
    /// The output could not be written.
    #[error("{}: {source}", .out.display())]
    Output {
        /// The output file.
        out: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A header value does not fit.
    #[error(transparent)]
    Overflow(#[from] tarfmt::FieldOverflow),
}

/// Options.
#[derive(Clone, Debug)]
pub struct Options {
    /// mtime of every output entry (`SOURCE_DATE_EPOCH`).
    pub mtime: i64,
    /// Output compression; `None` means "like the last input".
    pub compress: Option<Compression>,
    /// Compression level; `None` is the format's default.
    pub level: Option<i32>,
}

#[derive(Clone, Debug)]
enum Kind {
    Dir,
    File {
        offset: u64,
        size: u64,
    },
    Symlink(Vec<u8>),
    /// `manifest.json` or `repositories` at the top level, written from the merged JSON.
    Generated(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Node {
    mode: u32,
    kind: Kind,
    input: usize,
}

/// Where an input's plain tar bytes can be read back at an offset.
enum Backing {
    Plain(File),
    Spool(File),
}

impl Backing {
    fn file(&self) -> &File {
        match self {
            Backing::Plain(f) | Backing::Spool(f) => f,
        }
    }
}

struct Tee<R: Read, W: Write> {
    r: R,
    w: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.w.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Splits a member name into clean components; `None` for the root itself.
fn components(name: &[u8]) -> Result<Option<Vec<Vec<u8>>>, &'static str> {
    if name.first() == Some(&b'/') {
        return Err("absolute name");
    }
    let mut parts = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("'..' in name"),
            p => parts.push(p.to_vec()),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(parts) })
}

/// Whether a symlink at `at` pointing to `target` stays inside the archive.
fn link_inside(at: &[Vec<u8>], target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut depth = at.len() as i64 - 1;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

struct Scanned {
    compression: Compression,
    backing: Backing,
    manifest: Option<Vec<u8>>,
    repositories: Option<Vec<u8>>,
}

fn scan(
    idx: usize,
    input: &Path,
    spool_dir: &Path,
    tree: &mut BTreeMap<Vec<Vec<u8>>, Node>,
    pending: &mut Vec<Duplicate>,
    inputs: &[PathBuf],
) -> Result<Scanned, Error> {
    let io_err = |source| Error::Io {
        input: input.to_path_buf(),
        source,
    };
    let tar_err = |source| Error::Tar {
        input: input.to_path_buf(),
        source,
    };
    // A compressed input is checked to its end once the tar reader is done with it.
    let mut compressed: Option<Decompressed> = None;
    let (compression, backing, mut reader) = {
        let (kind, dec) = open_decompressed(input).map_err(io_err)?;
        if kind == Compression::None {
            drop(dec);
            let f = File::open(input).map_err(io_err)?;
            let r: Box<dyn ReadSeek> = Box::new(BufReader::with_capacity(
                64 * 1024,
                f.try_clone().map_err(io_err)?,
            ));
            (kind, Backing::Plain(f), Reader::new(r))
        } else {
            // An unnamed file (O_TMPFILE): nothing is left behind, whatever happens.
            let spool = tempfile::tempfile_in(spool_dir).map_err(|source| Error::Output {
                out: spool_dir.join("(spool)"),
                source,
            })?;
            let writer = BufWriter::with_capacity(1 << 20, spool.try_clone().map_err(io_err)?);
            let dec = compressed.insert(dec);
            let r: Box<dyn ReadSeek + '_> = Box::new(NoSeek(Tee { r: dec, w: writer }));
            (kind, Backing::Spool(spool), Reader::new(r))
        }
    };
    let file_len = match &backing {
        Backing::Plain(f) => f.metadata().map_err(io_err)?.len(),
        Backing::Spool(_) => u64::MAX,
    };
    let mut manifest = None;
    let mut repositories = None;
    // Hard links resolve to files of the same input.
    let mut own_files: BTreeMap<Vec<Vec<u8>>, (u64, u64, u32)> = BTreeMap::new();
    while let Some(e) = reader.next_entry().map_err(tar_err)? {
        let unsafe_entry = |why| Error::Unsafe {
            input: input.to_path_buf(),
            entry: String::from_utf8_lossy(&e.name).into_owned(),
            why,
        };
        let Some(parts) = components(&e.name).map_err(unsafe_entry)? else {
            continue;
        };
        let mode = (e.mode as u32) & 0o7777 & !0o022;
        let kind = match e.typeflag {
            b'0' | b'7' => {
                let offset = reader.offset();
                let size = e.size as u64;
                if offset.saturating_add(size) > file_len {
                    return Err(Error::Tar {
                        input: input.to_path_buf(),
                        source: ReadError {
                            index: e.index,
                            offset: e.offset,
                            kind: dockertools_common::tar::reader::ReadErrorKind::UnexpectedEof,
                        },
                    });
                }
                if parts.len() == 1 && (parts[0] == b"manifest.json" || parts[0] == b"repositories")
                {
                    let bytes = reader.read_to_vec(JSON_LIMIT).map_err(tar_err)?;
                    if parts[0] == b"manifest.json" {
                        manifest = Some(bytes);
                    } else {
                        repositories = Some(bytes);
                    }
                    continue;
                }
                if !e.pax.iter().all(|(k, _)| !k.starts_with(b"GNU.sparse")) {
                    return Err(unsafe_entry("sparse files are not supported"));
                }
                own_files.insert(parts.clone(), (offset, size, mode));
                Kind::File { offset, size }
            }
            b'1' => {
                let target = components(&e.linkname)
                    .map_err(unsafe_entry)?
                    .ok_or_else(|| unsafe_entry("hard link to the root"))?;
                let &(offset, size, _) = own_files
                    .get(&target)
                    .ok_or_else(|| unsafe_entry("hard link to a file not in the archive"))?;
                own_files.insert(parts.clone(), (offset, size, mode));
                Kind::File { offset, size }
            }
            b'2' => {
                if !link_inside(&parts, &e.linkname) {
                    return Err(unsafe_entry("symlink points outside the archive"));
                }
                Kind::Symlink(e.linkname.clone())
            }
            b'5' => Kind::Dir,
            b'3' | b'4' => return Err(unsafe_entry("device file")),
            b'6' => return Err(unsafe_entry("FIFO")),
            _ => return Err(unsafe_entry("unsupported entry type")),
        };
        // Skip the data cheaply where the input is seekable.
        if matches!(backing, Backing::Plain(_)) {
            reader.seek_past_data().map_err(tar_err)?;
        }
        // Parents become folders (0755) unless the archive lists them.
        for depth in 1..parts.len() {
            let parent = parts[..depth].to_vec();
            match tree.get(&parent) {
                None => {
                    tree.insert(
                        parent,
                        Node {
                            mode: 0o755,
                            kind: Kind::Dir,
                            input: idx,
                        },
                    );
                }
                Some(Node {
                    kind: Kind::Dir, ..
                }) => {}
                Some(n) => {
                    return Err(Error::Conflict {
                        entry: String::from_utf8_lossy(&parent.join(&b'/')).into_owned(),
                        first: inputs[n.input].clone(),
                        second: input.to_path_buf(),
                    })
                }
            }
        }
        let node = Node {
            mode,
            kind,
            input: idx,
        };
        match tree.get(&parts) {
            None => {
                tree.insert(parts, node);
            }
            // Within one input a later member replaces an earlier one, as tar -x does.
            Some(old) if old.input == idx => {
                let mode = if matches!((&old.kind, &node.kind), (Kind::Dir, Kind::Dir)) {
                    old.mode
                } else {
                    node.mode
                };
                tree.insert(parts, Node { mode, ..node });
            }
            // Across inputs the first copy stays (cp --update=none); kinds must agree.
            Some(old) => {
                let same_kind = match (&old.kind, &node.kind) {
                    (Kind::Dir, Kind::Dir) => true,
                    (Kind::Symlink(a), Kind::Symlink(b)) => a == b,
                    (Kind::File { .. }, Kind::File { .. }) => true,
                    _ => false,
                };
                if !same_kind {
                    return Err(Error::Conflict {
                        entry: String::from_utf8_lossy(&parts.join(&b'/')).into_owned(),
                        first: inputs[old.input].clone(),
                        second: input.to_path_buf(),
                    });
                }
                if let Kind::File { offset, size } = node.kind {
                    pending.push(Duplicate {
                        parts,
                        input: idx,
                        offset,
                        size,
                    });
                }
            }
        }
    }
    drop(reader);
    if let Some(dec) = compressed {
        dec.finish().map_err(io_err)?;
    }
    Ok(Scanned {
        compression,
        backing,
        manifest,
        repositories,
    })
}

/// A file that an earlier input already provided: compared once every input is readable.
struct Duplicate {
    parts: Vec<Vec<u8>>,
    input: usize,
    offset: u64,
    size: u64,
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A reader that cannot seek (compressed inputs are skipped by reading).
struct NoSeek<R: Read>(R);

impl<R: Read> Read for NoSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Seek for NoSeek<R> {
    fn seek(&mut self, _: io::SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "not seekable"))
    }
}

fn same_bytes(a: &File, a_off: u64, b: &File, b_off: u64, size: u64) -> io::Result<bool> {
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(ba.len() as u64) as usize;
        a.read_exact_at(&mut ba[..n], a_off + done)?;
        b.read_exact_at(&mut bb[..n], b_off + done)?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        done += n as u64;
    }
    Ok(true)
}

fn parse_json(input: &Path, name: &str, bytes: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::NotImage {
        input: input.to_path_buf(),
        why: format!("{name}: {e}"),
    })
}

/// Merges `inputs` into `out`.
pub fn merge(out: &Path, inputs: &[PathBuf], opts: &Options) -> Result<(), Error> {
    let out_err = |source| Error::Output {
        out: out.to_path_buf(),
        source,
    };
    let spool_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // OUT is checked, and its temporary created, before any work.
    let file = AtomicFile::create(out).map_err(out_err)?;
    let mut tree: BTreeMap<Vec<Vec<u8>>, Node> = BTreeMap::new();
    let mut scanned = Vec::with_capacity(inputs.len());
    let mut pending = Vec::new();
    for (idx, input) in inputs.iter().enumerate() {
        scanned.push(scan(
            idx,
            input,
            &spool_dir,
            &mut tree,
            &mut pending,
            inputs,
        )?);
    }
    // Duplicates across inputs must hold the same bytes.
    for Duplicate {
        parts,
        input,
        offset,
        size,
    } in pending
    {
        let Some(first) = tree.get(&parts) else {
            continue;
        };
        let Kind::File {
            offset: first_off,
            size: first_size,
        } = first.kind
        else {
            continue;
        };
        let equal = first_size == size
            && same_bytes(
                scanned[first.input].backing.file(),
                first_off,
                scanned[input].backing.file(),
                offset,
                size,
            )
            .map_err(|source| Error::Io {
                input: inputs[input].clone(),
                source,
            })?;
        if !equal {
            return Err(Error::Conflict {
                entry: String::from_utf8_lossy(&parts.join(&b'/')).into_owned(),
                first: inputs[first.input].clone(),
                second: inputs[input].clone(),
            });
        }
    }
    // manifest.json: the inputs' lists joined; repositories: their objects merged (jq -s add).
    let mut manifest: Vec<Value> = Vec::new();
    let mut repositories: Option<Map<String, Value>> = None;
    for (s, input) in scanned.iter().zip(inputs) {
        let Some(bytes) = &s.manifest else {
            return Err(Error::NotImage {
                input: input.clone(),
                why: "no manifest.json".into(),
            });
        };
        match parse_json(input, "manifest.json", bytes)? {
            Value::Array(items) => manifest.extend(items),
            _ => {
                return Err(Error::NotImage {
                    input: input.clone(),
                    why: "manifest.json is not a list".into(),
                })
            }
        }
        if let Some(bytes) = &s.repositories {
            match parse_json(input, "repositories", bytes)? {
                Value::Object(m) => {
                    let merged = repositories.get_or_insert_with(Map::new);
                    for (k, v) in m {
                        merged.insert(k, v);
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(Error::NotImage {
                        input: input.clone(),
                        why: "repositories is not an object".into(),
                    })
                }
            }
        }
    }
    let mut generated = vec![(
        b"manifest.json".to_vec(),
        jq::pretty(&Value::Array(manifest)).into_bytes(),
    )];
    if let Some(r) = repositories {
        generated.push((
            b"repositories".to_vec(),
            jq::pretty(&Value::Object(r)).into_bytes(),
        ));
    }
    for (name, bytes) in generated {
        tree.insert(
            vec![name],
            Node {
                mode: 0o644,
                kind: Kind::Generated(bytes),
                input: 0,
            },
        );
    }

    let compression = opts
        .compress
        .unwrap_or_else(|| scanned.last().map_or(Compression::None, |s| s.compression));
    let level = opts.level.unwrap_or_else(|| compression.default_level());
    let comp = Compressor::new(file, compression, level).map_err(out_err)?;
    let mut tar = TarWriter::new(comp);
    let gopts = gnu::GnuOptions {
        numeric_owner: false,
    };
    let header = |name: Vec<u8>, mode: u32, typeflag: u8, size: u64, linkname: Vec<u8>| Header {
        name,
        mode,
        size,
        mtime: opts.mtime,
        typeflag,
        linkname,
        uname: b"root".to_vec(),
        gname: b"root".to_vec(),
        ..Header::default()
    };
    let mut head = Vec::new();
    gnu::encode(
        &header(b"./".to_vec(), 0o755, tarfmt::DIR, 0, Vec::new()),
        gopts,
        &mut head,
    )?;
    tar.raw(&head).map_err(out_err)?;
    let mut buf = vec![0u8; 1 << 20];
    for (parts, node) in &tree {
        let mut name = parts.join(&b'/');
        head.clear();
        match &node.kind {
            Kind::Dir => {
                name.push(b'/');
                gnu::encode(
                    &header(name, node.mode, tarfmt::DIR, 0, Vec::new()),
                    gopts,
                    &mut head,
                )?;
                tar.raw(&head).map_err(out_err)?;
            }
            Kind::Symlink(target) => {
                let target = target.strip_prefix(b"./").unwrap_or(target).to_vec();
                gnu::encode(
                    &header(name, 0o777, tarfmt::SYMLINK, 0, target),
                    gopts,
                    &mut head,
                )?;
                tar.raw(&head).map_err(out_err)?;
            }
            Kind::Generated(bytes) => {
                gnu::encode(
                    &header(
                        name,
                        node.mode,
                        tarfmt::REGULAR,
                        bytes.len() as u64,
                        Vec::new(),
                    ),
                    gopts,
                    &mut head,
                )?;
                tar.raw(&head).map_err(out_err)?;
                tar.data_bytes(bytes).map_err(out_err)?;
            }
            Kind::File { offset, size } => {
                gnu::encode(
                    &header(name, node.mode, tarfmt::REGULAR, *size, Vec::new()),
                    gopts,
                    &mut head,
                )?;
                tar.raw(&head).map_err(out_err)?;
                let src = scanned[node.input].backing.file();
                let mut w = tar.entry_writer();
                let mut done = 0u64;
                while done < *size {
                    let n = (*size - done).min(buf.len() as u64) as usize;
                    src.read_exact_at(&mut buf[..n], offset + done)
                        .map_err(|source| Error::Io {
                            input: inputs[node.input].clone(),
                            source,
                        })?;
                    w.write_all(&buf[..n]).map_err(out_err)?;
                    done += n as u64;
                }
                w.finish(*size).map_err(|e| match e {
                    DataError::Write(source) | DataError::Read(source) => Error::Output {
                        out: out.to_path_buf(),
                        source,
                    },
                    other => Error::Output {
                        out: out.to_path_buf(),
                        source: io::Error::other(other.to_string()),
                    },
                })?;
            }
        }
    }
    let comp = tar.finish().map_err(out_err)?;
    let file = comp.finish().map_err(out_err)?;
    file.commit().map_err(out_err)
}
