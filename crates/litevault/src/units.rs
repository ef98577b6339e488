//! Durations in Go's syntax (`1s`, `500ms`, `1h30m`, `24h`) and byte sizes
//! (`256MiB`, `1GB`, `4096`), parsed and printed. Pure.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Parses a duration the way Go's `time.ParseDuration` does, without the
/// sign: a sequence of decimal numbers, each with an optional fraction and a
/// unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`); `0` alone is zero.
///
/// ```
/// use std::time::Duration;
/// use litevault::units::parse_duration;
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert!(parse_duration("10").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = "write a number and a unit, e.g. 500ms, 1s, 5m, 1h30m or 24h";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    if t.starts_with('-') {
        return Err(format!("{s:?} is negative; {hint}"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0; // nanoseconds
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(format!("{s:?} is not a duration; {hint}"));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "{s:?} has no unit (Litestream would read a bare number as nanoseconds); {hint}"
                ));
            }
            other => return Err(format!("{s:?}: unknown unit {other:?}; {hint}")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse()
                .map_err(|_| format!("{s:?} is too large; {hint}"))?
        };
        let mut value = int
            .checked_mul(scale)
            .ok_or_else(|| format!("{s:?} is too large"))?;
        let mut div = 1u128;
        for d in frac.bytes().take(18) {
            div *= 10;
            value = value
                .checked_add(u128::from(d - b'0') * scale / div)
                .ok_or_else(|| format!("{s:?} is too large"))?;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("{s:?} is too large"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| format!("{s:?} is too large"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Prints a duration in Go's syntax, compactly: `24h`, `1h30m`, `500ms`,
/// `1.5s` is printed `1s500ms`, zero is `0s`.
///
/// ```
/// use std::time::Duration;
/// use litevault::units::format_duration;
/// assert_eq!(format_duration(Duration::from_secs(86400)), "24h");
/// assert_eq!(format_duration(Duration::from_millis(10)), "10ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut ns = d.as_nanos();
    let mut out = String::new();
    for (unit, scale) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        let n = ns / scale;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ns %= scale;
        }
    }
    out
}

/// Parses a byte size: a number with an optional unit, SI (`KB`, `MB`, `GB`,
/// `TB`, or `K`, `M`... = powers of 1000) or IEC (`KiB`, `MiB`, `GiB`, `TiB`
/// = powers of 1024), case-insensitive, like Litestream's sizes.
///
/// ```
/// use litevault::units::parse_size;
/// assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
/// assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
/// assert_eq!(parse_size("4096").unwrap(), 4096);
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let hint = "write e.g. 4096, 64MiB, 256MiB or 1GB";
    let t = s.trim();
    let num_len = t
        .bytes()
        .take_while(|c| c.is_ascii_digit() || *c == b'.')
        .count();
    let (num, unit) = t.split_at(num_len);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(format!("{s:?} is not a size; {hint}"));
    }
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        other => return Err(format!("{s:?}: unknown unit {other:?}; {hint}")),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| format!("{s:?} is too large"))?
    };
    let mut v = int
        .checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    let mut div = 1u64;
    for d in frac.bytes().take(12) {
        div *= 10;
        v = v
            .checked_add(u64::from(d - b'0') * scale / div)
            .ok_or_else(|| format!("{s:?} is too large"))?;
    }
    Ok(v)
}

/// Prints a size with the largest IEC unit that divides it exactly.
pub fn format_size(n: u64) -> String {
    for (unit, scale) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= scale && n.is_multiple_of(scale) {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n}B")
}

/// A duration read from YAML in Go's syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 1s, 500ms or 1h30m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse_duration(v).map(GoDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                if v == 0 {
                    return Ok(GoDuration(Duration::ZERO));
                }
                Err(E::custom(format!(
                    "{v} has no unit (Litestream would read it as {v} nanoseconds); write e.g. {v}s or {v}ms"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                if v < 0 {
                    return Err(E::custom(format!("{v} is negative; write e.g. 1s")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
                Err(E::custom(format!("{v} has no unit; write e.g. {v}s")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size read from YAML: an integer (bytes) or a string with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 4096, 64MiB or 1GB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is negative; write e.g. 256MiB")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1s").unwrap(), ms(1000));
        assert_eq!(parse_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(parse_duration("24h").unwrap(), ms(86_400_000));
        assert_eq!(parse_duration("1m30.5s").unwrap(), ms(90_500));
        assert_eq!(parse_duration(".5s").unwrap(), ms(500));
        assert_eq!(parse_duration("1.s").unwrap(), ms(1000));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("10µs").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration("+2m").unwrap(), ms(120_000));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "1", "s", "1x", "-1s", "1.2.3s", "1 s", ".s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("10").unwrap_err().contains("nanoseconds"));
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn duration_round_trip() {
        for s in [
            "24h",
            "1h30m",
            "5m",
            "30s",
            "500ms",
            "10ms",
            "1s500ms",
            "15s",
            "3h2m1s4ms",
        ] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("256mib").unwrap(), 256 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_size("10K").unwrap(), 10_000);
        assert_eq!(parse_size("10 KiB").unwrap(), 10_240);
        assert_eq!(parse_size("100B").unwrap(), 100);
        for bad in ["", "MiB", "1XB", "-1MiB", "1.2.3MB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
        // The fraction pushes past the largest value: an error, not an
        // overflow.
        assert!(
            parse_size("18446744073709551.9K")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
        let huge = format!("{}.9ns", u128::MAX);
        assert!(parse_duration(&huge).unwrap_err().contains("too large"));
        assert_eq!(format_size(256 << 20), "256MiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(3 << 29), "1536MiB");
    }
}
