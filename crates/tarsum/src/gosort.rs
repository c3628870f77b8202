//! Go's `sort.Sort`, step for step: the exact sequence of comparisons and swaps Go makes.
//!
//! Docker's tarsum sorts its entry sums with a comparison that is not a total order when two
//! entries share a name (same name: by position, otherwise by sum), so the order it leaves
//! depends on Go's algorithm, not only on the comparison.
//! Go (since 1.19) uses pattern-defeating quicksort: insertion sort up to 12 elements, a pivot
//! from a median of three or a Tukey ninther, a deterministic shuffle after unbalanced
//! partitions and heapsort after too many of them.
//! This module follows that algorithm over an index-based [`SortData`], so any comparison,
//! consistent or not, gives Go's order, in O(n log n) comparisons, and can never panic:
//! every index it touches stays inside the range being sorted.

/// A sequence sorted by index, as Go's `sort.Interface`.
pub trait SortData {
    /// Number of elements.
    fn len(&self) -> usize;
    /// Whether element `i` goes before element `j`; need not be a consistent order.
    fn less(&self, i: usize, j: usize) -> bool;
    /// Swaps elements `i` and `j`.
    fn swap(&mut self, i: usize, j: usize);
}

/// Ranges this short are insertion-sorted.
const MAX_INSERTION: usize = 12;
/// From this length on, the pivot is a median of three medians (Tukey's ninther).
const SHORTEST_NINTHER: usize = 50;
/// Below this length, a nearly sorted range is not repaired by shifting.
const SHORTEST_SHIFTING: usize = 50;
/// Out-of-order pairs a nearly sorted range may have and still be repaired by shifting.
const MAX_SHIFT_STEPS: usize = 5;
/// Swaps made by choosing a ninther pivot in a strictly decreasing range.
const MAX_PIVOT_SWAPS: usize = 12;

/// What choosing the pivot revealed about the range.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hint {
    Unknown,
    Increasing,
    Decreasing,
}

/// Sorts `data` exactly as Go's `sort.Sort` does.
pub fn sort<D: SortData + ?Sized>(data: &mut D) {
    let n = data.len();
    if n <= 1 {
        return;
    }
    let limit = bit_len(n);
    pdqsort(data, 0, n, limit);
}

/// Number of bits needed to write `n` (Go's `bits.Len`).
fn bit_len(n: usize) -> u32 {
    usize::BITS - n.leading_zeros()
}

fn insertion_sort<D: SortData + ?Sized>(data: &mut D, a: usize, b: usize) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && data.less(j, j - 1) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Restores the max-heap property below `root`, in the heap stored at `first..first + hi`.
fn sift_down<D: SortData + ?Sized>(data: &mut D, mut root: usize, hi: usize, first: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child >= hi {
            return;
        }
        if child + 1 < hi && data.less(first + child, first + child + 1) {
            child += 1;
        }
        if !data.less(first + root, first + child) {
            return;
        }
        data.swap(first + root, first + child);
        root = child;
    }
}

fn heap_sort<D: SortData + ?Sized>(data: &mut D, a: usize, b: usize) {
    let hi = b - a;
    for i in (0..=(hi - 1) / 2).rev() {
        sift_down(data, i, hi, a);
    }
    for i in (0..hi).rev() {
        data.swap(a, a + i);
        sift_down(data, 0, i, a);
    }
}

/// Sorts `a..b`; `limit` is how many unbalanced partitions are allowed before heapsort.
fn pdqsort<D: SortData + ?Sized>(data: &mut D, mut a: usize, mut b: usize, mut limit: u32) {
    let mut was_balanced = true;
    let mut was_partitioned = true;
    loop {
        let length = b - a;
        if length <= MAX_INSERTION {
            insertion_sort(data, a, b);
            return;
        }
        if limit == 0 {
            heap_sort(data, a, b);
            return;
        }
        if !was_balanced {
            break_patterns(data, a, b);
            limit -= 1;
        }
        let (mut pivot, mut hint) = choose_pivot(data, a, b);
        if hint == Hint::Decreasing {
            reverse_range(data, a, b);
            // The pivot keeps its distance from the other end.
            pivot = (b - 1) - (pivot - a);
            hint = Hint::Increasing;
        }
        if was_balanced
            && was_partitioned
            && hint == Hint::Increasing
            && partial_insertion_sort(data, a, b)
        {
            return;
        }
        // Nothing in a..b is less than the element before it: the pivot's equals go first.
        if a > 0 && !data.less(a - 1, pivot) {
            a = partition_equal(data, a, b, pivot);
            continue;
        }
        let (mid, already) = partition(data, a, b, pivot);
        was_partitioned = already;
        let (left, right) = (mid - a, b - mid);
        let threshold = length / 8;
        // Recurse into the shorter side, loop on the longer one: the depth stays logarithmic.
        if left < right {
            was_balanced = left >= threshold;
            pdqsort(data, a, mid, limit);
            a = mid + 1;
        } else {
            was_balanced = right >= threshold;
            pdqsort(data, mid + 1, b, limit);
            b = mid;
        }
    }
}

/// One quicksort partition around `pivot`: returns its new index and whether nothing moved.
fn partition<D: SortData + ?Sized>(
    data: &mut D,
    a: usize,
    b: usize,
    pivot: usize,
) -> (usize, bool) {
    data.swap(a, pivot);
    // `i` and `j` bound the unpartitioned elements, both inclusive; `j` never drops below `a`.
    let (mut i, mut j) = (a + 1, b - 1);
    while i <= j && data.less(i, a) {
        i += 1;
    }
    while i <= j && !data.less(j, a) {
        j -= 1;
    }
    if i > j {
        data.swap(j, a);
        return (j, true);
    }
    data.swap(i, j);
    i += 1;
    j -= 1;
    loop {
        while i <= j && data.less(i, a) {
            i += 1;
        }
        while i <= j && !data.less(j, a) {
            j -= 1;
        }
        if i > j {
            break;
        }
        data.swap(i, j);
        i += 1;
        j -= 1;
    }
    data.swap(j, a);
    (j, false)
}

/// Moves the elements equal to the pivot to the front of `a..b`; returns where the rest starts.
fn partition_equal<D: SortData + ?Sized>(data: &mut D, a: usize, b: usize, pivot: usize) -> usize {
    data.swap(a, pivot);
    let (mut i, mut j) = (a + 1, b - 1);
    loop {
        while i <= j && !data.less(a, i) {
            i += 1;
        }
        while i <= j && data.less(a, j) {
            j -= 1;
        }
        if i > j {
            return i;
        }
        data.swap(i, j);
        i += 1;
        j -= 1;
    }
}

/// Repairs a nearly sorted range by a few shifts; true when `a..b` ends up sorted.
fn partial_insertion_sort<D: SortData + ?Sized>(data: &mut D, a: usize, b: usize) -> bool {
    let mut i = a + 1;
    for _ in 0..MAX_SHIFT_STEPS {
        while i < b && !data.less(i, i - 1) {
            i += 1;
        }
        if i == b {
            return true;
        }
        if b - a < SHORTEST_SHIFTING {
            return false;
        }
        data.swap(i, i - 1);
        // Go shifts the smaller element left down to index 1 of the whole sequence, not to
        // `a + 1`: with an inconsistent comparison that is observable, so it is kept.
        if i - a >= 2 {
            let mut j = i - 1;
            while j >= 1 && data.less(j, j - 1) {
                data.swap(j, j - 1);
                j -= 1;
            }
        }
        if b - i >= 2 {
            let mut j = i + 1;
            while j < b && data.less(j, j - 1) {
                data.swap(j, j - 1);
                j += 1;
            }
        }
    }
    false
}

/// Swaps three elements around the middle with pseudo-random others; the generator is
/// seeded with the length, so the shuffle is the same on every run.
fn break_patterns<D: SortData + ?Sized>(data: &mut D, a: usize, b: usize) {
    let length = b - a;
    if length < 8 {
        return;
    }
    let mut state = length as u64;
    let mask = (1usize << bit_len(length)) - 1;
    let middle = a + (length / 4) * 2;
    for idx in middle - 1..=middle + 1 {
        // Marsaglia's xorshift with shifts 13, 7, 17.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut other = (state as usize) & mask;
        if other >= length {
            other -= length;
        }
        data.swap(idx, a + other);
    }
}

/// Picks the pivot: the element at a quarter-multiple for short ranges, a median of three,
/// or a ninther from 50 elements on; the number of swaps hints at the range's order.
fn choose_pivot<D: SortData + ?Sized>(data: &mut D, a: usize, b: usize) -> (usize, Hint) {
    let l = b - a;
    let mut swaps = 0;
    let mut i = a + l / 4;
    let mut j = a + l / 4 * 2;
    let mut k = a + l / 4 * 3;
    if l >= 8 {
        if l >= SHORTEST_NINTHER {
            i = median(data, i - 1, i, i + 1, &mut swaps);
            j = median(data, j - 1, j, j + 1, &mut swaps);
            k = median(data, k - 1, k, k + 1, &mut swaps);
        }
        j = median(data, i, j, k, &mut swaps);
    }
    let hint = match swaps {
        0 => Hint::Increasing,
        MAX_PIVOT_SWAPS => Hint::Decreasing,
        _ => Hint::Unknown,
    };
    (j, hint)
}

/// The two indices ordered by their elements, counting a swap when they were reversed.
fn order2<D: SortData + ?Sized>(data: &D, a: usize, b: usize, swaps: &mut usize) -> (usize, usize) {
    if data.less(b, a) {
        *swaps += 1;
        (b, a)
    } else {
        (a, b)
    }
}

/// The index of the median of three elements.
fn median<D: SortData + ?Sized>(
    data: &D,
    a: usize,
    b: usize,
    c: usize,
    swaps: &mut usize,
) -> usize {
    let (a, b) = order2(data, a, b, swaps);
    let (b, _) = order2(data, b, c, swaps);
    let (_, b) = order2(data, a, b, swaps);
    b
}

fn reverse_range<D: SortData + ?Sized>(data: &mut D, a: usize, b: usize) {
    let (mut i, mut j) = (a, b - 1);
    while i < j {
        data.swap(i, j);
        i += 1;
        j -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sorts a vector of keys with a given comparison, recording nothing else.
    struct Keys<F: Fn(u64, u64) -> bool> {
        keys: Vec<u64>,
        less: F,
    }

    impl<F: Fn(u64, u64) -> bool> SortData for Keys<F> {
        fn len(&self) -> usize {
            self.keys.len()
        }
        fn less(&self, i: usize, j: usize) -> bool {
            (self.less)(self.keys[i], self.keys[j])
        }
        fn swap(&mut self, i: usize, j: usize) {
            self.keys.swap(i, j);
        }
    }

    fn pseudo_random(n: usize, seed: u64, modulo: u64) -> Vec<u64> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s % modulo
            })
            .collect()
    }

    #[test]
    fn a_consistent_order_is_sorted_like_std() {
        for n in [0, 1, 2, 12, 13, 49, 50, 51, 300, 5000] {
            for (seed, modulo) in [(1, u64::MAX), (2, 3), (3, 1000)] {
                let keys = pseudo_random(n, seed, modulo);
                let mut want = keys.clone();
                want.sort_unstable();
                let mut data = Keys {
                    keys,
                    less: |x, y| x < y,
                };
                sort(&mut data);
                assert_eq!(data.keys, want, "n={n} seed={seed}");
            }
        }
    }

    #[test]
    fn sorted_reversed_and_sawtooth_inputs_are_sorted() {
        let n = 1000u64;
        let inputs: [Vec<u64>; 4] = [
            (0..n).collect(),
            (0..n).rev().collect(),
            (0..n).map(|i| i % 17).collect(),
            (0..n).map(|i| if i % 2 == 0 { i } else { n - i }).collect(),
        ];
        for keys in inputs {
            let mut want = keys.clone();
            want.sort_unstable();
            let mut data = Keys {
                keys,
                less: |x, y| x < y,
            };
            sort(&mut data);
            assert_eq!(data.keys, want);
        }
    }

    #[test]
    fn an_inconsistent_comparison_never_panics_and_keeps_every_element() {
        for n in [13, 50, 64, 65, 300, 4096] {
            for seed in 1..20 {
                let keys: Vec<u64> = (0..n as u64).collect();
                let noise = pseudo_random(n * n.min(64), seed, 2);
                let mut data = Keys {
                    keys,
                    // An arbitrary, non-transitive relation.
                    less: move |x, y| {
                        let k = (x as usize * 31 + y as usize * 17) % noise.len();
                        noise[k] == 1
                    },
                };
                sort(&mut data);
                let mut seen = data.keys.clone();
                seen.sort_unstable();
                assert_eq!(seen, (0..n as u64).collect::<Vec<_>>());
            }
        }
    }

    /// Elements as tarsum sorts them (a name, a sum, a position), drawn from a seed, under
    /// one of three comparisons: tarsum's (0), "always less" (1) or a coin flip per pair (2).
    struct Entries {
        items: Vec<(u64, u64, usize)>,
        mode: u8,
        salt: u64,
    }

    impl SortData for Entries {
        fn len(&self) -> usize {
            self.items.len()
        }
        fn less(&self, i: usize, j: usize) -> bool {
            let (a, b) = (self.items[i], self.items[j]);
            match self.mode {
                0 if a.0 == b.0 => a.2 < b.2,
                0 => a.1 < b.1,
                1 => true,
                _ => {
                    let mut h = (a.2 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ (b.2 as u64).wrapping_add(self.salt);
                    h ^= h >> 31;
                    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    h ^= h >> 29;
                    h & 1 == 1
                }
            }
        }
        fn swap(&mut self, i: usize, j: usize) {
            self.items.swap(i, j);
        }
    }

    /// The positions in the order `sort` leaves them, joined by commas.
    fn sorted_positions(n: usize, names: u64, sums: u64, seed: u64, mode: u8) -> String {
        let mut s = seed;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let items = (0..n).map(|i| (next() % names, next() % sums, i)).collect();
        let mut data = Entries {
            items,
            mode,
            salt: seed,
        };
        sort(&mut data);
        let order: Vec<String> = data.items.iter().map(|e| e.2.to_string()).collect();
        order.join(",")
    }

    fn sha256_hex(s: &str) -> String {
        use sha2::{Digest, Sha256};
        dockertools_common::hash::hex(&Sha256::digest(s.as_bytes()))
    }

    #[test]
    fn inconsistent_comparisons_leave_go_s_order() {
        // Expected values: the same elements sorted by Go's sort.Sort (Go 1.27), recorded once.
        // Together they take every path: insertion sort, ninther pivots, reversal, partial
        // insertion sort, equal partitions, pattern breaking and the heapsort fallback.
        let half = 1 << 63;
        assert_eq!(
            sorted_positions(13, 2, half, 5, 0),
            "1,4,12,2,3,5,0,6,7,8,11,9,10"
        );
        assert_eq!(
            sorted_positions(50, 5, half, 6, 0),
            "1,10,38,42,18,47,2,4,5,27,32,36,11,40,17,33,24,25,34,49,28,8,12,15,16,19,30,37,14,\
             29,7,9,23,39,44,45,0,3,31,6,13,20,41,35,26,43,22,46,48,21"
        );
        assert_eq!(
            sha256_hex(&sorted_positions(3000, 3, 10, 7, 0)),
            "3238bf15c6ed2d8416dd899bf616778220ba59ac79551d73401d842cac4bd2b3"
        );
        assert_eq!(
            sorted_positions(13, 1, 1, 1, 1),
            "11,10,9,8,7,0,5,4,3,2,1,12,6"
        );
        assert_eq!(
            sorted_positions(50, 1, 1, 1, 1),
            "6,49,34,10,18,26,2,40,44,7,12,16,28,8,46,21,24,0,43,32,23,45,39,17,31,13,15,29,11,\
             37,9,27,14,41,5,25,20,22,1,42,38,48,36,47,30,33,35,4,3,19"
        );
        for (n, seed, mode, want) in [
            (
                1000,
                1,
                1,
                "4ef34dd2674a7b416b9e9750634f01f51a5d7f3efc04296c99e380c967c5e655",
            ),
            (
                300,
                11,
                2,
                "489a48448172b0368ccd56ec5544f51261035a6e99ec38d40fd0842d0b2569c2",
            ),
            (
                3000,
                12,
                2,
                "54979c5e08516bfd3eb34268b01585e099a4ca311888e7fb9e0b5a9ff9c75154",
            ),
        ] {
            let got = sorted_positions(n, 1, 1, seed, mode);
            assert_eq!(sha256_hex(&got), want, "n={n} mode={mode}");
        }
    }

    #[test]
    fn up_to_twelve_elements_is_insertion_sort() {
        // Go's insertion sort moves an element left while it is less than its neighbour;
        // with "always less" every element walks to the front, reversing the input.
        let mut data = Keys {
            keys: (0..12).collect(),
            less: |_, _| true,
        };
        sort(&mut data);
        assert_eq!(data.keys, (0..12).rev().collect::<Vec<_>>());
    }
}
