//! PostgreSQL's numeric: a decimal number parsed from text, encoded to and
//! decoded from its binary form (base-10000 digits), normalised for hashing.

use bytes::{BufMut, BytesMut};

/// A decimal number as PostgreSQL's numeric holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decimal {
    NaN,
    Infinity,
    NegInfinity,
    Finite {
        negative: bool,
        /// Integer digits (no sign).
        int: String,
        /// Fraction digits, as written (trailing zeros kept: they are the scale).
        frac: String,
    },
}

impl Decimal {
    /// Parses `-12.340`, `1e3`, `.5`, `NaN`, `Infinity`.
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "nan" => return Some(Decimal::NaN),
            "infinity" | "+infinity" | "inf" => return Some(Decimal::Infinity),
            "-infinity" | "-inf" => return Some(Decimal::NegInfinity),
            _ => {}
        }
        let (negative, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
            None => (body, 0),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((a, b)) => (a, b),
            None => (mantissa, ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || exp.abs() > 1000
        {
            return None;
        }
        let mut digits = format!("{int}{frac}");
        let mut point = int.len() as i64 + exp as i64;
        if point < 0 {
            digits = "0".repeat((-point) as usize) + &digits;
            point = 0;
        }
        while (digits.len() as i64) < point {
            digits.push('0');
        }
        let (i, f) = digits.split_at(point as usize);
        let i = i.trim_start_matches('0');
        Some(Decimal::Finite {
            negative,
            int: if i.is_empty() { "0".into() } else { i.into() },
            frac: f.into(),
        })
    }

    /// The value with trailing fraction zeros and the sign of zero removed,
    /// the form both sides are hashed in.
    pub fn normalized(&self) -> String {
        match self {
            Decimal::NaN => "NaN".into(),
            Decimal::Infinity => "Infinity".into(),
            Decimal::NegInfinity => "-Infinity".into(),
            Decimal::Finite {
                negative,
                int,
                frac,
            } => {
                let f = frac.trim_end_matches('0');
                let i = int.trim_start_matches('0');
                let i = if i.is_empty() { "0" } else { i };
                let zero = i == "0" && f.is_empty();
                let sign = if *negative && !zero { "-" } else { "" };
                if f.is_empty() {
                    format!("{sign}{i}")
                } else {
                    format!("{sign}{i}.{f}")
                }
            }
        }
    }

    /// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then
    /// base-10000 digits.
    pub fn encode(&self, buf: &mut BytesMut) {
        let (negative, int, frac) = match self {
            Decimal::NaN => return put_numeric_head(buf, 0, 0, 0xC000, 0),
            Decimal::Infinity => return put_numeric_head(buf, 0, 0, 0xD000, 0),
            Decimal::NegInfinity => return put_numeric_head(buf, 0, 0, 0xF000, 0),
            Decimal::Finite {
                negative,
                int,
                frac,
            } => (*negative, int, frac),
        };
        let dscale = frac.len() as u16;
        let int = int.trim_start_matches('0');
        let pad_left = (4 - int.len() % 4) % 4;
        let pad_right = (4 - frac.len() % 4) % 4;
        let all = format!(
            "{}{int}{frac}{}",
            "0".repeat(pad_left),
            "0".repeat(pad_right)
        );
        // Four decimal digits make at most 9999. `parse` and `decode` only
        // make digits; anything else in a hand-built value counts as 0.
        let mut groups: Vec<i16> = all
            .as_bytes()
            .chunks(4)
            .map(|c| {
                c.iter().fold(0i16, |n, d| {
                    n * 10 + (*d as char).to_digit(10).unwrap_or(0) as i16
                })
            })
            .collect();
        let mut weight = ((int.len() + pad_left) / 4) as i16 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let sign = if negative && !groups.is_empty() {
            0x4000
        } else {
            0
        };
        put_numeric_head(buf, groups.len() as i16, weight, sign, dscale);
        for g in groups {
            buf.put_i16(g);
        }
    }

    /// Decodes PostgreSQL's binary numeric.
    pub fn decode(b: &[u8]) -> Option<Decimal> {
        if b.len() < 8 {
            return None;
        }
        let rd = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
        // The digit count and the scale are unsigned in PostgreSQL's format.
        let (n, weight, sign, dscale) = (
            rd(0) as u16 as usize,
            rd(2) as i64,
            rd(4) as u16,
            rd(6) as u16 as usize,
        );
        match sign {
            0xC000 => return Some(Decimal::NaN),
            0xD000 => return Some(Decimal::Infinity),
            0xF000 => return Some(Decimal::NegInfinity),
            _ => {}
        }
        if b.len() < 8 + 2 * n {
            return None;
        }
        let digits: Vec<i16> = (0..n).map(|k| rd(8 + 2 * k)).collect();
        // Base 10000: anything else is not a number PostgreSQL wrote.
        if digits.iter().any(|d| !(0..10_000).contains(d)) {
            return None;
        }
        let mut int = String::new();
        for k in 0..=weight.max(-1) {
            let d = digits.get(k as usize).copied().unwrap_or(0);
            int.push_str(&format!("{d:04}"));
        }
        let mut frac = String::new();
        let mut k = weight + 1;
        while (frac.len()) < dscale {
            let d = if k >= 0 {
                digits.get(k as usize).copied().unwrap_or(0)
            } else {
                0
            };
            frac.push_str(&format!("{d:04}"));
            k += 1;
        }
        frac.truncate(dscale);
        let i = int.trim_start_matches('0');
        Some(Decimal::Finite {
            negative: sign == 0x4000,
            int: if i.is_empty() { "0".into() } else { i.into() },
            frac,
        })
    }
}

fn put_numeric_head(buf: &mut BytesMut, n: i16, weight: i16, sign: u16, dscale: u16) {
    buf.put_i16(n);
    buf.put_i16(weight);
    buf.put_u16(sign);
    buf.put_u16(dscale);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_round_trip() {
        for s in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "100000000",
            "-0.5",
            "1.50",
            "3.14159265358979",
            "99999999999999999999.99",
        ] {
            let d = Decimal::parse(s).unwrap();
            let mut b = BytesMut::new();
            d.encode(&mut b);
            let back = Decimal::decode(&b).unwrap();
            assert_eq!(back, d, "{s}");
        }
        assert_eq!(Decimal::parse("1e3").unwrap().normalized(), "1000");
        assert_eq!(Decimal::parse("1.2300").unwrap().normalized(), "1.23");
        assert_eq!(Decimal::parse("-0.00").unwrap().normalized(), "0");
        // 12345.678 is digits [1, 2345, 6780], weight 1, dscale 3.
        let mut b = BytesMut::new();
        Decimal::parse("12345.678").unwrap().encode(&mut b);
        assert_eq!(
            &b[..],
            [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
    }

    #[test]
    fn hostile_numerics_are_refused() {
        // A negative digit count, once read as a huge one.
        assert_eq!(Decimal::decode(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]), None);
        // A digit outside base 10000.
        assert_eq!(Decimal::decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]), None);
        assert_eq!(Decimal::decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), None);
        // A scale with the top bit set is a (large) scale, not a negative one.
        let d = Decimal::decode(&[0, 1, 0, 0, 0, 0, 0x80, 0, 0, 7]).unwrap();
        assert_eq!(d.normalized(), "7");
    }
}
