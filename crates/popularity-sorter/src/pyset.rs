//! CPython's hash of `str` and `frozenset`, and the iteration order of its `set`, as nixpkgs
//! runs the originals: with `PYTHONHASHSEED=0` (set by its python3 setup hook), where hash
//! randomisation is off and every hash is a fixed function of the value.
//!
//! Where the originals print items in set order, that order is reproduced here exactly:
//! - `str`: SipHash-1-3 (CPython's default since 3.11; SipHash-2-4 before) with an all-zero
//!   key, over the string's internal representation: one byte per character when every
//!   character is below U+0100, else two bytes (below U+10000) or four, little-endian;
//!   the empty string hashes to 0, and -1 becomes -2.
//! - `frozenset`: the xor of a bit shuffle of each element's hash, mixed with the size and
//!   dispersed ([`frozenset_hash`]).
//! - `set`: an open-addressing table of `8 * 2^k` slots; an item goes to slot `hash & mask`,
//!   or to the first free slot of the next 9 when they fit in the table, or else on to slot
//!   `(i * 5 + 1 + perturb) & mask` with `perturb` the hash shifted right by 5 more bits
//!   each time; once 3/5 of the slots have been filled, the table grows to the smallest
//!   size above 4 times the items (2 times above 50,000 items) and the items move over in
//!   slot order. Iteration is slot order. [`PySet`] follows these rules, and `pop`'s.
//!
//! Checked against CPython 3.11 on random inputs (`tests` here, and the scripts of the
//! README's decisions); CPython 3.12's and 3.14's `setobject.c` and `pyhash.h` have the same
//! rules, so 3.11 to 3.14 give the same order on 64-bit little-endian machines.

/// SipHash with `c` compression and `d` finalisation rounds and the key `(k0, k1)`.
fn siphash(c: usize, d: usize, k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let round = |v: &mut [u64; 4]| {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    };
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..c {
            round(v);
        }
        v[0] ^= m;
    };
    let mut words = data.chunks_exact(8);
    for w in words.by_ref() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        compress(&mut v, u64::from_le_bytes(b));
    }
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    last[7] = data.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..d {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// `hash(s)` under `PYTHONHASHSEED=0` (CPython 3.11 and later, 64 bits).
pub fn str_hash(s: &str) -> i64 {
    if s.is_empty() {
        return 0;
    }
    let widest = s.chars().map(u32::from).max().unwrap_or(0);
    let h = if widest < 0x100 {
        if s.is_ascii() {
            siphash(1, 3, 0, 0, s.as_bytes())
        } else {
            let latin1: Vec<u8> = s.chars().map(|c| u32::from(c) as u8).collect();
            siphash(1, 3, 0, 0, &latin1)
        }
    } else if widest < 0x1_0000 {
        let ucs2: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        siphash(1, 3, 0, 0, &ucs2)
    } else {
        let ucs4: Vec<u8> = s.chars().flat_map(|c| u32::from(c).to_le_bytes()).collect();
        siphash(1, 3, 0, 0, &ucs4)
    } as i64;
    if h == -1 {
        -2
    } else {
        h
    }
}

fn shuffle_bits(h: u64) -> u64 {
    ((h ^ 89_869_747) ^ (h << 16)).wrapping_mul(3_644_798_167)
}

/// `hash(frozenset(items))`, given the hashes of its (distinct) items.
pub fn frozenset_hash(item_hashes: impl Iterator<Item = i64>) -> i64 {
    let mut h = 0u64;
    let mut len = 0u64;
    for x in item_hashes {
        h ^= shuffle_bits(x as u64);
        len += 1;
    }
    h ^= (len + 1).wrapping_mul(1_927_868_237);
    h ^= (h >> 11) ^ (h >> 25);
    h = h.wrapping_mul(69_069).wrapping_add(907_133_923);
    if h == u64::MAX {
        590_923_713
    } else {
        h as i64
    }
}

/// A slot of the table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Empty,
    /// Where an item was popped.
    Dummy,
    Active(i64, u32),
}

/// Slots looked at one after the other before jumping elsewhere.
const LINEAR_PROBES: usize = 9;
const PERTURB_SHIFT: u32 = 5;
const MIN_SIZE: usize = 8;

/// A CPython `set` of items `0..n` (the caller's indices) with given hashes, as far as the
/// order of its items goes. Items with equal hashes are told apart by their index: the
/// caller gives equal values one index.
#[derive(Clone)]
pub struct PySet {
    table: Vec<Slot>,
    fill: usize,
    used: usize,
    finger: usize,
}

impl Default for PySet {
    fn default() -> Self {
        PySet {
            table: vec![Slot::Empty; MIN_SIZE],
            fill: 0,
            used: 0,
            finger: 0,
        }
    }
}

impl PySet {
    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    /// The slots a search for `hash` visits, in order (without end: the caller stops).
    fn probe(hash: i64, mask: usize) -> impl Iterator<Item = usize> {
        let mut perturb = hash as u64;
        let mut i = (hash as u64 as usize) & mask;
        std::iter::from_fn(move || {
            let run = if i + LINEAR_PROBES <= mask {
                i..=i + LINEAR_PROBES
            } else {
                i..=i
            };
            perturb >>= PERTURB_SHIFT;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
            Some(run)
        })
        .flatten()
    }

    /// `set.add`: nothing when `item` is in the set already.
    pub fn add(&mut self, hash: i64, item: u32) {
        let mut free = None;
        let mut found = None;
        for j in Self::probe(hash, self.mask()) {
            match self.table[j] {
                Slot::Empty => {
                    found = Some(j);
                    break;
                }
                Slot::Active(h, x) if h == hash && x == item => return,
                // CPython keeps the last dummy slot it passed.
                Slot::Dummy => free = Some(j),
                Slot::Active(..) => {}
            }
        }
        self.used += 1;
        if let Some(f) = free {
            self.table[f] = Slot::Active(hash, item);
            return;
        }
        let Some(j) = found else {
            return;
        };
        self.table[j] = Slot::Active(hash, item);
        self.fill += 1;
        if self.fill * 5 >= self.mask() * 3 {
            self.resize(if self.used > 50_000 {
                self.used * 2
            } else {
                self.used * 4
            });
        }
    }

    fn resize(&mut self, min_used: usize) {
        let mut size = MIN_SIZE;
        while size <= min_used {
            size <<= 1;
        }
        if size == MIN_SIZE && self.table.len() == MIN_SIZE && self.fill == self.used {
            return;
        }
        let old = std::mem::replace(&mut self.table, vec![Slot::Empty; size]);
        self.fill = self.used;
        for slot in old {
            if let Slot::Active(h, _) = slot {
                if let Some(j) = Self::probe(h, size - 1).find(|&j| self.table[j] == Slot::Empty) {
                    self.table[j] = slot;
                }
            }
        }
    }

    /// Whether `item` is in the set.
    pub fn contains(&self, hash: i64, item: u32) -> bool {
        for j in Self::probe(hash, self.mask()) {
            match self.table[j] {
                Slot::Empty => return false,
                Slot::Active(h, x) if h == hash && x == item => return true,
                _ => {}
            }
        }
        false
    }

    /// `set.pop`: the item at or after the search finger.
    pub fn pop(&mut self) -> Option<u32> {
        if self.used == 0 {
            return None;
        }
        let mask = self.mask();
        let mut j = self.finger & mask;
        loop {
            if let Slot::Active(_, x) = self.table[j] {
                self.table[j] = Slot::Dummy;
                self.used -= 1;
                self.finger = j + 1;
                return Some(x);
            }
            j = if j == mask { 0 } else { j + 1 };
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// The items in iteration order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().filter_map(|s| match s {
            Slot::Active(_, x) => Some(*x),
            _ => None,
        })
    }
}

/// `list(set(sorted(items)))` for distinct strings, as indices into `items`.
pub fn sorted_set_order(items: &[&str]) -> Vec<u32> {
    let mut sorted: Vec<u32> = (0..items.len() as u32).collect();
    // Python orders strings by code point, as their UTF-8 bytes order.
    sorted.sort_unstable_by_key(|&i| items[i as usize]);
    let mut set = PySet::default();
    for i in sorted {
        set.add(str_hash(items[i as usize]), i);
    }
    set.iter().collect()
}

/// The nodes `ranked` leaves out, in the order `closure-graph.py` and flatten-references-graph
/// add them at the end: that of `list(set(sorted(all paths)))`. `path` gives each of the
/// `n` nodes' distinct path.
pub fn unranked_in_set_order<'p>(
    n: usize,
    ranked: &[u32],
    path: impl Fn(u32) -> &'p str,
) -> Vec<u32> {
    if ranked.len() == n {
        return Vec::new();
    }
    let paths: Vec<&str> = (0..n as u32).map(path).collect();
    let mut is_ranked = vec![false; n];
    ranked.iter().for_each(|&v| is_ranked[v as usize] = true);
    sorted_set_order(&paths)
        .into_iter()
        .filter(|&v| !is_ranked[v as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Printed by `PYTHONHASHSEED=0 python3.11 -c 'print(hash(...))'`.
    #[test]
    fn str_hashes_are_cpythons() {
        for (s, h) in [
            ("", 0),
            ("a", 4_644_417_185_603_328_019),
            (
                "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-p0x",
                1_116_089_563_412_904_277,
            ),
            ("é", 6_047_309_291_227_476_195),
            ("€", -5_529_981_157_763_016_009),
            ("😀", -3_536_540_696_076_613_844),
            ("aé", -4_100_377_394_409_680_542),
        ] {
            assert_eq!(str_hash(s), h, "{s:?}");
        }
    }

    #[test]
    fn frozenset_hashes_are_cpythons() {
        assert_eq!(frozenset_hash(std::iter::empty()), 133_146_708_735_736);
        assert_eq!(
            frozenset_hash([str_hash("a")].into_iter()),
            -7_857_795_138_424_989_601
        );
        assert_eq!(
            frozenset_hash([str_hash("b"), str_hash("a")].into_iter()),
            1_679_668_661_828_516_449
        );
    }
}
