//! The base image of `from_image`: a docker-archive (plain, gzip or zstd) whose layers are copied
//! into the new image with their headers re-encoded as Python's `tarfile` re-encodes them.
//! Memory: the archive's JSON members (at most 64 MiB each), never a layer.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dockertools_common::compress::open_decompressed;
use dockertools_common::tar::reader::{Entry, ReadError, Reader};
use dockertools_common::tar::writer::{read_data, DataError, TarWriter, COPY_BUF};
use dockertools_common::tar::{pax, Header};
use serde_json::Value;

/// Largest JSON member read into memory.
const JSON_LIMIT: u64 = 64 << 20;

/// Problems with the base image.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The file could not be opened or read.
    #[error("from_image {}: {source}", .path.display())]
    Io {
        /// The archive.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a readable tar.
    #[error("from_image {}: {source}", .path.display())]
    Tar {
        /// The archive.
        path: PathBuf,
        /// The error.
        #[source]
        source: ReadError,
    },
    /// The archive is not a docker-archive (or its JSON is broken).
    #[error("from_image {}: not a docker-archive: {why}", .path.display())]
    NotDockerArchive {
        /// The archive.
        path: PathBuf,
        /// What is missing or wrong.
        why: String,
    },
    /// Copying a layer failed.
    #[error("from_image {} member {member}: {source}", .path.display())]
    Copy {
        /// The archive.
        path: PathBuf,
        /// The member.
        member: String,
        /// The error.
        #[source]
        source: DataError,
    },
}

/// One base layer to copy.
#[derive(Debug)]
pub struct BaseLayer {
    /// Member name (Python's `TarInfo.path`).
    pub member: Vec<u8>,
    /// Its diff_id without `sha256:`.
    pub checksum: String,
    entry: Entry,
}

/// A loaded base image.
#[derive(Debug)]
pub struct BaseImage {
    path: PathBuf,
    /// The image config JSON.
    pub config: Value,
    /// Layers in manifest order (zipped with the config's diff_ids, as the original does).
    pub layers: Vec<BaseLayer>,
}

fn open(path: &Path) -> Result<Reader<Box<dyn Read + Send>>, BaseError> {
    let (_, r) = open_decompressed(path).map_err(|source| BaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Reader::new(Box::new(r)))
}

impl BaseImage {
    /// Reads `manifest.json`, the config and the layer headers of the archive at `path`.
    pub fn load(path: &Path) -> Result<BaseImage, BaseError> {
        let tar_err = |source| BaseError::Tar {
            path: path.to_path_buf(),
            source,
        };
        let not = |why: String| BaseError::NotDockerArchive {
            path: path.to_path_buf(),
            why,
        };
        let io_err = |source| BaseError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (_, mut dec) = open_decompressed(path).map_err(io_err)?;
        let mut reader = Reader::new(&mut dec);
        // The last member of a name wins, as tarfile's getmember returns it.
        let mut members: Vec<Entry> = Vec::new();
        let mut json: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        while let Some(e) = reader.next_entry().map_err(tar_err)? {
            if e.name.ends_with(b".json") && e.size >= 0 && (e.size as u64) <= JSON_LIMIT {
                let bytes = reader.read_to_vec(JSON_LIMIT).map_err(tar_err)?;
                json.retain(|(n, _)| *n != e.name);
                json.push((e.name.clone(), bytes));
            }
            members.retain(|m| m.name != e.name);
            members.push(e);
        }
        // The archive's end is not the stream's: read it to its end and check it.
        drop(reader);
        dec.finish().map_err(io_err)?;
        let find_json = |name: &[u8]| json.iter().find(|(n, _)| n == name).map(|(_, b)| b);
        let manifest_bytes =
            find_json(b"manifest.json").ok_or_else(|| not("no manifest.json".into()))?;
        let manifest: Value = serde_json::from_slice(manifest_bytes)
            .map_err(|e| not(format!("manifest.json: {e}")))?;
        let first = manifest
            .get(0)
            .ok_or_else(|| not("manifest.json is not a non-empty list".into()))?;
        let config_name = first
            .get("Config")
            .and_then(Value::as_str)
            .ok_or_else(|| not("manifest.json has no Config".into()))?;
        let config_bytes = find_json(config_name.as_bytes())
            .ok_or_else(|| not(format!("config {config_name} not found")))?;
        let config: Value =
            serde_json::from_slice(config_bytes).map_err(|e| not(format!("{config_name}: {e}")))?;
        let layer_names = first
            .get("Layers")
            .and_then(Value::as_array)
            .ok_or_else(|| not("manifest.json has no Layers list".into()))?;
        let diff_ids = config
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .ok_or_else(|| not(format!("{config_name} has no rootfs.diff_ids")))?;
        let mut layers = Vec::new();
        for (name, diff_id) in layer_names.iter().zip(diff_ids) {
            let (Some(name), Some(diff_id)) = (name.as_str(), diff_id.as_str()) else {
                return Err(not("layer names and diff_ids must be strings".into()));
            };
            let entry = members
                .iter()
                .find(|m| m.name == name.as_bytes())
                .cloned()
                .ok_or_else(|| not(format!("layer {name} not found")))?;
            layers.push(BaseLayer {
                member: name.as_bytes().to_vec(),
                checksum: diff_id
                    .strip_prefix("sha256:")
                    .unwrap_or(diff_id)
                    .to_string(),
                entry,
            });
        }
        Ok(BaseImage {
            path: path.to_path_buf(),
            config,
            layers,
        })
    }

    /// Copies every layer into `tar`, calling `progress(n, member)` before each.
    pub fn copy_layers<W: Write>(
        &self,
        tar: &mut TarWriter<W>,
        mut progress: impl FnMut(usize, &[u8]),
    ) -> Result<(), CopyError> {
        let mut reader: Option<Reader<Box<dyn Read + Send>>> = None;
        let mut next_index = 0u64;
        let mut head = Vec::new();
        for (num, layer) in self.layers.iter().enumerate() {
            // Scan forward to the member; reopen when it lies behind us.
            if reader.is_none() || layer.entry.index < next_index {
                reader = Some(open(&self.path).map_err(CopyError::Base)?);
                next_index = 0;
            }
            let Some(r) = reader.as_mut() else { continue };
            let entry = self.scan_to(r, layer)?;
            next_index = entry.index + 1;
            progress(num + 1, &layer.member);
            let h = Header {
                name: entry.name.clone(),
                mode: (entry.mode & 0o7777) as u32,
                uid: entry.uid.max(0) as u64,
                gid: entry.gid.max(0) as u64,
                size: entry.size.max(0) as u64,
                mtime: entry.mtime,
                typeflag: entry.typeflag,
                linkname: entry.linkname.clone(),
                uname: entry.uname.clone(),
                gname: entry.gname.clone(),
                devmajor: entry.devmajor.max(0) as u64,
                devminor: entry.devminor.max(0) as u64,
            };
            head.clear();
            pax::encode_with(&h, &entry.pax, &mut head);
            tar.raw(&head).map_err(CopyError::Write)?;
            let mut data = DataReader { r };
            tar.data_from(&mut data, h.size).map_err(|source| {
                CopyError::Base(BaseError::Copy {
                    path: self.path.clone(),
                    member: String::from_utf8_lossy(&layer.member).into_owned(),
                    source,
                })
            })?;
        }
        Ok(())
    }
}

impl BaseImage {
    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads on to `layer`'s member (the reader must be before it).
    fn scan_to<R: Read>(&self, r: &mut Reader<R>, layer: &BaseLayer) -> Result<Entry, CopyError> {
        loop {
            let e = r
                .next_entry()
                .map_err(|source| {
                    CopyError::Base(BaseError::Tar {
                        path: self.path.clone(),
                        source,
                    })
                })?
                .ok_or_else(|| {
                    CopyError::Base(BaseError::NotDockerArchive {
                        path: self.path.clone(),
                        why: "archive changed while reading".into(),
                    })
                })?;
            if e.index == layer.entry.index {
                return Ok(e);
            }
        }
    }

    /// Streams the bytes of base layer `i` (its member's data, the layer tar as stored) to `out`.
    pub fn layer_to(&self, i: usize, out: &mut dyn Write) -> Result<(), CopyError> {
        let Some(layer) = self.layers.get(i) else {
            return Ok(());
        };
        let mut r = open(&self.path).map_err(CopyError::Base)?;
        let entry = self.scan_to(&mut r, layer)?;
        let size = entry.size.max(0) as u64;
        let copy_err = |source| {
            CopyError::Base(BaseError::Copy {
                path: self.path.clone(),
                member: String::from_utf8_lossy(&layer.member).into_owned(),
                source,
            })
        };
        let mut data = DataReader { r: &mut r };
        let mut buf = vec![0u8; COPY_BUF];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = read_data(&mut data, &mut buf[..want], size, left).map_err(copy_err)?;
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// Errors while copying base layers.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the base failed.
    #[error(transparent)]
    Base(BaseError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[source] io::Error),
}

struct DataReader<'a, R: Read> {
    r: &'a mut Reader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read_data(buf).map_err(io::Error::other)
    }
}
