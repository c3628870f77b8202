//! A fast path for reading the node list: one pass over the bytes, strings borrowed, no
//! generic JSON values, no per-field allocations.
//!
//! It is strict: it accepts only well-formed JSON, and only the plain shape Nix writes (key
//! and path strings without escapes, `narSize` a plain integer when it is needed, no repeated
//! known field).
//! On anything else it gives up (`None`) and the caller parses with serde_json, which gives
//! the same result on the same input or the error message. So it never decides an outcome
//! serde_json would decide differently.
//!
//! It also reads the object around the node list (closure-graph's and the pipeline's input) in
//! the same pass, keeping the other values as text, where serde_json would scan the whole
//! input once for the object and once more for the list.

use std::borrow::Cow;

use crate::graph::{Node, Object};
use crate::listed::Listed;
use crate::size::Size;

/// Deeper nesting than this (in skipped fields) is left to serde_json, whose limit is 128.
const MAX_DEPTH: usize = 100;

struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of bytes of `w` that are `"`, `\\` or a control character. SWAR: a flagged
/// byte may be a false one, but only above a true one (a borrow only carries upwards), so the
/// lowest flag is where the first such byte is, and 0 means there is none.
fn special_bytes(w: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

impl<'a> Scan<'a> {
    /// Moves over string bytes that need no attention, 8 at a time, to the first that does
    /// (or into the last 7 bytes of the input).
    fn skip_plain_bytes(&mut self) {
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let special = special_bytes(u64::from_le_bytes(word));
            if special != 0 {
                self.i += special.trailing_zeros() as usize / 8;
                return;
            }
            self.i += 8;
        }
    }

    fn ws(&mut self) {
        // Pretty-printed input is mostly runs of spaces.
        while self.b.get(self.i..self.i + 8) == Some(b"        ") {
            self.i += 8;
        }
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn plain_string(&mut self) -> Option<&'a str> {
        let (start, end) = self.plain_span()?;
        self.text.get(start..end)
    }

    /// The bytes of a string without escapes or control characters.
    fn plain_bytes(&mut self) -> Option<&'a [u8]> {
        let (start, end) = self.plain_span()?;
        self.b.get(start..end)
    }

    /// Where the contents of a string without escapes or control characters start and end.
    fn plain_span(&mut self) -> Option<(usize, usize)> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        self.skip_plain_bytes();
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        self.i += 1;
        Some((start, self.i - 1))
    }

    /// Skips any string (escapes checked as JSON defines them).
    fn skip_string(&mut self) -> Option<()> {
        if !self.eat(b'"') {
            return None;
        }
        loop {
            self.skip_plain_bytes();
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                0..=0x1f => return None,
                b'\\' => {
                    self.i += 1;
                    match *self.b.get(self.i)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                _ => self.i += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// Skips a number, checking JSON's grammar.
    fn skip_number(&mut self) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// A plain integer that fits in i64 (no fraction or exponent, no leading zero).
    fn plain_int(&mut self) -> Option<i64> {
        let (start, end) = self.plain_int_span()?;
        self.text.get(start..end)?.parse().ok()
    }

    /// [`Scan::plain_int`] of bytes alone.
    fn plain_int_bytes(&mut self) -> Option<i64> {
        let (start, end) = self.plain_int_span()?;
        std::str::from_utf8(self.b.get(start..end)?)
            .ok()?
            .parse()
            .ok()
    }

    /// Where a plain integer starts and ends (its value is checked by the caller's parse).
    fn plain_int_span(&mut self) -> Option<(usize, usize)> {
        self.ws();
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let first = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.b.get(first) == Some(&b'0')) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        Some((start, self.i))
    }

    fn skip_literal(&mut self, word: &[u8]) -> Option<()> {
        self.ws();
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                self.i += 1;
                if self.eat(b'}') {
                    return Some(());
                }
                loop {
                    self.skip_string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    self.skip_value(depth + 1)?;
                    if self.eat(b'}') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if self.eat(b']') {
                        return Some(());
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b't' => self.skip_literal(b"true"),
            b'f' => self.skip_literal(b"false"),
            b'n' => self.skip_literal(b"null"),
            _ => self.skip_number(),
        }
    }

    fn references(&mut self) -> Option<Vec<Cow<'a, str>>> {
        if !self.eat(b'[') {
            return None;
        }
        let mut refs = Vec::new();
        if self.eat(b']') {
            return Some(refs);
        }
        loop {
            refs.push(Cow::Borrowed(self.plain_string()?));
            if self.eat(b']') {
                return Some(refs);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn node(&mut self, need_size: bool) -> Option<Node<'a>> {
        if !self.eat(b'{') || self.eat(b'}') {
            return None;
        }
        let mut path = None;
        let mut references = None;
        let mut nar_size = None;
        loop {
            let key = self.plain_string()?;
            if !self.eat(b':') {
                return None;
            }
            match key {
                "path" if path.is_none() => path = Some(self.plain_string()?),
                "references" if references.is_none() => references = Some(self.references()?),
                "narSize" if nar_size.is_none() => {
                    nar_size = Some(if need_size {
                        Size::Int(i128::from(self.plain_int()?))
                    } else {
                        self.skip_value(1)?;
                        Size::default()
                    })
                }
                "path" | "references" | "narSize" => return None,
                _ => self.skip_value(1)?,
            }
            if self.eat(b'}') {
                break;
            }
            if !self.eat(b',') {
                return None;
            }
        }
        let nar_size = match nar_size {
            Some(n) => n,
            None if need_size => return None,
            None => Size::default(),
        };
        Some(Node {
            path: Cow::Borrowed(path?),
            references: references?,
            nar_size,
        })
    }
}

/// What follows a node read by [`listed_node`] (positions in the bytes given).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// A comma: the next node's `{` is at this position.
    More(usize),
    /// The list's `]`: the position after it.
    End(usize),
}

impl<'a> Scan<'a> {
    /// A scanner of bytes alone (UTF-8 checked by the caller): the methods that hand out
    /// `&str` borrowed from `text` give up on it.
    fn bytes(b: &'a [u8], i: usize) -> Self {
        Scan { text: "", b, i }
    }
}

/// The list's start in `b`: `[` after optional whitespace, and what follows it (`More` at the
/// first node, or `End` for an empty list). `Err` with the position where it gave up when `b`
/// does not start so or is cut short.
pub(crate) fn list_start(b: &[u8]) -> Result<After, usize> {
    let mut s = Scan::bytes(b, 0);
    if !s.eat(b'[') {
        return Err(s.i);
    }
    if s.eat(b']') {
        return Ok(After::End(s.i));
    }
    match s.peek() {
        Some(b'{') => Ok(After::More(s.i)),
        _ => Err(s.i),
    }
}

/// Where a node's path lies: in the bytes being read, or already interned (a node taken up
/// again in a later window).
#[derive(Clone, Copy, Debug)]
pub(crate) enum PathAt {
    Span(usize, usize),
    Id(u32),
}

/// A node's fields read so far.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fields {
    pub(crate) path: Option<PathAt>,
    pub(crate) references: bool,
    pub(crate) nar_size: Option<i64>,
}

/// Where a node being read can be taken up again: a position between its fields or between
/// its references, and what was read before it. A node that does not fit in the window goes
/// on in the next one from here (its references so far kept), instead of being read again
/// from its start in a window grown to hold it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resume {
    pub(crate) at: usize,
    pub(crate) inside: Inside,
    pub(crate) fields: Fields,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Inside {
    /// Right after `{` (a node's start: never a resume point).
    Start,
    /// After a field's value (a byte after it seen: a number is whole).
    Fields,
    /// In the references: right after `[` (`first`) or after a reference.
    References { first: bool },
}

/// Reads the node at `pos` of `b` into `out`, with the separator after it: where its
/// references and path lie in `b` (see [`Listed::push_node`]), its `narSize` a plain integer.
/// `Err` with the position where it gave up when it is not in the plain shape, or when `b`
/// ends before the byte after the separator (a number cut short would read as another number,
/// so a node counts only when what follows it is seen). On `Err`, `out` may hold part of the
/// node's references, and `mark` says from where the node can be taken up again with them,
/// if it can. A node taken up again is read from `from` instead (its position in `b`), the
/// references it had before kept in `out`; until it gets further, `mark` is `from`.
pub(crate) fn listed_node(
    b: &[u8],
    pos: usize,
    from: Option<Resume>,
    out: &mut Listed,
    mark: &mut Option<Resume>,
) -> Result<After, usize> {
    *mark = from;
    let mut s = Scan::bytes(b, from.map_or(pos, |f| f.at));
    let from = match from {
        Some(from) => from,
        None if s.eat(b'{') => Resume {
            at: s.i,
            inside: Inside::Start,
            fields: Fields::default(),
        },
        None => return Err(s.i),
    };
    s.node_rest(out, from, mark)
}

/// Whether `b` from `pos` on is whitespace only.
pub(crate) fn only_space(b: &[u8], pos: usize) -> bool {
    Scan::bytes(b, pos).at_end()
}

impl<'a> Scan<'a> {
    /// The rest of a node from `from`, and the separator after it.
    fn node_rest(
        &mut self,
        out: &mut Listed,
        from: Resume,
        mark: &mut Option<Resume>,
    ) -> Result<After, usize> {
        let Some(fields) = self.fields_into(out, from, mark) else {
            return Err(self.i);
        };
        let (Some(path), true, Some(size)) = (fields.path, fields.references, fields.nar_size)
        else {
            return Err(self.i);
        };
        let after = if self.eat(b']') {
            After::End(self.i)
        } else if self.eat(b',') && self.peek() == Some(b'{') {
            After::More(self.i)
        } else {
            return Err(self.i);
        };
        out.push_node(size, path);
        Ok(after)
    }

    /// [`Scan::node`] with `need_size`, from `from` to its `}`: the fields, the references
    /// appended to `out` as they are found. `mark` is kept at the last point the node could be
    /// taken up again from.
    fn fields_into(
        &mut self,
        out: &mut Listed,
        from: Resume,
        mark: &mut Option<Resume>,
    ) -> Option<Fields> {
        let mut f = from.fields;
        let mut after_value = match from.inside {
            Inside::Start => {
                if self.eat(b'}') {
                    return None;
                }
                false
            }
            Inside::Fields => true,
            Inside::References { first } => {
                self.references_into(out, first, f, mark)?;
                f.references = true;
                true
            }
        };
        loop {
            if after_value {
                // Only once a byte after the value is seen: a number cut short by the end of
                // the bytes would read as another number.
                self.peek()?;
                *mark = Some(Resume {
                    at: self.i,
                    inside: Inside::Fields,
                    fields: f,
                });
                if self.eat(b'}') {
                    return Some(f);
                }
                if !self.eat(b',') {
                    return None;
                }
            }
            after_value = true;
            let key = self.plain_bytes()?;
            if !self.eat(b':') {
                return None;
            }
            match key {
                b"path" if f.path.is_none() => {
                    let (start, end) = self.plain_span()?;
                    f.path = Some(PathAt::Span(start, end));
                }
                b"references" if !f.references => {
                    if !self.eat(b'[') {
                        return None;
                    }
                    self.references_into(out, true, f, mark)?;
                    f.references = true;
                }
                b"narSize" if f.nar_size.is_none() => f.nar_size = Some(self.plain_int_bytes()?),
                b"path" | b"references" | b"narSize" => return None,
                _ => self.skip_value(1)?,
            }
        }
    }

    /// Where a node's references lie, appended to `out`, from after its `[` (`first`) or
    /// after a reference, to after its `]`.
    fn references_into(
        &mut self,
        out: &mut Listed,
        mut first: bool,
        fields: Fields,
        mark: &mut Option<Resume>,
    ) -> Option<()> {
        loop {
            *mark = Some(Resume {
                at: self.i,
                inside: Inside::References { first },
                fields,
            });
            if self.eat(b']') {
                return Some(());
            }
            if !first && !self.eat(b',') {
                return None;
            }
            out.push_span(self.plain_span()?);
            first = false;
        }
    }
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Self {
        Scan {
            text,
            b: text.as_bytes(),
            i: 0,
        }
    }

    /// A node list, from its `[` to its `]`: in parts on all cores when it is large.
    fn node_list(&mut self, need_size: bool) -> Option<Vec<Node<'a>>> {
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(Vec::new());
        }
        let parts = part_starts(self.b, self.i);
        if parts.len() == 1 {
            let mut nodes = Vec::new();
            return match self.nodes_until(need_size, None, &mut nodes)? {
                Until::End(end) => {
                    self.i = end;
                    Some(nodes)
                }
                Until::Stop => None,
            };
        }
        self.parallel_list(need_size, &parts)
    }

    /// Parses the parts starting at `starts` on all cores. Each part's first node start is a
    /// guess, confirmed only when the part before it, itself confirmed, ends exactly there;
    /// the first part starts at the list's first node. A part after the list's end is
    /// ignored; a guess that is not confirmed gives up (`None`).
    fn parallel_list(&mut self, need_size: bool, starts: &[usize]) -> Option<Vec<Node<'a>>> {
        use rayon::prelude::*;
        let parsed: Vec<Option<(Vec<Node<'a>>, Until)>> = (0..starts.len())
            .into_par_iter()
            .map(|k| {
                let mut part = Scan {
                    text: self.text,
                    b: self.b,
                    i: starts[k],
                };
                let mut nodes = Vec::new();
                let until = part.nodes_until(need_size, starts.get(k + 1).copied(), &mut nodes)?;
                Some((nodes, until))
            })
            .collect();
        let mut all = Vec::with_capacity(parsed.iter().flatten().map(|(n, _)| n.len()).sum());
        for part in parsed {
            let (nodes, until) = part?;
            all.extend(nodes);
            if let Until::End(end) = until {
                self.i = end;
                return Some(all);
            }
        }
        None
    }

    /// Nodes separated by commas, up to the list's `]` (`End`, with the position after it)
    /// or up to the start of a node at `stop` (`Stop`); `None` on anything else.
    fn nodes_until(
        &mut self,
        need_size: bool,
        stop: Option<usize>,
        nodes: &mut Vec<Node<'a>>,
    ) -> Option<Until> {
        loop {
            nodes.push(self.node(need_size)?);
            if self.eat(b']') {
                return Some(Until::End(self.i));
            }
            if !self.eat(b',') {
                return None;
            }
            if let Some(stop) = stop {
                self.ws();
                if self.i == stop {
                    return Some(Until::Stop);
                }
                if self.i > stop {
                    return None;
                }
            }
        }
    }

    /// Whether only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }
}

/// Where a run of nodes ended.
enum Until {
    End(usize),
    Stop,
}

/// Below this many bytes a node list is read in one part.
const MIN_PART: usize = 1 << 20;

/// Guesses where to split a node list whose first node starts at or after `from`: one start
/// per core, each the first `{` after a `}`, `,` (whitespace around them allowed) past an
/// equal share of the bytes. Only a guess: the bytes may lie inside a string.
fn part_starts(b: &[u8], from: usize) -> Vec<usize> {
    let parts = rayon::current_num_threads()
        .min((b.len() - from) / MIN_PART)
        .max(1);
    let mut starts = vec![from];
    for k in 1..parts {
        let at = from + (b.len() - from) * k / parts;
        if let Some(start) = node_start_after(b, at.max(starts[starts.len() - 1] + 1)) {
            starts.push(start);
        }
    }
    starts
}

/// The first `{` at or after `at` that follows `}` and `,` with only whitespace between.
pub(crate) fn node_start_after(b: &[u8], at: usize) -> Option<usize> {
    let is_ws = |c: &u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t');
    let mut i = at;
    loop {
        i += b.get(i..)?.iter().position(|&c| c == b'}')? + 1;
        let mut j = i;
        while b.get(j).is_some_and(is_ws) {
            j += 1;
        }
        if b.get(j) != Some(&b',') {
            continue;
        }
        j += 1;
        while b.get(j).is_some_and(is_ws) {
            j += 1;
        }
        if b.get(j) == Some(&b'{') {
            return Some(j);
        }
    }
}

/// The node list of `text`, or `None` when it is not in the plain shape (see the module).
pub fn parse_nodes(text: &str, need_size: bool) -> Option<Vec<Node<'_>>> {
    let mut s = Scan::new(text);
    let nodes = s.node_list(need_size)?;
    s.at_end().then_some(nodes)
}

/// More top-level keys than this are left to serde_json (the check for repeated keys is
/// quadratic; an `.attrs.json` has a few dozen).
const MAX_FIELDS: usize = 256;

/// The JSON object `text`: the node list under `key`, and the text of every other value by
/// its key; `None` when it is not in the plain shape, when a key repeats (serde_json keeps
/// the last value, and says which error comes first), or when `key` is missing.
pub fn parse_object<'a>(text: &'a str, key: &str, need_size: bool) -> Option<Object<'a>> {
    let mut s = Scan::new(text);
    if !s.eat(b'{') {
        return None;
    }
    let mut nodes = None;
    let mut fields: Vec<(&'a str, &'a str)> = Vec::new();
    if !s.eat(b'}') {
        loop {
            let k = s.plain_string()?;
            if !s.eat(b':') || fields.len() == MAX_FIELDS {
                return None;
            }
            if k == key {
                if nodes.is_some() {
                    return None;
                }
                nodes = Some(s.node_list(need_size)?);
            } else {
                if fields.iter().any(|(f, _)| *f == k) {
                    return None;
                }
                s.ws();
                let start = s.i;
                s.skip_value(1)?;
                fields.push((k, text.get(start..s.i)?));
            }
            if s.eat(b'}') {
                break;
            }
            if !s.eat(b',') {
                return None;
            }
        }
    }
    s.at_end().then_some(())?;
    Some(Object {
        nodes: nodes?,
        fields: fields
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever the fast path answers, serde_json gives the same nodes.
    fn agrees(text: &str) {
        for need_size in [false, true] {
            if let Some(fast) = parse_nodes(text, need_size) {
                let slow = crate::graph::parse_nodes_serde(text, need_size).ok();
                assert_eq!(Some(fast), slow, "{text:?}");
            }
        }
    }

    #[test]
    fn the_first_special_byte_is_found_exactly() {
        // Every byte value in every position, after any other value in the bytes before it.
        for pos in 0..8 {
            for b in 0..=255u8 {
                for fill in [0u8, b' ', b'"', 0x1f, 0x20, 0x7f, 0x80, 0xff, b'a'] {
                    let mut w = [fill; 8];
                    w[pos] = b;
                    let first = w.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
                    let special = special_bytes(u64::from_le_bytes(w));
                    let found = (special != 0).then(|| special.trailing_zeros() as usize / 8);
                    assert_eq!(found, first, "{w:?}");
                }
            }
        }
    }

    #[test]
    fn the_plain_shape_is_read_as_serde_reads_it() {
        let good = r#" [ {"closureSize": 12, "narHash": "sha256:x", "narSize": 7,
            "path": "/nix/store/a-x", "references": ["/nix/store/a-x", "/nix/store/b-y"]},
            {"path":"/nix/store/b-y","references":[],"narSize":0,"extra":{"a":[1,-2.5e3,true,null,"\u00e9\n"]}} ] "#;
        assert!(parse_nodes(good, true).is_some());
        agrees(good);
        assert_eq!(parse_nodes("[]", true).map(|v| v.len()), Some(0));
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for text in [
            r#"[{"path": "/nix/store/a\u0078", "references": [], "narSize": 1}]"#,
            r#"[{"path": "a", "path": "b", "references": [], "narSize": 1}]"#,
            r#"[{"path": "a", "references": [], "narSize": 1.5}]"#,
            r#"[{"path": "a", "references": [], "narSize": -9223372036854775809}]"#,
            r#"[{"path": "a", "references": [], "narSize": -01}]"#,
            r#"[{"path": "a", "references": [], "narSize": true}]"#,
            r#"[{"path": "a", "references": [], "narSize": 01}]"#,
            r#"[{"path": "a", "references": []}]"#,
            r#"[{"path": "a", "references": [], "narSize": 1, "x": [1,]}]"#,
            r#"[{"path": "a", "references": [], "narSize": 1, "x": 1.}]"#,
            r#"[{"path": "a", "references": [], "narSize": 1, "x": "\q"}]"#,
            r#"[{"path": "a", "references": [], "narSize": 1}] x"#,
            r#"[{"path": "a", "references": null, "narSize": 1}]"#,
            r#"[{"references": [], "narSize": 1}]"#,
            "[{\"path\": \"a\tb\", \"references\": [], \"narSize\": 1}]",
            r#"[{"path": "a", "references": [], "narSize": 99999999999999999999}]"#,
            r#"[{}]"#,
            r#"{}"#,
        ] {
            assert!(parse_nodes(text, true).is_none(), "{text}");
        }
    }

    #[test]
    fn cut_and_flipped_inputs_never_disagree() {
        let text = r#"[{"closureSize": 12, "narHash": "sha256:x", "narSize": 7, "path": "/nix/store/a-x", "references": ["/nix/store/a-x", "/nix/store/b-y"]}, {"path": "/nix/store/b-y", "references": [], "narSize": 0, "e": {"k": [1, -2.5e+3, false, "\u00e9\\"]}}]"#;
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            if let Ok(t) = std::str::from_utf8(&bytes[..cut]) {
                agrees(t);
            }
        }
        for pos in 0..bytes.len() {
            for b in [
                b'"', b',', b'{', b'}', b'[', b']', b':', b'0', b'-', b'\\', b' ', b'n',
            ] {
                let mut v = bytes.to_vec();
                v[pos] = b;
                if let Ok(t) = std::str::from_utf8(&v) {
                    agrees(t);
                }
            }
        }
    }
}
