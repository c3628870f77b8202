//! auto-layer's reader of the node list: the file read a window at a time (no copy of the
//! whole input, whose fresh pages were a sixth of auto-layer's time), each path and reference
//! interned as it is read, so that the graph is numbers from the start.
//!
//! It reads only the plain shape of `fastjson` (and `narSize` a plain integer), split into
//! parts on all cores as `fastjson` splits a list in memory: each part from a guessed node
//! start, confirmed when the part before it ends exactly there. On anything else it gives up
//! (`None`) and the caller reads the input the general way, which decides every error. Every
//! byte it reads is checked to be UTF-8, as the general way checks the whole input.

use std::io;

use rayon::prelude::*;

use crate::fastjson::{
    list_start, listed_node, node_start_after, only_space, After, PathAt, Resume,
};
use crate::intern::Interner;

/// The node list as numbers.
#[derive(Debug, Default)]
pub struct Listed {
    /// Every path and reference.
    pub(crate) strings: Interner,
    /// Per node, in list order: the number of its path, its `narSize`, and the end of its
    /// references in `refs` (they start where the previous node's end).
    pub(crate) paths: Vec<u32>,
    pub(crate) sizes: Vec<i64>,
    pub(crate) ref_ends: Vec<usize>,
    pub(crate) refs: Vec<u32>,
    /// Nodes read but not yet interned: where their references and paths lie in the window
    /// (each node's references, then its path), and per node the number of references, the
    /// size, and the path's number when it was interned already (a node taken up again).
    /// Interned a window at a time, so that the lookups' cache misses overlap.
    spans: Vec<(usize, usize)>,
    pending: Vec<(usize, i64, Option<u32>)>,
    /// The numbers of `spans` (kept for its memory).
    ids: Vec<u32>,
    /// The spans before the node being read.
    node_from: usize,
}

impl Listed {
    fn with_capacity(nodes: usize, strings: usize) -> Self {
        Listed {
            strings: Interner::with_capacity(strings),
            paths: Vec::with_capacity(nodes),
            sizes: Vec::with_capacity(nodes),
            ref_ends: Vec::with_capacity(nodes),
            refs: Vec::with_capacity(nodes * 4),
            ..Listed::default()
        }
    }

    /// Records where a reference or the path of the node being read lies.
    pub(crate) fn push_span(&mut self, span: (usize, usize)) {
        self.spans.push(span);
    }

    /// Records the node being read (its references were pushed), with its path.
    pub(crate) fn push_node(&mut self, size: i64, path: PathAt) {
        let id = match path {
            PathAt::Span(start, end) => {
                self.spans.push((start, end));
                None
            }
            PathAt::Id(id) => Some(id),
        };
        let refs = self.spans.len() - self.node_from - usize::from(id.is_none());
        self.pending.push((refs, size, id));
        self.node_from = self.spans.len();
    }

    /// Forgets what was pushed of a node that was not finished.
    fn drop_unfinished(&mut self) {
        self.spans.truncate(self.node_from);
    }

    /// Interns the nodes read from `window`; `None` if a string is not UTF-8.
    fn flush(&mut self, window: &[u8]) -> Option<()> {
        self.suspend(window, &mut None)
    }

    /// [`Listed::flush`], keeping the node being read to be taken up in the next window: its
    /// references so far are interned and stored (they end the stored ones, as its others
    /// will when it is finished), and its `path` if read is interned.
    fn suspend(&mut self, window: &[u8], path: &mut Option<PathAt>) -> Option<()> {
        let span_path = match *path {
            Some(PathAt::Span(start, end)) => {
                self.spans.push((start, end));
                true
            }
            _ => false,
        };
        self.strings
            .intern_spans(window, &self.spans, &mut self.ids)?;
        let mut ids = self.ids.iter().copied();
        for &(refs, size, path) in &self.pending {
            self.refs.extend(ids.by_ref().take(refs));
            let path = match path {
                Some(id) => id,
                None => ids.next()?,
            };
            self.paths.push(path);
            self.sizes.push(size);
            self.ref_ends.push(self.refs.len());
        }
        let partial = self.spans.len() - self.node_from - usize::from(span_path);
        self.refs.extend(ids.by_ref().take(partial));
        if span_path {
            *path = Some(PathAt::Id(ids.next()?));
        }
        self.spans.clear();
        self.pending.clear();
        self.node_from = 0;
        Some(())
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The path of node `k`.
    pub fn path(&self, k: usize) -> &str {
        self.strings.get(self.paths[k])
    }

    /// The `narSize` of node `k`.
    pub fn size(&self, k: usize) -> i64 {
        self.sizes[k]
    }

    /// The references of node `k`, as written.
    pub fn references(&self, k: usize) -> impl Iterator<Item = &str> {
        self.refs(k).iter().map(|&r| self.strings.get(r))
    }

    /// The references of node `k`, as string numbers.
    pub(crate) fn refs(&self, k: usize) -> &[u32] {
        let start = k.checked_sub(1).map_or(0, |j| self.ref_ends[j]);
        &self.refs[start..self.ref_ends[k]]
    }

    /// Appends `other`'s nodes, its strings renumbered (for the `last` time: see
    /// [`Interner::renumber_into_last`]); `None` if the strings outgrow the interner.
    fn append(&mut self, other: Listed, last: bool) -> Option<()> {
        let number = match last {
            true => other.strings.renumber_into_last(&mut self.strings)?,
            false => other.strings.renumber_into(&mut self.strings)?,
        };
        let base = self.refs.len();
        let renumber = |id: &u32| number.get(*id as usize).copied().unwrap_or(0);
        self.refs
            .par_extend(other.refs.par_iter().with_min_len(1 << 14).map(renumber));
        self.paths.extend(other.paths.iter().map(renumber));
        self.sizes.extend(other.sizes);
        self.ref_ends
            .extend(other.ref_ends.iter().map(|e| e + base));
        Some(())
    }
}

/// Input read at an offset: a file, or bytes in memory.
pub trait ReadAt: Sync {
    /// Reads into `buf` from `offset`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let from = usize::try_from(offset).map_or(self.len(), |o| o.min(self.len()));
        let n = buf.len().min(self.len() - from);
        buf[..n].copy_from_slice(&self[from..from + n]);
        Ok(n)
    }
}

/// The bytes read at a time: a part's window stays in the core's cache.
const WINDOW: usize = 256 << 10;

/// A failure this close to the end of what was read may be the input cut short by the
/// window (the scanner looks at most 8 bytes ahead), so more is read and the node tried again.
const NEAR_END: usize = 16;

/// A window on the input: `buf[..len]` holds the bytes from `offset`, of which `buf[..valid]`
/// is known to be UTF-8 (the rest is a character cut short).
struct Window<'r, R: ?Sized> {
    src: &'r R,
    buf: Vec<u8>,
    offset: u64,
    len: usize,
    valid: usize,
    eof: bool,
}

impl<'r, R: ReadAt + ?Sized> Window<'r, R> {
    fn new(src: &'r R, offset: u64, size: usize) -> Self {
        Window {
            src,
            buf: vec![0; size.max(1)],
            offset,
            len: 0,
            valid: 0,
            eof: false,
        }
    }

    /// The bytes known to be UTF-8.
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.valid]
    }

    /// Drops the bytes before `pos` and fills the window (growing it when `pos` is 0 and it
    /// is full). `Ok(false)` when nothing more could be read; bytes that are not UTF-8 end
    /// the input there (the window holds no valid bytes, and is at its end).
    fn advance(&mut self, pos: usize) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        // What was checked stays checked: only the new bytes are (a window that is grown
        // again and again for one large node would otherwise be checked again each time).
        let checked = self.valid.saturating_sub(pos);
        self.buf.copy_within(pos..self.len, 0);
        self.offset += pos as u64;
        self.len -= pos;
        if self.len == self.buf.len() {
            // A node larger than the window is read again from its start with each growth:
            // growing fourfold keeps that to a third more than the node.
            self.buf.resize(self.buf.len() * 4, 0);
        }
        let before = self.len;
        while self.len < self.buf.len() {
            let n = self
                .src
                .read_at(&mut self.buf[self.len..], self.offset + self.len as u64)?;
            if n == 0 {
                self.eof = true;
                break;
            }
            self.len += n;
        }
        self.valid = match std::str::from_utf8(&self.buf[checked..self.len]) {
            Ok(_) => self.len,
            Err(e) if e.error_len().is_none() && !self.eof => checked + e.valid_up_to(),
            Err(_) => {
                self.eof = true;
                self.valid = 0;
                return Ok(false);
            }
        };
        Ok(self.len > before)
    }

    /// Whether a failure of the scanner at `at` may be the window cutting the input short,
    /// and more could be read.
    fn cut_short(&self, at: usize) -> bool {
        !self.eof && at + NEAR_END >= self.valid
    }
}

/// How a part ended.
enum Until {
    /// At the list's `]`.
    End,
    /// At the start of the next part.
    Stop,
}

/// What follows the list's `[` at the window's start; `None` when the input is not in the
/// plain shape.
fn first_node<R: ReadAt + ?Sized>(w: &mut Window<'_, R>) -> io::Result<Option<After>> {
    loop {
        match list_start(w.bytes()) {
            Ok(after) => return Ok(Some(after)),
            Err(at) if w.cut_short(at) && w.advance(0)? => {}
            Err(_) => return Ok(None),
        }
    }
}

/// Whether everything from `pos` to the end of the input is whitespace.
fn rest_is_space<R: ReadAt + ?Sized>(w: &mut Window<'_, R>, mut pos: usize) -> io::Result<bool> {
    loop {
        if !only_space(w.bytes(), pos) {
            return Ok(false);
        }
        if w.eof {
            return Ok(w.valid == w.len);
        }
        let valid = w.valid;
        w.advance(valid)?;
        pos = 0;
    }
}

/// Reads the nodes of one part: from the list's start (`start` 0, `first`) or from the node at
/// `start`, up to the list's end or to the node at `stop`. `None` when the input is not in the
/// plain shape, or the part does not end at `stop`.
fn read_part<R: ReadAt + ?Sized>(
    src: &R,
    (start, stop): (u64, Option<u64>),
    first: bool,
    window: usize,
    out: &mut Listed,
) -> io::Result<Option<Until>> {
    let mut w = Window::new(src, start, window);
    w.advance(0)?;
    let mut next = if first {
        match first_node(&mut w)? {
            Some(after) => after,
            None => return Ok(None),
        }
    } else {
        After::More(0)
    };
    // A node that did not fit in the window, to be taken up at the start of the next.
    let mut resume: Option<Resume> = None;
    let mut mark = None;
    loop {
        let pos = match next {
            After::End(end) => {
                let ok = out.flush(w.bytes()).is_some() && rest_is_space(&mut w, end)?;
                return Ok(ok.then_some(Until::End));
            }
            After::More(pos) => pos,
        };
        let from = resume.take();
        let at = w.offset + pos as u64;
        // A part stops at a node's start (never inside a node taken up again).
        if from.is_none() && stop.is_some_and(|s| at >= s) {
            let ok = stop == Some(at) && out.flush(w.bytes()).is_some();
            return Ok(ok.then_some(Until::Stop));
        }
        next = match listed_node(w.bytes(), pos, from, out, &mut mark) {
            Ok(after) => after,
            Err(failed_at) if w.cut_short(failed_at) => match mark.take() {
                // Its references so far are kept, and it goes on from where it could.
                Some(mut from) => {
                    if out.suspend(w.bytes(), &mut from.fields.path).is_none()
                        || !w.advance(from.at)?
                    {
                        return Ok(None);
                    }
                    from.at = 0;
                    resume = Some(from);
                    After::More(0)
                }
                // Read again from its start.
                None => {
                    out.drop_unfinished();
                    if out.flush(w.bytes()).is_none() || !w.advance(pos)? {
                        return Ok(None);
                    }
                    After::More(0)
                }
            },
            Err(_) => return Ok(None),
        };
    }
}

/// Below this many bytes per part, the list is read in one part.
const MIN_PART: u64 = 1 << 20;

/// Guessed starts of at most `parts` parts (see `fastjson::part_starts`): the first at 0, the
/// others each the first node start in the window past an equal share of the bytes.
fn part_starts<R: ReadAt + ?Sized>(src: &R, len: u64, parts: u64) -> io::Result<Vec<u64>> {
    let mut starts = vec![0];
    let mut probe = vec![0u8; 64 << 10];
    for k in 1..parts {
        let at = len * k / parts;
        let n = src.read_at(&mut probe, at)?;
        match node_start_after(&probe[..n], 0) {
            Some(j) if at + j as u64 > starts[starts.len() - 1] => starts.push(at + j as u64),
            _ => {}
        }
    }
    Ok(starts)
}

/// Reads the node list of `src` (`len` bytes long; a guess is enough, for splitting it), or
/// `None` when it is not in the plain shape.
pub fn read<R: ReadAt + ?Sized>(src: &R, len: u64) -> io::Result<Option<Listed>> {
    let parts = (rayon::current_num_threads() as u64)
        .min(len / MIN_PART)
        .max(1);
    read_with(src, len, parts, WINDOW)
}

/// [`read`] in at most `parts` parts, through windows of `window` bytes.
fn read_with<R: ReadAt + ?Sized>(
    src: &R,
    len: u64,
    parts: u64,
    window: usize,
) -> io::Result<Option<Listed>> {
    let starts = part_starts(src, len, parts)?;
    // A node takes some 500 bytes in Nix's pretty-printed output.
    let per_part = usize::try_from(len / 500 / starts.len() as u64).unwrap_or(0) + 16;
    let parts: Vec<io::Result<Option<(Listed, Until)>>> = (0..starts.len())
        .into_par_iter()
        .map(|k| {
            // A part's references name paths of every part.
            let mut out = Listed::with_capacity(per_part, per_part * starts.len());
            let range = (starts[k], starts.get(k + 1).copied());
            let until = read_part(src, range, k == 0, window, &mut out)?;
            Ok(until.map(|u| (out, u)))
        })
        .collect();
    let mut all: Option<Listed> = None;
    for part in parts {
        let Some((listed, until)) = part? else {
            return Ok(None);
        };
        let last = matches!(until, Until::End);
        match all.as_mut() {
            Some(all) => {
                if all.append(listed, last).is_none() {
                    return Ok(None);
                }
            }
            None => all = Some(listed),
        }
        if let Until::End = until {
            return Ok(all);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::parse_nodes;

    /// The nodes of `l` as paths, sizes and references.
    fn nodes_of(l: &Listed) -> Vec<(String, i64, Vec<String>)> {
        (0..l.len())
            .map(|k| {
                let refs = l.refs(k).iter().map(|&r| l.strings.get(r).to_string());
                (l.path(k).to_string(), l.sizes[k], refs.collect())
            })
            .collect()
    }

    /// What the general parser reads, in the same form; `None` where it refuses.
    fn general(text: &[u8]) -> Option<Vec<(String, i64, Vec<String>)>> {
        let nodes = parse_nodes(std::str::from_utf8(text).ok()?, true).ok()?;
        let size = |s: &crate::size::Size<'_>| match s {
            crate::size::Size::Int(i) => i64::try_from(*i).ok(),
            _ => None,
        };
        nodes
            .iter()
            .map(|n| {
                let refs = n.references.iter().map(|r| r.to_string()).collect();
                Some((n.path.to_string(), size(&n.nar_size)?, refs))
            })
            .collect()
    }

    /// Wherever the reader answers, through any window and in any number of parts, it reads
    /// what the general parser reads.
    fn agrees(text: &[u8], windows: &[usize]) {
        for parts in [1, 2, 3] {
            for &window in windows {
                let read = read_with(text, text.len() as u64, parts, window).unwrap();
                if let Some(l) = read {
                    assert_eq!(
                        Some(nodes_of(&l)),
                        general(text),
                        "{parts} parts, window {window}"
                    );
                }
            }
        }
    }

    const LIST: &str = r#"[
  {
    "closureSize": 12,
    "narHash": "sha256:0l3y\u00e9",
    "narSize": 33040,
    "path": "/nix/store/00088cqz-io-é",
    "references": [
      "/nix/store/19iqmqbr-pandas",
      "/nix/store/00088cqz-io-é"
    ]
  },
  {"references": [], "path": "/nix/store/19iqmqbr-pandas", "narSize": 7, "x": [1, {"y": null}]},
  {
    "narSize": -5,
    "path": "/nix/store/00088cqz-io-é",
    "references": []
  }
]
"#;

    #[test]
    fn every_window_and_split_reads_the_same_nodes() {
        let windows: Vec<usize> = (1..40).chain([64, 200, 1000]).collect();
        agrees(LIST.as_bytes(), &windows);
        for parts in [1, 2, 3] {
            for &window in &windows {
                let read = read_with(LIST.as_bytes(), LIST.len() as u64, parts, window).unwrap();
                assert!(
                    read.is_some_and(|l| l.len() == 3),
                    "{parts} parts, window {window}"
                );
            }
        }
        assert_eq!(
            part_starts(LIST.as_bytes(), LIST.len() as u64, 2)
                .unwrap()
                .len(),
            2
        );
        agrees(b"  [ ]  ", &[1, 2, 64]);
        assert!(read_with(&b"[]"[..], 2, 1, 1)
            .unwrap()
            .is_some_and(|l| l.is_empty()));
    }

    #[test]
    fn nodes_larger_than_the_window_are_taken_up_where_the_window_ended() {
        // Fields in every order around long reference lists, and a path read before the
        // references (interned when its window ends) or after them.
        let path = |i: usize| format!("/nix/store/{i:04}-p");
        let mut text = String::from("[");
        for n in 0..12 {
            let refs: Vec<String> = (0..n * 7).map(|i| format!("{:?}", path(i % 12))).collect();
            let fields = [
                format!("\"narSize\": {}", 1000 + n),
                format!("\"path\": \"{}\"", path(n)),
                format!("\"references\": [{}]", refs.join(", \n ")),
                "\"x\": {\"y\": [1, 22, 333]}".to_string(),
            ];
            let order: Vec<&String> = match n % 3 {
                0 => fields.iter().collect(),
                1 => fields.iter().rev().collect(),
                _ => [2, 0, 3, 1].iter().map(|&k| &fields[k]).collect(),
            };
            let node: Vec<&str> = order.iter().map(|f| f.as_str()).collect();
            text += &format!(
                "{}{{ {} }}",
                if n > 0 { ",\n" } else { "" },
                node.join(",  ")
            );
        }
        text += "]";
        let text = text.as_bytes();
        let want = general(text);
        assert!(want.as_ref().is_some_and(|n| n.len() == 12));
        for parts in [1, 2, 3] {
            for window in (1..80).chain([500, 5000]) {
                let read = read_with(text, text.len() as u64, parts, window).unwrap();
                let read = read.map(|l| nodes_of(&l));
                assert_eq!(read, want, "{parts} parts, window {window}");
            }
        }
    }

    #[test]
    fn cut_and_flipped_inputs_never_disagree() {
        let bytes = LIST.as_bytes();
        for cut in 0..bytes.len() {
            agrees(&bytes[..cut], &[3, 64]);
        }
        for pos in 0..bytes.len() {
            for b in [b'"', b',', b'{', b'}', b']', b'0', b'\\', b' ', 0xff, b'.'] {
                let mut v = bytes.to_vec();
                v[pos] = b;
                agrees(&v, &[5, 4096]);
            }
        }
    }
}
