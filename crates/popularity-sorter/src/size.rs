//! `narSize` values as the Python originals hold them, compared and added as Python does.
//!
//! Nix writes a non-negative integer, but the originals take whatever `json.load` gives:
//! integers of any size and sign, floats (`1e400` is infinity), `true`/`false` (1 and 0), and,
//! in flatten-references-graph, which only sorts by the size, strings.
//! Python compares an integer with a float exactly, so `1 < 1.5 < 2` and `1 == 1.0`;
//! a string against a number is a `TypeError`.
//! closure-graph.py never reads the size, so it is not parsed there at all.

use std::borrow::Cow;
use std::cmp::Ordering;

use num_bigint::BigInt;
use rayon::prelude::*;

use crate::graph::Node;
use crate::Error;

/// One `narSize`.
#[derive(Clone, Debug)]
pub enum Size<'a> {
    /// An integer (JSON integers, and `true`/`false` as 1/0).
    Int(i128),
    /// An integer beyond `i128`.
    Big(Box<BigInt>),
    /// A JSON number with a fraction or an exponent, as Python's `float()` reads it.
    Float(f64),
    /// A string (only flatten-references-graph accepts those).
    Text(Cow<'a, str>),
}

impl PartialEq for Size<'_> {
    /// The same value written the same way (a float compares by its bits), so that two
    /// readers of one input can be checked to agree; not Python's `==`.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Size::Int(a), Size::Int(b)) => a == b,
            (Size::Big(a), Size::Big(b)) => a == b,
            (Size::Float(a), Size::Float(b)) => a.to_bits() == b.to_bits(),
            (Size::Text(a), Size::Text(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Size<'_> {}

impl std::fmt::Display for Size<'_> {
    /// As Python prints the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Int(i) => write!(f, "{i}"),
            Size::Big(b) => write!(f, "{b}"),
            Size::Float(x) if x.is_nan() => f.write_str("nan"),
            Size::Float(x) if x.is_infinite() => f.write_str(if *x > 0.0 { "inf" } else { "-inf" }),
            Size::Float(x) => f.write_str(&dockertools_common::pyjson::float_repr(*x)),
            Size::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl Default for Size<'_> {
    fn default() -> Self {
        Size::Int(0)
    }
}

impl<'a> Size<'a> {
    /// The size of a JSON number's text, as `json.load` reads it: with a fraction or an
    /// exponent a float, else an integer of any size. `None` if `text` is not a number.
    pub fn from_number(text: &str) -> Option<Size<'a>> {
        if text.contains(['.', 'e', 'E']) {
            return text.parse::<f64>().ok().map(Size::Float);
        }
        match text.parse::<i128>() {
            Ok(i) => Some(Size::Int(i)),
            Err(_) => text.parse::<BigInt>().ok().map(|b| Size::Big(Box::new(b))),
        }
    }

    /// Whether this is a number (Python's `int`, `bool` or `float`).
    pub fn is_number(&self) -> bool {
        !matches!(self, Size::Text(_))
    }

    /// Python's order of two sizes; `None` where Python raises `TypeError` (a string
    /// against a number). JSON cannot spell NaN, so numbers are totally ordered.
    pub fn py_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Size::Text(a), Size::Text(b)) => Some(a.cmp(b)),
            (Size::Text(_), _) | (_, Size::Text(_)) => None,
            (Size::Int(a), Size::Int(b)) => Some(a.cmp(b)),
            (Size::Float(a), Size::Float(b)) => a.partial_cmp(b),
            (Size::Float(f), int) => int_cmp_float(int, *f).map(Ordering::reverse),
            (int, Size::Float(f)) => int_cmp_float(int, *f),
            (a, b) => Some(a.big()?.cmp(&b.big()?)),
        }
    }

    /// An integer as a `BigInt`; `None` for floats and strings.
    fn big(&self) -> Option<BigInt> {
        match self {
            Size::Int(i) => Some(BigInt::from(*i)),
            Size::Big(b) => Some((**b).clone()),
            Size::Float(_) | Size::Text(_) => None,
        }
    }
}

/// Node indices in the order of Python's stable `sorted(nodes, key=narSize)`. A string
/// among numbers is an error, as Python's sort compares the two kinds at some point (any
/// comparison sort compares every pair of neighbours in its result).
pub fn order_by_size(nodes: &[Node<'_>]) -> Result<Vec<u32>, Error> {
    order_by(
        nodes.len(),
        |k| &nodes[k].nar_size,
        |k| nodes[k].path.as_ref(),
    )
}

/// [`order_by_size`] of the `n` nodes whose sizes and paths are `size(k)` and `path(k)`.
pub fn order_by<'x, 's: 'x>(
    n: usize,
    size: impl Fn(usize) -> &'x Size<'s>,
    path: impl Fn(usize) -> &'x str,
) -> Result<Vec<u32>, Error> {
    let text = (0..n).find(|&k| !size(k).is_number());
    let number = (0..n).find(|&k| size(k).is_number());
    if let (Some(t), Some(k)) = (text, number) {
        return Err(Error::Input(format!(
            "narSize of {} is a string and that of {} a number: they cannot be compared",
            path(t),
            path(k)
        )));
    }
    // The usual case, plain integers, by key (stable, as the general case).
    let ints: Option<Vec<i128>> = (0..n)
        .map(|k| match size(k) {
            Size::Int(i) => Some(*i),
            _ => None,
        })
        .collect();
    if let Some(ints) = ints {
        // (size, position) pairs in increasing order are the stable order by size; sorted
        // side by side (no lookup per comparison) and on all cores. Sizes below 4 GiB (the
        // usual case) and positions make one 64-bit number each, which sorts fastest.
        if n <= u32::MAX as usize && ints.iter().all(|&i| (0..1 << 32).contains(&i)) {
            let mut keyed: Vec<u64> = (ints.into_iter().zip(0u64..))
                .map(|(size, k)| (size as u64) << 32 | k)
                .collect();
            keyed.par_sort_unstable();
            return Ok(keyed.into_iter().map(|key| key as u32).collect());
        }
        let mut keyed: Vec<(i128, u32)> = ints.into_iter().zip(0..).collect();
        keyed.par_sort_unstable();
        return Ok(keyed.into_iter().map(|(_, i)| i).collect());
    }
    // Within one kind every pair compares.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| {
        size(a as usize)
            .py_cmp(size(b as usize))
            .unwrap_or(Ordering::Equal)
    });
    Ok(order)
}

/// An integer size against a float, exactly (as Python compares `int` with `float`).
fn int_cmp_float(int: &Size<'_>, f: f64) -> Option<Ordering> {
    if let Size::Int(i) = int {
        // Integers up to 2^53 are exact as floats.
        if i.unsigned_abs() <= 1 << 53 {
            return (*i as f64).partial_cmp(&f);
        }
    }
    if f.is_infinite() {
        return Some(if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    let int = int.big()?;
    // f = m * 2^e exactly, m an integer of at most 53 bits.
    let bits = f.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = (bits & ((1 << 52) - 1)) as i64;
    let (m, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | 1 << 52, exp - 1075)
    };
    let m = BigInt::from(if bits >> 63 == 1 { -m } else { m });
    Some(if e >= 0 {
        int.cmp(&(m << e))
    } else {
        (int << -e).cmp(&m)
    })
}

/// A running Python `sum()` of sizes, added left to right as Python adds: integers exactly,
/// and from the first float on in floating point (each integer rounded to a float first).
/// Where Python adds in set order, the result can depend on that order once floats take part;
/// with integers only it never does.
#[derive(Clone, Debug, Default)]
pub struct Total(Size<'static>);

impl Total {
    /// Adds `s`; false where Python raises: a string (`TypeError`), or an integer too large
    /// for a float added to a float (`OverflowError`).
    pub fn add(&mut self, s: &Size<'_>) -> bool {
        let sum = match (&self.0, s) {
            (Size::Text(_), _) | (_, Size::Text(_)) => None,
            (Size::Int(a), Size::Int(b)) => Some(match a.checked_add(*b) {
                Some(v) => Size::Int(v),
                None => Size::Big(Box::new(BigInt::from(*a) + *b)),
            }),
            (Size::Float(a), Size::Float(b)) => Some(Size::Float(a + b)),
            (Size::Float(f), int) | (int, Size::Float(f)) => {
                int_to_f64(int).map(|i| Size::Float(i + f))
            }
            (a, b) => a.big().zip(b.big()).map(|(a, b)| {
                let sum = a + b;
                match i128::try_from(&sum) {
                    Ok(i) => Size::Int(i),
                    Err(_) => Size::Big(Box::new(sum)),
                }
            }),
        };
        match sum {
            Some(v) => {
                self.0 = v;
                true
            }
            None => false,
        }
    }

    /// The sum so far.
    pub fn value(&self) -> &Size<'static> {
        &self.0
    }
}

/// Python's `float(int)`: correctly rounded, `None` past the float range (`OverflowError`).
fn int_to_f64(int: &Size<'_>) -> Option<f64> {
    let f = match int {
        // `as` rounds to nearest, ties to even, as Python does.
        Size::Int(i) => *i as f64,
        Size::Big(b) => b.to_string().parse().ok()?,
        Size::Float(_) | Size::Text(_) => return None,
    };
    f.is_finite().then_some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Size<'static> {
        Size::from_number(text).unwrap_or(Size::Text("not a number".into()))
    }

    #[test]
    fn numbers_read_as_python_reads_them() {
        assert_eq!(n("-5"), Size::Int(-5));
        assert_eq!(n("-0"), Size::Int(0));
        assert_eq!(n("1e3"), Size::Float(1000.0));
        assert_eq!(n("1e400"), Size::Float(f64::INFINITY));
        assert_eq!(
            n("1000000000000000000000000000000000000000"),
            Size::Big(Box::new(BigInt::from(10u8).pow(39)))
        );
    }

    #[test]
    fn an_integer_and_a_float_compare_exactly() {
        let cmp = |a: &str, b: &str| n(a).py_cmp(&n(b));
        assert_eq!(cmp("1", "1.0"), Some(Ordering::Equal));
        assert_eq!(cmp("1", "1.5"), Some(Ordering::Less));
        assert_eq!(cmp("-3", "-5"), Some(Ordering::Greater));
        // 2^53 + 1 is not a float: the nearest float is 2^53, which is smaller.
        assert_eq!(
            cmp("9007199254740993", "9007199254740992.0"),
            Some(Ordering::Greater)
        );
        assert_eq!(
            cmp("100000000000000000000000000000000000000000", "1e41"),
            Some(Ordering::Less),
            "1e41 as a float is 100000000000000000620008645040778319495168"
        );
        assert_eq!(cmp("1e400", "1" /* any integer */), Some(Ordering::Greater));
        assert_eq!(
            cmp(&format!("1{}", "0".repeat(400)), "1e400"),
            Some(Ordering::Less)
        );
        assert_eq!(cmp("-0.5", "0"), Some(Ordering::Less));
        assert_eq!(
            n("1").py_cmp(&Size::Text("1".into())),
            None,
            "a string against a number is a TypeError"
        );
    }

    #[test]
    fn sums_keep_the_sign_and_any_size() {
        let sum = |items: &[&str]| {
            let mut t = Total::default();
            items
                .iter()
                .all(|s| t.add(&n(s)))
                .then(|| t.value().clone())
        };
        assert_eq!(
            sum(&["-5", "3", "170141183460469231731687303715884105727", "1"]),
            Some(n("170141183460469231731687303715884105726")),
            "back in range after overflowing i128"
        );
        assert_eq!(sum(&["2", "0.5"]), Some(Size::Float(2.5)));
        assert_eq!(sum(&["-3", "3"]), Some(Size::Int(0)));
        // Python: 9007199254740993 + 0.0 rounds the integer first; adding 1 to a float 2^53 is lost.
        assert_eq!(
            sum(&["0.0", "9007199254740992", "1"]),
            Some(Size::Float(9007199254740992.0))
        );
        assert_eq!(
            sum(&["9007199254740992", "1", "0.0"]),
            Some(Size::Float(9007199254740992.0))
        );
        assert_eq!(
            sum(&["9007199254740992", "1"]),
            Some(Size::Int(9007199254740993))
        );
        assert_eq!(
            sum(&["1.5", &format!("1{}", "0".repeat(400))]),
            None,
            "OverflowError"
        );
        let mut t = Total::default();
        assert!(!t.add(&Size::Text("x".into())), "TypeError");
    }
}
