//! The references graph Nix writes with `exportReferencesGraph`: nodes with `path`,
//! `references` and `narSize`, read into index-based adjacency lists.

use std::borrow::Cow;

use crate::Error;

/// One node as read from JSON; strings are borrowed from the input text unless they hold
/// escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node<'a> {
    /// Store path.
    pub path: Cow<'a, str>,
    /// Referenced paths as written (self-references included).
    pub references: Vec<Cow<'a, str>>,
    /// `narSize` (0 when absent and not needed).
    pub nar_size: u64,
}

fn bad(what: impl Into<String>) -> Error {
    Error::Input(what.into())
}

#[derive(serde::Deserialize)]
struct RawNode<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow)]
    references: Vec<Cow<'a, str>>,
    #[serde(rename = "narSize")]
    nar_size: Option<serde_json::Number>,
}

fn size_of(n: &serde_json::Number, path: &str, key: &str) -> Result<u64, Error> {
    let text = n.to_string();
    text.parse::<u64>()
        .or_else(|_| text.parse::<f64>().map(|f| f as u64))
        .map_err(|_| bad(format!("node {path}: {key} {text} is not a size")))
}

/// Parses JSON text that is a list of nodes, without building a generic JSON tree
/// (fields other than `path`, `references` and `narSize` are skipped unread, as the
/// originals never look at them). The plain shape Nix writes goes through a one-pass scanner
/// (`fastjson`); anything else through serde_json.
pub fn parse_nodes(text: &str, need_size: bool) -> Result<Vec<Node<'_>>, Error> {
    match crate::fastjson::parse_nodes(text, need_size) {
        Some(nodes) => Ok(nodes),
        None => parse_nodes_serde(text, need_size),
    }
}

/// [`parse_nodes`] with serde_json only: any JSON, and the error messages. Public as the
/// reference the fast path is fuzzed against.
pub fn parse_nodes_serde(text: &str, need_size: bool) -> Result<Vec<Node<'_>>, Error> {
    let raw: Vec<RawNode> =
        serde_json::from_str(text).map_err(|e| bad(format!("the node list: {e}")))?;
    raw.into_iter()
        .map(|r| {
            let nar_size = match &r.nar_size {
                Some(n) => size_of(n, &r.path, "narSize")?,
                None if need_size => {
                    return Err(bad(format!("node {} has no \"narSize\"", r.path)))
                }
                None => 0,
            };
            Ok(Node {
                path: r.path,
                references: r.references,
                nar_size,
            })
        })
        .collect()
}

/// A graph over node indices: deduplicated successor lists without self-references.
#[derive(Clone, Debug, Default)]
pub struct Adjacency {
    /// Successors of each node, in first-reference order.
    pub succ: Vec<Vec<u32>>,
}

/// The nodes' paths copied into one buffer, to index them. Every reference lookup compares
/// its key with the stored one: about 1 MB of keys stays in cache, where keys spread over a
/// 10 MB input do not (the lookups were bound by those cache misses).
pub struct PathArena {
    text: String,
    ends: Vec<usize>,
}

impl PathArena {
    /// Copies the paths of `nodes`, in order.
    pub fn new(nodes: &[Node<'_>]) -> Self {
        let mut text = String::with_capacity(nodes.iter().map(|n| n.path.len()).sum());
        let ends = nodes
            .iter()
            .map(|n| {
                text.push_str(&n.path);
                text.len()
            })
            .collect();
        PathArena { text, ends }
    }

    /// Index of each path (the last node of a path wins, as a Python dict keeps it).
    pub fn index(&self) -> FastMap<&str, u32> {
        let mut idx = FastMap::with_capacity_and_hasher(self.ends.len(), Default::default());
        let mut start = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            idx.insert(&self.text[start..end], i as u32);
            start = end;
        }
        idx
    }
}

/// Builds successor lists; a reference to a path that is not a node is an error naming both.
pub fn adjacency(nodes: &[Node<'_>], idx: &FastMap<&str, u32>) -> Result<Adjacency, Error> {
    use rayon::prelude::*;
    // One hash lookup per reference, memory-bound: on all cores.
    let succ = nodes
        .par_iter()
        .enumerate()
        .map(|(i, n)| {
            let mut out: Vec<u32> = Vec::with_capacity(n.references.len());
            for r in &n.references {
                let Some(&j) = idx.get(r.as_ref()) else {
                    return Err(Error::MissingRef {
                        node: n.path.to_string(),
                        reference: r.to_string(),
                    });
                };
                if j as usize != i && !out.contains(&j) {
                    out.push(j);
                }
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Adjacency { succ })
}

/// The sort key of `closure-graph.py`'s ties: the path split on `-`, its first piece moved last.
pub fn package_name_key(path: &str) -> String {
    match path.split_once('-') {
        Some((first, rest)) => format!("{rest}-{first}"),
        None => path.to_string(),
    }
}

/// A fast, non-cryptographic hasher for path and id maps (the inputs are trusted build
/// metadata, so hash flooding is not a concern; iteration order is never used for output).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits depending only on the low input bits, and the table
        // picks buckets by the low bits: fold the high bits down (murmur3's finaliser step), or
        // paths that end alike would share buckets.
        let h = self.0 ^ (self.0 >> 33);
        h.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (h >> 29)
    }
}

/// A HashMap with [`FxHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;
