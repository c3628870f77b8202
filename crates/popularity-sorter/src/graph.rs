//! The references graph Nix writes with `exportReferencesGraph`: nodes with `path`,
//! `references` and `narSize`, read into index-based adjacency lists.
//!
//! tidy: lookup only (the path-to-index map is only looked up; iteration is over vectors).

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::size::Size;
use crate::Error;

/// One node as read from JSON; strings are borrowed from the input text unless they hold
/// escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node<'a> {
    /// Store path.
    pub path: Cow<'a, str>,
    /// Referenced paths as written (self-references included).
    pub references: Vec<Cow<'a, str>>,
    /// `narSize` (0 when it is not needed: closure-graph never reads it).
    pub nar_size: Size<'a>,
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
    /// `null` too is kept as its text, to be refused by name.
    #[serde(rename = "narSize", borrow, default, deserialize_with = "present")]
    nar_size: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// The size a `narSize` value stands for: a number, `true`/`false` or a string (see
/// [`Size`]); `null`, lists and objects are refused, as the originals fail on them when
/// they sort or add the sizes (flatten-references-graph would sort lists; they are refused too).
fn size_of<'a>(raw: &'a RawValue, path: &str) -> Result<Size<'a>, Error> {
    let text = raw.get();
    let size = match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Cow<'a, str>>(text)
            .ok()
            .map(Size::Text),
        Some(b't') => Some(Size::Int(1)),
        Some(b'f') => Some(Size::Int(0)),
        Some(b'-' | b'0'..=b'9') => Size::from_number(text),
        _ => None,
    };
    size.ok_or_else(|| bad(format!("node {path}: narSize {text} is not a number")))
}

/// Parses JSON text that is a list of nodes, without building a generic JSON tree
/// (fields other than `path`, `references` and `narSize` are skipped unread, as the
/// originals never look at them; so is `narSize` unless `need_size`). The plain shape Nix
/// writes goes through a one-pass scanner (`fastjson`); anything else through serde_json.
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
            let nar_size = match r.nar_size {
                _ if !need_size => Size::default(),
                Some(n) => size_of(n, &r.path)?,
                None => return Err(bad(format!("node {} has no \"narSize\"", r.path))),
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
            let mut out = resolve(n, idx)?;
            out.retain(|&j| j as usize != i);
            Ok(out)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Adjacency { succ })
}

/// The node indices of `node`'s references, each once, in first-reference order.
pub fn resolve(node: &Node<'_>, idx: &FastMap<&str, u32>) -> Result<Vec<u32>, Error> {
    let mut out = Vec::with_capacity(node.references.len());
    for r in &node.references {
        let Some(&j) = idx.get(r.as_ref()) else {
            return Err(Error::MissingRef {
                node: node.path.to_string(),
                reference: r.to_string(),
            });
        };
        out.push(j);
    }
    dedup_in_order(&mut out);
    Ok(out)
}

/// Drops repeated items, keeping each first occurrence where it is, in time linear in the
/// list: a short list (almost every node's) by a scan of what was kept, a long one through
/// a hash set.
pub fn dedup_in_order(list: &mut Vec<u32>) {
    const SCAN: usize = 16;
    if list.len() <= SCAN {
        let mut kept: usize = 0;
        for i in 0..list.len() {
            let x = list[i];
            if !list[..kept].contains(&x) {
                list[kept] = x;
                kept += 1;
            }
        }
        list.truncate(kept);
    } else {
        let mut seen = FastSet::with_capacity_and_hasher(list.len(), Default::default());
        list.retain(|&x| seen.insert(x));
    }
}

/// The sort key of `closure-graph.py`'s ties: the path split on `-`, its first piece moved last.
pub fn package_name_key(path: &str) -> String {
    match path.split_once('-') {
        Some((first, rest)) => format!("{rest}-{first}"),
        None => path.to_string(),
    }
}

/// A HashMap with foldhash's fast hasher and its fixed seed: the inputs are trusted build
/// metadata, so hash flooding is not a concern, and no state of the process goes in (iteration
/// order is never used for output either).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// A HashSet with the hasher of [`FastMap`].
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::FixedState>;
