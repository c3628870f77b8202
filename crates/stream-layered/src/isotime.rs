//! `datetime.fromisoformat` and `datetime.isoformat` as CPython 3.11+ do them, for `created` and `mtime`.
//!
//! A time without an offset is taken as UTC (Python would use the local zone; Nix builders run in UTC).

/// A parsed point in time: civil fields plus an optional UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Year.
    pub year: i64,
    /// Month 1-12.
    pub month: u32,
    /// Day 1-31.
    pub day: u32,
    /// Hour.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Microseconds.
    pub micro: u32,
    /// Offset from UTC in microseconds, if the time has one.
    pub offset_us: Option<i64>,
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let part = self.s.get(self.i..self.i + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(
            part.iter()
                .fold(0, |acc, &d| acc * 10 + u32::from(d - b'0')),
        )
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

/// Parses `HH[:MM[:SS[.ffffff]]]` (or the basic form without colons); returns (h, m, s, us).
fn parse_time(c: &mut Cursor<'_>) -> Option<(u32, u32, u32, u32)> {
    let h = c.digits(2)?;
    let mut m = 0;
    let mut sec = 0;
    let mut us = 0;
    let extended = c.peek() == Some(b':');
    let more = |c: &mut Cursor<'_>| {
        if extended {
            c.eat(b':')
        } else {
            c.peek().is_some_and(|b| b.is_ascii_digit())
        }
    };
    if more(c) {
        m = c.digits(2)?;
        if more(c) {
            sec = c.digits(2)?;
            if c.eat(b'.') || c.eat(b',') {
                let start = c.i;
                while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                    c.i += 1;
                }
                let frac = &c.s[start..c.i];
                if frac.is_empty() {
                    return None;
                }
                let mut v = 0u32;
                for k in 0..6 {
                    v = v * 10 + frac.get(k).map_or(0, |&d| u32::from(d - b'0'));
                }
                us = v;
            }
        }
    }
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some((h, m, sec, us))
}

/// `datetime.fromisoformat(s)`.
pub fn parse(s: &str) -> Option<DateTime> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let year = c.digits(4)?;
    let extended = c.eat(b'-');
    let month = c.digits(2)?;
    if extended && !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(i64::from(year), month)
        || year == 0
    {
        return None;
    }
    let mut dt = DateTime {
        year: i64::from(year),
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        micro: 0,
        offset_us: None,
    };
    if c.done() {
        return Some(dt);
    }
    // Any single character separates the date from the time.
    let sep_len = s[c.i..].chars().next().map_or(1, char::len_utf8);
    c.i += sep_len;
    let (h, m, sec, us) = parse_time(&mut c)?;
    dt.hour = h;
    dt.minute = m;
    dt.second = sec;
    dt.micro = us;
    if c.done() {
        return Some(dt);
    }
    if c.eat(b'Z') {
        dt.offset_us = Some(0);
    } else {
        let sign: i64 = if c.eat(b'+') {
            1
        } else if c.eat(b'-') {
            -1
        } else {
            return None;
        };
        let (oh, om, os, ous) = parse_time(&mut c)?;
        let total = ((i64::from(oh) * 60 + i64::from(om)) * 60 + i64::from(os)) * 1_000_000
            + i64::from(ous);
        dt.offset_us = Some(sign * total);
    }
    c.done().then_some(dt)
}

impl DateTime {
    /// The UTC time `secs.micro` since the epoch, with a `+00:00` offset (`datetime.now(tz=utc)`).
    pub fn from_unix(secs: i64, micro: u32) -> DateTime {
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            micro,
            offset_us: Some(0),
        }
    }

    /// `int(dt.timestamp())`: seconds since the epoch, truncated toward zero.
    pub fn timestamp(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        let total_us = i128::from(secs) * 1_000_000 + i128::from(self.micro)
            - i128::from(self.offset_us.unwrap_or(0));
        (total_us / 1_000_000) as i64
    }

    /// `dt.isoformat()`.
    pub fn isoformat(&self) -> String {
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.micro != 0 {
            s.push_str(&format!(".{:06}", self.micro));
        }
        if let Some(off) = self.offset_us {
            let sign = if off < 0 { '-' } else { '+' };
            let a = off.unsigned_abs();
            let (us, secs) = (a % 1_000_000, a / 1_000_000);
            s.push_str(&format!("{sign}{:02}:{:02}", secs / 3600, secs / 60 % 60));
            if secs % 60 != 0 || us != 0 {
                s.push_str(&format!(":{:02}", secs % 60));
                if us != 0 {
                    s.push_str(&format!(".{us:06}"));
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_like_python() {
        let cases = [
            ("1970-01-01T00:00:01+00:00", "1970-01-01T00:00:01+00:00", 1),
            ("1970-01-01T00:00:01Z", "1970-01-01T00:00:01+00:00", 1),
            ("2024-02-29 12:30", "2024-02-29T12:30:00", 1709209800),
            ("2024-01-01", "2024-01-01T00:00:00", 1704067200),
            (
                "2024-01-01T01:00:00.5+01:00",
                "2024-01-01T01:00:00.500000+01:00",
                1704067200,
            ),
            ("20240101T010203", "2024-01-01T01:02:03", 1704070923),
            (
                "1969-12-31T23:59:59.5+00:00",
                "1969-12-31T23:59:59.500000+00:00",
                0,
            ),
        ];
        for (input, iso, ts) in cases {
            let dt = parse(input).unwrap_or_else(|| panic!("{input} did not parse"));
            assert_eq!(dt.isoformat(), iso, "{input}");
            assert_eq!(dt.timestamp(), ts, "{input}");
        }
        assert!(parse("2024-13-01").is_none());
        assert!(parse("yesterday").is_none());
        assert_eq!(
            DateTime::from_unix(1, 5).isoformat(),
            "1970-01-01T00:00:01.000005+00:00"
        );
    }
}
