//! The references graph Nix writes with `exportReferencesGraph`: nodes with `path`,
//! `references` and `narSize`, read into index-based adjacency lists (compressed sparse rows).
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

/// A JSON object around a node list: closure-graph's `FILE`, the pipeline's `.attrs.json`.
#[derive(Debug, PartialEq, Eq)]
pub struct Object<'a> {
    /// The node list under the key asked for.
    pub nodes: Vec<Node<'a>>,
    /// Every other key, with the text of its value (only looked up).
    pub fields: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a> Object<'a> {
    /// The text of the value under `key`.
    pub fn field(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Parses a JSON object and the node list under `key` in it (see [`parse_nodes`]); the
/// plain shape in one pass (`fastjson`), anything else through serde_json.
pub fn parse_object<'a>(input: &'a [u8], key: &str, need_size: bool) -> Result<Object<'a>, Error> {
    let fast = std::str::from_utf8(input)
        .ok()
        .and_then(|text| crate::fastjson::parse_object(text, key, need_size));
    match fast {
        Some(object) => Ok(object),
        None => parse_object_serde(input, key, need_size),
    }
}

/// [`parse_object`] with serde_json for the object: any JSON, and the error messages. Public
/// as the reference the fast path is fuzzed against.
pub fn parse_object_serde<'a>(
    input: &'a [u8],
    key: &str,
    need_size: bool,
) -> Result<Object<'a>, Error> {
    // A repeated key keeps its last value, as Python's json.load does.
    let mut data: std::collections::BTreeMap<String, &'a RawValue> = serde_json::from_slice(input)?;
    let list = data
        .remove(key)
        .ok_or_else(|| bad(format!("missing key {key:?}")))?;
    Ok(Object {
        nodes: parse_nodes(list.get(), need_size)?,
        fields: data
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), v.get()))
            .collect(),
    })
}

/// The nodes' paths copied into one buffer, to index them. Every reference lookup compares
/// its key with the stored one: about 1 MB of keys stays in cache, where keys spread over a
/// 10 MB input do not (the lookups were bound by those cache misses).
pub struct PathArena {
    text: String,
    ends: Vec<usize>,
}

/// The distinct paths of a node list: a repeated path counts once, as its last node (a
/// Python dict by path keeps that one).
pub struct Index<'p> {
    /// Each path's position in `live`.
    pub map: FastMap<&'p str, u32>,
    /// The node of each distinct path, in list order.
    pub live: Vec<u32>,
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

    /// The index of the paths.
    pub fn index(&self) -> Index<'_> {
        let n = self.ends.len();
        let mut map = FastMap::with_capacity_and_hasher(n, Default::default());
        let mut replaced = Vec::new();
        let mut start = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            if let Some(old) = map.insert(&self.text[start..end], i as u32) {
                replaced.push(old);
            }
            start = end;
        }
        if replaced.is_empty() {
            return Index {
                map,
                live: (0..n as u32).collect(),
            };
        }
        let mut dead = vec![false; n];
        replaced.iter().for_each(|&i| dead[i as usize] = true);
        let live: Vec<u32> = (0..n as u32).filter(|&i| !dead[i as usize]).collect();
        let mut position = vec![0u32; n];
        for (k, &i) in live.iter().enumerate() {
            position[i as usize] = k as u32;
        }
        // Renumbering, in whatever order the values come: each is replaced on its own.
        map.values_mut().for_each(|v| *v = position[*v as usize]);
        Index { map, live }
    }
}

/// The successors of every distinct path (rows in the order of `index.live`): each reference
/// once, in first-reference order, self-references dropped. A reference to a path that is
/// not a node is an error naming both.
pub fn adjacency(nodes: &[Node<'_>], index: &Index<'_>) -> Result<Csr, Error> {
    // One hash lookup per reference, memory-bound: on all cores.
    Csr::from_rows_par(index.live.len(), |k, out| {
        let from = out.len();
        resolve_into(&nodes[index.live[k] as usize], &index.map, out)?;
        drop_self(out, from, k);
        Ok(())
    })
}

/// Removes `vertex` (a self-reference) from `out[from..]`, keeping the order of the rest.
pub(crate) fn drop_self(out: &mut Vec<u32>, from: usize, vertex: usize) {
    let mut kept = from;
    for i in from..out.len() {
        if out[i] as usize != vertex {
            out[kept] = out[i];
            kept += 1;
        }
    }
    out.truncate(kept);
}

/// Appends the positions of `node`'s references to `out`, each once, in first-reference order.
pub fn resolve_into(
    node: &Node<'_>,
    map: &FastMap<&str, u32>,
    out: &mut Vec<u32>,
) -> Result<(), Error> {
    let from = out.len();
    for r in &node.references {
        let Some(&j) = map.get(r.as_ref()) else {
            return Err(Error::MissingRef {
                node: node.path.to_string(),
                reference: r.to_string(),
            });
        };
        out.push(j);
    }
    dedup_tail(out, from);
    Ok(())
}

/// Drops repeated items from `list[from..]`, keeping each first occurrence where it is, in
/// time linear in the list: a short list (almost every node's) by a scan of what was kept, a
/// long one through a bitset when that is no longer than the list in words (a root's list of
/// the whole closure), else through a hash set.
pub fn dedup_tail(list: &mut Vec<u32>, from: usize) {
    const SCAN: usize = 16;
    let len = list.len() - from;
    let mut kept = from;
    if len <= SCAN {
        for i in from..list.len() {
            let x = list[i];
            if !list[from..kept].contains(&x) {
                list[kept] = x;
                kept += 1;
            }
        }
        list.truncate(kept);
        return;
    }
    let words = list[from..]
        .iter()
        .max()
        .map_or(0, |&m| m as usize / 64 + 1);
    if words <= len {
        let mut seen = vec![0u64; words];
        for i in from..list.len() {
            let x = list[i];
            let (word, bit) = (&mut seen[x as usize / 64], 1u64 << (x % 64));
            if *word & bit == 0 {
                *word |= bit;
                list[kept] = x;
                kept += 1;
            }
        }
    } else {
        let mut seen = FastSet::with_capacity_and_hasher(len, Default::default());
        for i in from..list.len() {
            let x = list[i];
            if seen.insert(x) {
                list[kept] = x;
                kept += 1;
            }
        }
    }
    list.truncate(kept);
}

/// `buf` cut into consecutive slices of the lengths `lens` (which add up to at most its
/// length), to be filled on all cores.
fn cut_mut<T>(buf: &mut [T], lens: impl Iterator<Item = usize>) -> Vec<&mut [T]> {
    let mut rest = buf;
    lens.map(|len| {
        let (slice, after) = std::mem::take(&mut rest).split_at_mut(len);
        rest = after;
        slice
    })
    .collect()
}

/// At most this many tasks build a transpose (each reads every edge).
const MAX_TRANSPOSE_PARTS: usize = 4;

/// Below this many edges a transpose is built on one thread.
const PAR_TRANSPOSE_EDGES: usize = 1 << 16;

/// Adjacency lists in one buffer (compressed sparse rows): one allocation for the whole graph,
/// and neighbouring rows next to each other in memory.
#[derive(Clone, Debug, Default)]
pub struct Csr {
    /// Row `v` is `items[start[v]..start[v + 1]]`.
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Csr {
    /// The rows of `n` vertices holding the `(from, to)` pairs of `edges`, each row in the order
    /// of `edges`. Every index must be below `n`.
    pub fn from_edges(n: usize, edges: impl Iterator<Item = (u32, u32)> + Clone) -> Csr {
        let mut start = vec![0u32; n + 1];
        for (a, _) in edges.clone() {
            start[a as usize + 1] += 1;
        }
        for v in 0..n {
            start[v + 1] += start[v];
        }
        let mut fill = start.clone();
        let mut items = vec![0u32; start[n] as usize];
        for (a, b) in edges {
            items[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
        Csr { start, items }
    }

    /// The rows `0..n`, row `k` appended to a buffer by `fill(k, buffer)`; filled on all
    /// cores, a run of rows into one buffer, so that no row has an allocation of its own.
    /// An error is that of the first failing row, whatever the thread count.
    pub fn from_rows_par<E: Send>(
        n: usize,
        fill: impl Fn(usize, &mut Vec<u32>) -> Result<(), E> + Sync,
    ) -> Result<Csr, E> {
        use rayon::prelude::*;
        const RUN: usize = 1024;
        // Collected as results and checked in order: rayon's collect into a `Result` keeps
        // whichever error a thread met first.
        let runs: Vec<Result<_, E>> = (0..n.div_ceil(RUN))
            .into_par_iter()
            .map(|r| {
                let (mut ends, mut items) = (Vec::with_capacity(RUN), Vec::new());
                for k in r * RUN..((r + 1) * RUN).min(n) {
                    fill(k, &mut items)?;
                    ends.push(items.len() as u32);
                }
                Ok((ends, items))
            })
            .collect();
        let runs = runs.into_iter().collect::<Result<Vec<_>, E>>()?;
        let mut start = Vec::with_capacity(n + 1);
        start.push(0u32);
        let mut base = 0;
        for (ends, _) in &runs {
            start.extend(ends.iter().map(|e| base + e));
            base += ends.last().copied().unwrap_or(0);
        }
        // The runs' items copied into place on all cores.
        let mut items = vec![0u32; base as usize];
        let slices = cut_mut(&mut items, runs.iter().map(|(_, run)| run.len()));
        slices
            .into_par_iter()
            .zip(&runs)
            .for_each(|(slice, (_, run))| slice.copy_from_slice(run));
        Ok(Csr { start, items })
    }

    /// Drops repeated items of each row, keeping first occurrences in order.
    pub fn dedup_rows(&mut self) {
        let mut items = Vec::with_capacity(self.items.len());
        for v in 0..self.len() {
            let from = items.len();
            items
                .extend_from_slice(&self.items[self.start[v] as usize..self.start[v + 1] as usize]);
            dedup_tail(&mut items, from);
            self.start[v] = from as u32;
        }
        if let Some(last) = self.start.last_mut() {
            *last = items.len() as u32;
        }
        self.items = items;
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `v`.
    pub fn row(&self, v: u32) -> &[u32] {
        let v = v as usize;
        &self.items[self.start[v] as usize..self.start[v + 1] as usize]
    }

    /// The number of items in all rows.
    pub fn edges(&self) -> usize {
        self.items.len()
    }

    /// Every `(row, item)` pair, row by row.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + Clone + '_ {
        (0..self.len() as u32).flat_map(move |v| self.row(v).iter().map(move |&c| (v, c)))
    }

    /// The reversed graph: row `c` lists every `v` whose row holds `c`, in increasing `v`.
    /// A large graph's is built on all cores: each task counts, and then fills, the rows of
    /// one range of targets, reading every edge (the reads are in order and cheap; the
    /// scattered writes are what is shared out).
    pub fn transpose(&self) -> Csr {
        use rayon::prelude::*;
        let n = self.len();
        let parts = rayon::current_num_threads().min(MAX_TRANSPOSE_PARTS);
        if parts <= 1 || self.items.len() < PAR_TRANSPOSE_EDGES {
            return Csr::from_edges(n, self.pairs().map(|(v, c)| (c, v)));
        }
        // `start[c + 1]` is first the number of rows holding `c`.
        let mut start = vec![0u32; n + 1];
        let per = n.div_ceil(parts).max(1);
        start[1..]
            .par_chunks_mut(per)
            .enumerate()
            .for_each(|(k, count)| {
                let targets = k * per..k * per + count.len();
                for &c in &self.items {
                    if targets.contains(&(c as usize)) {
                        count[c as usize - targets.start] += 1;
                    }
                }
            });
        for v in 0..n {
            start[v + 1] += start[v];
        }
        // Ranges of targets holding about equal shares of the items, each its own slice.
        let edges = self.items.len();
        let mut cuts: Vec<usize> = (0..parts)
            .map(|k| start.partition_point(|&s| (s as usize) < k * edges / parts))
            .map(|c| c.min(n))
            .collect();
        cuts.push(n);
        let mut items = vec![0u32; edges];
        let ranges: Vec<std::ops::Range<usize>> =
            cuts.windows(2).map(|w| w[0]..w[1].max(w[0])).collect();
        let lens = ranges
            .iter()
            .map(|r| (start[r.end] - start[r.start]) as usize);
        let slices = cut_mut(&mut items, lens);
        ranges
            .into_par_iter()
            .zip(slices)
            .for_each(|(targets, slice)| {
                let base = start[targets.start];
                let mut fill: Vec<u32> = start[targets.clone()].iter().map(|&s| s - base).collect();
                for (v, c) in self.pairs() {
                    if targets.contains(&(c as usize)) {
                        let at = &mut fill[c as usize - targets.start];
                        slice[*at as usize] = v;
                        *at += 1;
                    }
                }
            });
        Csr { start, items }
    }
}

/// A path as `closure-graph.py` orders tied paths: the path split on `-` with its first piece
/// moved last (`/nix/store/h-foo-1.0` sorts as `foo-1.0-/nix/store/h`), compared by code
/// points (UTF-8 bytes compare the same way). Its first 8 bytes are kept as a number, which
/// settles most comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackageName<'p> {
    prefix: u64,
    pieces: [&'p [u8]; 3],
}

impl<'p> PackageName<'p> {
    /// The name of `path`.
    pub fn new(path: &'p str) -> Self {
        let pieces: [&[u8]; 3] = match path.split_once('-') {
            Some((first, rest)) => [rest.as_bytes(), b"-", first.as_bytes()],
            None => [path.as_bytes(), b"", b""],
        };
        // Padding with zero bytes keeps the order: a shorter prefix never compares greater.
        let mut head = [0u8; 8];
        for (slot, byte) in head.iter_mut().zip(pieces.iter().flat_map(|p| p.iter())) {
            *slot = *byte;
        }
        PackageName {
            prefix: u64::from_be_bytes(head),
            pieces,
        }
    }
}

impl Ord for PackageName<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| cmp_pieces(self.pieces, other.pieces))
    }
}

impl PartialOrd for PackageName<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares the concatenations of two lists of byte strings, a run of bytes at a time.
fn cmp_pieces(mut a: [&[u8]; 3], mut b: [&[u8]; 3]) -> std::cmp::Ordering {
    let (mut i, mut j) = (0, 0);
    loop {
        while a.get(i).is_some_and(|p| p.is_empty()) {
            i += 1;
        }
        while b.get(j).is_some_and(|p| p.is_empty()) {
            j += 1;
        }
        let (Some(x), Some(y)) = (a.get(i).copied(), b.get(j).copied()) else {
            return (i < a.len()).cmp(&(j < b.len()));
        };
        let len = x.len().min(y.len());
        match x[..len].cmp(&y[..len]) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
        a[i] = &x[len..];
        b[j] = &y[len..];
    }
}

/// A HashMap with foldhash's fast hasher and its fixed seed: the inputs are trusted build
/// metadata, so hash flooding is not a concern, and no state of the process goes in (iteration
/// order is never used for output either).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// A HashSet with the hasher of [`FastMap`].
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::FixedState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transpose_on_any_number_of_threads_is_the_one_built_edge_by_edge() {
        // A few targets holding most edges, empty rows, rows all to one target, and graphs
        // of fewer vertices than tasks.
        let mix = |i: usize| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 29;
        let graphs: Vec<Csr> = [(50_000usize, 4usize), (3, 40_000), (1, 70_000), (70_000, 1)]
            .into_iter()
            .map(|(n, per_row)| {
                Csr::from_rows_par(n, |v, out: &mut Vec<u32>| {
                    for k in 0..per_row {
                        let r = mix(v * per_row + k);
                        let c = match r % 4 {
                            0 => r % 3 % n as u64,
                            _ => r % n as u64,
                        };
                        if v % 7 != 3 {
                            out.push(c as u32);
                        }
                    }
                    Ok::<(), ()>(())
                })
                .unwrap()
            })
            .collect();
        for g in &graphs {
            let want = Csr::from_edges(g.len(), g.pairs().map(|(v, c)| (c, v)));
            for threads in [1, 2, 3, 4, 7] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| g.transpose());
                assert_eq!(
                    (&got.start, &got.items),
                    (&want.start, &want.items),
                    "{threads}"
                );
            }
        }
    }

    #[test]
    fn dedup_keeps_first_occurrences_in_every_way() {
        // Short (a scan), long and dense (a bitset), long and sparse (a hash set).
        let short = vec![7, 3, 7, 1, 3];
        let dense: Vec<u32> = (0..200).map(|i| (i * 7) % 50).collect();
        let sparse: Vec<u32> = (0..40).map(|i| (i % 20) * 1_000_000).collect();
        for list in [short, dense, sparse] {
            let mut expected = Vec::new();
            for &x in &list {
                if !expected.contains(&x) {
                    expected.push(x);
                }
            }
            let mut got = vec![9, 9];
            got.extend(&list);
            dedup_tail(&mut got, 2);
            assert_eq!(got[2..], expected[..]);
            assert_eq!(got[..2], [9, 9]);
        }
    }
}
