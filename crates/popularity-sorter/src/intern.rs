//! An interner of strings: each distinct string is copied once into one buffer and numbered
//! in the order it was first seen.
//!
//! It is the node list reader's only lookup per path or reference (auto-layer's hot spot).
//! The table holds 8 bytes per slot (part of the hash and the number), so it stays in cache;
//! a string is compared only when the stored hash part matches, and compared against the
//! interner's own compact copy, not the input.

/// Distinct strings, numbered from 0.
#[derive(Debug, Default)]
pub struct Interner {
    text: String,
    /// String `i` is `text[ends[i - 1]..ends[i]]` (from 0 for the first).
    ends: Vec<usize>,
    /// Open addressing with linear probing: `0` is a free slot, else the high half of the
    /// string's hash and its number plus one.
    slots: Vec<u64>,
    /// Scratch space of [`Interner::intern_spans`].
    hashes: Vec<u64>,
}

/// foldhash with its fixed seed: the strings are trusted build metadata (see `graph::FastMap`).
fn hash(s: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(s)
}

impl Interner {
    /// An interner sized for about `n` strings.
    pub fn with_capacity(n: usize) -> Self {
        Interner {
            text: String::with_capacity(n * 64),
            ends: Vec::with_capacity(n),
            slots: vec![0; (n * 2).next_power_of_two().max(64)],
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
    pub fn intern(&mut self, s: &str) -> u32 {
        // A `&str` is UTF-8.
        self.intern_bytes(s.as_bytes()).unwrap_or(0)
    }

    /// The number of `s`, given a new one if it is new; `None` if it is new and not UTF-8
    /// (only a new string is checked: one already here is).
    pub fn intern_bytes(&mut self, s: &[u8]) -> Option<u32> {
        self.intern_hashed(s, hash(s))
    }

    /// [`Interner::intern_bytes`] of `s`, whose hash is `h`.
    fn intern_hashed(&mut self, s: &[u8], h: u64) -> Option<u32> {
        let tag = h >> 32;
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return Some(self.insert_at(i, tag, std::str::from_utf8(s).ok()?));
            }
            let id = (slot as u32).wrapping_sub(1);
            if slot >> 32 == tag && self.get(id).as_bytes() == s {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
    }

    /// The numbers of the strings `b[start..end]` of `spans`, in order, into `ids` (see
    /// [`Interner::intern_bytes`]). Each string's slot, and the string it holds, are looked at
    /// for the whole batch first: those loads do not depend on one another, so their cache
    /// misses overlap, where one lookup after another would wait for each in turn.
    pub fn intern_spans(
        &mut self,
        b: &[u8],
        spans: &[(usize, usize)],
        ids: &mut Vec<u32>,
    ) -> Option<()> {
        let mask = self.slots.len() - 1;
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
        let mut touched = 0u64;
        let text = self.text.as_bytes();
        for &(start, end) in spans {
            let h = hash(b.get(start..end)?);
            hashes.push(h);
            let slot = self.slots[h as usize & mask];
            // The first and last byte of the string in that slot (a string may span two
            // cache lines).
            let id = (slot as u32).wrapping_sub(1) as usize;
            let from = id.checked_sub(1).and_then(|j| self.ends.get(j)).copied();
            let to = self.ends.get(id).copied().unwrap_or(0);
            let first = text.get(from.unwrap_or(0)).copied().unwrap_or(0);
            let last = text.get(to.wrapping_sub(1)).copied().unwrap_or(0);
            touched ^= slot ^ u64::from(first ^ last);
        }
        std::hint::black_box(touched);
        ids.clear();
        for (&(start, end), &h) in spans.iter().zip(&hashes) {
            ids.push(self.intern_hashed(b.get(start..end)?, h)?);
        }
        self.hashes = hashes;
        Some(())
    }

    /// Stores `s` as a new string in the free slot `i`.
    fn insert_at(&mut self, i: usize, tag: u64, s: &str) -> u32 {
        let id = self.ends.len() as u32;
        self.text.push_str(s);
        self.ends.push(self.text.len());
        self.slots[i] = tag << 32 | u64::from(id + 1);
        // At most half full, so that probe runs stay short.
        if self.ends.len() * 2 > self.slots.len() {
            self.grow();
        }
        id
    }

    /// Doubles the table, placing every string again.
    fn grow(&mut self) {
        let mut slots = vec![0u64; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for id in 0..self.ends.len() as u32 {
            let h = hash(self.get(id).as_bytes());
            let mut i = h as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = (h >> 32) << 32 | u64::from(id + 1);
        }
        self.slots = slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_numbered_in_first_seen_order() {
        let mut t = Interner::with_capacity(1);
        let words: Vec<String> = (0..1000).map(|i| format!("/nix/store/{i:032}-x")).collect();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.intern(w), i as u32);
        }
        for (i, w) in words.iter().enumerate().rev() {
            assert_eq!(t.intern(w), i as u32);
            assert_eq!(t.get(i as u32), w);
        }
        assert_eq!(t.intern(""), 1000);
        assert_eq!(t.get(1000), "");
        assert_eq!(t.len(), 1001);
        assert_eq!(t.get(5000), "");
        assert_eq!(t.intern_bytes(b"\xff"), None);
        assert_eq!(t.intern_bytes(b"/nix/store/x"), Some(1001));
    }
}
