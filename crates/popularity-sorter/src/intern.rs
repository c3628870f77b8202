//! An interner of strings: each distinct string is copied once into one buffer and numbered
//! in the order it was first seen.
//!
//! It is the node list reader's only lookup per path or reference (auto-layer's hot spot), so
//! it is built around cache misses. A slot holds part of the string's hash, where the string
//! lies and its number: a lookup misses the cache at most twice (the slot, then the string),
//! and a string is compared only when the stored hash part and length match. Lookups come in
//! batches whose slots and strings are all loaded first, so that their misses overlap.

use rayon::prelude::*;
/// One slot of the table; `id` 0 is a free slot, else the string's number plus one.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    tag: u32,
    len: u32,
    start: u32,
    id: u32,
}

/// Distinct strings, numbered from 0.
#[derive(Debug, Default)]
pub struct Interner {
    text: String,
    /// String `i` is `text[ends[i - 1]..ends[i]]` (from 0 for the first).
    ends: Vec<usize>,
    /// Open addressing with linear probing, at most half full.
    slots: Vec<Slot>,
    /// Scratch space of [`Interner::intern_spans`].
    hashes: Vec<u32>,
}

/// foldhash with its fixed seed: the strings are trusted build metadata (see `graph::FastMap`).
/// Its high half is both a slot's tag and where the string's probe starts (its bits below the
/// table's size), so the table grows without hashing its strings again.
fn hash(s: &[u8]) -> u32 {
    use std::hash::BuildHasher;
    (foldhash::fast::FixedState::default().hash_one(s) >> 32) as u32
}

impl Interner {
    /// An interner sized for about `n` strings.
    pub fn with_capacity(n: usize) -> Self {
        Interner {
            text: String::with_capacity(n * 64),
            ends: Vec::with_capacity(n),
            slots: vec![Slot::default(); (n * 2).next_power_of_two().max(64)],
            hashes: Vec::new(),
        }
    }

    /// The number of distinct strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// String `id` (empty for an id that was not handed out).
    pub fn get(&self, id: u32) -> &str {
        let id = id as usize;
        let start = match id {
            0 => 0,
            _ => self.ends.get(id - 1).copied().unwrap_or(0),
        };
        let end = self.ends.get(id).copied().unwrap_or(start);
        self.text.get(start..end).unwrap_or("")
    }

    /// The number of `s`, given a new one if it is new.
    #[cfg(test)]
    fn intern(&mut self, s: &str) -> Option<u32> {
        self.intern_bytes(s.as_bytes())
    }

    /// The number of `s`, given a new one if it is new; `None` if it is new and not UTF-8
    /// (only a new string is checked: one already here is), or if the strings outgrow the
    /// 4 GiB a slot can point into.
    #[cfg(test)]
    fn intern_bytes(&mut self, s: &[u8]) -> Option<u32> {
        self.intern_hashed(s, hash(s))
    }

    /// The numbers of the strings `b[start..end]` of `spans`, in order, into `ids`, new ones
    /// given new numbers; `None` if a new one is not UTF-8 (only a new string is checked: one
    /// already here is), or if the strings outgrow the 4 GiB a slot can point into. Each string's first slot, and the string it holds, are
    /// loaded for the whole batch first: those loads do not depend on one another, so their
    /// cache misses overlap, where one lookup after another would wait for each in turn.
    pub fn intern_spans(
        &mut self,
        b: &[u8],
        spans: &[(usize, usize)],
        ids: &mut Vec<u32>,
    ) -> Option<()> {
        // A table dropped by `renumber_into_last` takes nothing more.
        if self.slots.is_empty() {
            return None;
        }
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
        let mut touched = 0u32;
        let text = self.text.as_bytes();
        for &(start, end) in spans {
            let h = hash(b.get(start..end)?);
            hashes.push(h);
            let slot = self.slots[self.home(h)];
            // The first and last byte of the string (it may span two cache lines).
            let first = text.get(slot.start as usize).copied().unwrap_or(0);
            let end = slot.start as usize + slot.len as usize;
            let last = text.get(end.wrapping_sub(1)).copied();
            touched ^= slot.tag ^ u32::from(first ^ last.unwrap_or(0));
        }
        std::hint::black_box(touched);
        ids.clear();
        for (&(start, end), &h) in spans.iter().zip(&hashes) {
            ids.push(self.intern_hashed(b.get(start..end)?, h)?);
        }
        self.hashes = hashes;
        Some(())
    }

    /// Interns every string of `self` into `into`: their numbers there, in the order of
    /// `self`'s numbers. The strings `into` has are looked up on all cores; then the others,
    /// distinct from each other and from those of `into`, are added without a lookup.
    pub fn renumber_into(&self, into: &mut Interner) -> Option<Vec<u32>> {
        self.number_in(into, true)
    }

    /// [`Interner::renumber_into`] for the last time: the strings new to `into` are numbered
    /// and stored but not placed in its table, which is dropped (their places would be cache
    /// misses that nothing uses). Nothing can be interned into `into` afterwards: it only
    /// hands out strings.
    pub fn renumber_into_last(&self, into: &mut Interner) -> Option<Vec<u32>> {
        let ids = self.number_in(into, false);
        into.slots = Vec::new();
        ids
    }

    /// [`Interner::renumber_into`], the new strings placed in the table when `place`.
    fn number_in(&self, into: &mut Interner, place: bool) -> Option<Vec<u32>> {
        if into.slots.is_empty() {
            return None;
        }
        let found: Vec<(Option<u32>, u32)> = {
            let into = &*into;
            (0..self.len() as u32)
                .into_par_iter()
                .with_min_len(BATCH)
                .map(|id| into.find(self.get(id).as_bytes()))
                .collect()
        };
        let mut ids = Vec::with_capacity(self.len());
        for (id, (found, h)) in found.into_iter().enumerate() {
            ids.push(match found {
                Some(number) => number,
                // Not where the lookup found a free slot: it may be taken since (or the
                // table grown).
                None if place => into.insert_new(self.get(id as u32), h)?,
                None => into.store(self.get(id as u32))?,
            });
        }
        Some(ids)
    }

    /// The slot where the probe for hash `h` starts.
    fn home(&self, h: u32) -> usize {
        h as usize & (self.slots.len() - 1)
    }

    /// The first free slot from `h`'s home on.
    fn free_slot(&self, h: u32) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        while self.slots[i].id != 0 {
            i = (i + 1) & mask;
        }
        i
    }

    /// Adds `s`, whose hash is `h`, known not to be here.
    fn insert_new(&mut self, s: &str, h: u32) -> Option<u32> {
        self.insert_at(self.free_slot(h), h, s)
    }

    /// The number of `s` if it is here, and its hash.
    fn find(&self, s: &[u8]) -> (Option<u32>, u32) {
        let h = hash(s);
        (self.probe(s, h).ok(), h)
    }

    /// The number of `s`, whose hash is `h`, if it is here; else the free slot where it would
    /// go.
    fn probe(&self, s: &[u8], h: u32) -> Result<u32, usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        loop {
            let slot = self.slots[i];
            if slot.id == 0 {
                return Err(i);
            }
            if slot.tag == h && slot.len as usize == s.len() {
                let start = slot.start as usize;
                let text = self.text.as_bytes().get(start..start + s.len());
                if text.is_some_and(|t| same(t, s)) {
                    return Ok(slot.id - 1);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The number of `s`, whose hash is `h` (see [`Interner::intern_spans`]).
    fn intern_hashed(&mut self, s: &[u8], h: u32) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        match self.probe(s, h) {
            Ok(number) => Some(number),
            Err(slot) => self.insert_at(slot, h, std::str::from_utf8(s).ok()?),
        }
    }

    /// Stores `s` as a new string: its number; `None` if the strings would outgrow the 4 GiB
    /// a slot can point into.
    fn store(&mut self, s: &str) -> Option<u32> {
        let id = u32::try_from(self.ends.len()).ok()?;
        let start = u32::try_from(self.text.len()).ok()?;
        start.checked_add(u32::try_from(s.len()).ok()?)?;
        // Numbers stay below `u32::MAX`, which `Slot::id` holds plus one.
        id.checked_add(1)?;
        self.text.push_str(s);
        self.ends.push(self.text.len());
        Some(id)
    }

    /// Stores `s`, whose hash is `tag`, as a new string in the free slot `i`.
    fn insert_at(&mut self, i: usize, tag: u32, s: &str) -> Option<u32> {
        let start = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(s.len()).ok()?;
        let id = self.store(s)?;
        self.slots[i] = Slot {
            tag,
            len,
            start,
            id: id.checked_add(1)?,
        };
        if self.ends.len() * 2 > self.slots.len() {
            self.grow();
        }
        Some(id)
    }

    /// Doubles the table, placing every string again by its tag (no string is read).
    fn grow(&mut self) {
        let twice = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, twice);
        for slot in old.into_iter().filter(|s| s.id != 0) {
            let i = self.free_slot(slot.tag);
            self.slots[i] = slot;
        }
    }
}

/// Strings looked up per task by [`Interner::renumber_into`].
const BATCH: usize = 4096;

/// Whether `a` and `b` (of the same length) are equal: 16 bytes at a time, inline (a call to
/// `memcmp` costs more than the comparison of a store path).
fn same(a: &[u8], b: &[u8]) -> bool {
    let (mut x, mut y) = (a.chunks_exact(16), b.chunks_exact(16));
    let word = |c: &[u8]| u128::from_le_bytes(c.try_into().unwrap_or([0; 16]));
    if !x.by_ref().zip(y.by_ref()).all(|(p, q)| word(p) == word(q)) {
        return false;
    }
    x.remainder() == y.remainder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_numbered_in_first_seen_order() {
        let mut t = Interner::with_capacity(1);
        let words: Vec<String> = (0..1000).map(|i| format!("/nix/store/{i:032}-x")).collect();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.intern(w), Some(i as u32));
        }
        for (i, w) in words.iter().enumerate().rev() {
            assert_eq!(t.intern(w), Some(i as u32));
            assert_eq!(t.get(i as u32), w);
        }
        assert_eq!(t.intern(""), Some(1000));
        assert_eq!(t.get(1000), "");
        assert_eq!(t.len(), 1001);
        assert_eq!(t.get(5000), "");
        assert_eq!(t.intern_bytes(b"\xff"), None);
        assert_eq!(t.intern_bytes(b"/nix/store/x"), Some(1001));
    }

    #[test]
    fn batches_number_as_single_lookups_do() {
        let text = b"/nix/store/a-x/nix/store/b-y/nix/store/a-x/nix/store/a-";
        let spans = [(0, 14), (14, 28), (28, 42), (42, 55), (0, 0)];
        let mut t = Interner::with_capacity(1);
        let mut ids = Vec::new();
        t.intern_spans(text, &spans, &mut ids).unwrap();
        assert_eq!(ids, [0, 1, 0, 2, 3]);
        assert_eq!(t.get(2), "/nix/store/a-");
        assert!(t.intern_spans(text, &[(0, 99)], &mut ids).is_none());
        let mut u = Interner::with_capacity(1);
        u.intern("/nix/store/b-y");
        assert_eq!(t.renumber_into(&mut u), Some(vec![1, 0, 2, 3]));
    }

    #[test]
    fn renumbering_maps_each_string_to_its_own_number() {
        // Half the strings are in both, on several tasks, and the target grows.
        let name = |i: usize| format!("/nix/store/{i:032}-x");
        let (mut from, mut into) = (Interner::with_capacity(1), Interner::with_capacity(1));
        for i in 0..20_000 {
            from.intern(&name(i));
        }
        for i in (10_000..30_000).rev() {
            into.intern(&name(i));
        }
        let ids = from.renumber_into(&mut into).unwrap();
        assert_eq!(into.len(), 30_000);
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(into.get(id), name(i));
        }
        assert_eq!(into.intern(&name(3)), Some(ids[3]));
        // For the last time: the same numbers, and the table is gone.
        let mut last = Interner::with_capacity(1);
        for i in (10_000..30_000).rev() {
            last.intern(&name(i));
        }
        assert_eq!(from.renumber_into_last(&mut last), Some(ids));
        assert_eq!(last.len(), 30_000);
        assert_eq!(last.get(29_999), name(9_999));
        assert_eq!(last.intern(&name(3)), None);
        assert_eq!(from.renumber_into(&mut last), None);
    }

    #[test]
    fn equal_means_every_byte_equal() {
        let a: Vec<u8> = (0..40).collect();
        for n in 0..40 {
            assert!(same(&a[..n], &a[..n]));
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 0x80;
                assert!(!same(&a[..n], &b), "{n} {i}");
            }
        }
    }
}
