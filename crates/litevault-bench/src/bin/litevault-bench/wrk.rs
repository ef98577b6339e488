//! Reading `wrk --latency` output: the 50% and 99% latencies, requests per
//! second, non-2xx responses and socket errors. Pure.

use anyhow::{Context, bail};

use crate::figures::Wrk;

/// A wrk duration (`812.00us`, `1.66ms`, `2.01s`, `1.00m`) in milliseconds.
pub fn duration_ms(s: &str) -> anyhow::Result<f64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .with_context(|| format!("no unit in wrk's latency {s:?}"))?;
    let (v, unit) = s.split_at(split);
    let v: f64 = v
        .parse()
        .with_context(|| format!("cannot read wrk's latency {s:?}"))?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60000.0,
        _ => bail!("cannot read wrk's latency {s:?}"),
    };
    Ok(v * scale)
}

/// The figures of one wrk run.
pub fn parse(out: &str) -> anyhow::Result<Wrk> {
    let (mut p50, mut p99) = (None, None);
    let mut rps = None;
    let mut non_2xx = 0;
    let mut socket_errors = None;
    for line in out.lines() {
        let t = line.trim();
        // The latency distribution: "     50%    1.66ms", indented.
        let fields: Vec<&str> = t.split_whitespace().collect();
        if line.starts_with(char::is_whitespace) && fields.len() == 2 {
            match fields[0] {
                "50%" => p50 = Some(duration_ms(fields[1])?),
                "99%" => p99 = Some(duration_ms(fields[1])?),
                _ => {}
            }
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v
                .trim()
                .parse()
                .context("wrk's count of non-2xx responses")?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            socket_errors = Some(v.trim().to_string());
        }
    }
    match (p50, rps) {
        (Some(p50_ms), Some(rps)) => Ok(Wrk {
            p50_ms,
            p99_ms: p99,
            rps,
            non_2xx,
            socket_errors,
        }),
        _ => bail!("cannot read wrk's output (no 50% latency or Requests/sec)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 2s test @ http://127.0.0.1:40001/conversations/1
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.71ms  512.33us  12.04ms   90.12%
    Req/Sec     4.71k   301.22     5.12k    80.00%
  Latency Distribution
     50%    1.66ms
     75%    1.90ms
     90%    2.11ms
     99%  812.00us
  18790 requests in 2.00s, 40.12MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:   9394.51
Transfer/sec:     20.05MB
";

    #[test]
    fn latencies_rates_and_errors() {
        let w = parse(OUT).unwrap();
        assert_eq!(w.p50_ms, 1.66);
        assert_eq!(w.p99_ms, Some(0.812));
        assert_eq!(w.rps, 9394.51);
        assert_eq!(w.non_2xx, 12);
        assert_eq!(
            w.socket_errors.as_deref(),
            Some("connect 0, read 0, write 0, timeout 3")
        );
    }

    #[test]
    fn units_and_refusals() {
        assert_eq!(duration_ms("2.50s").unwrap(), 2500.0);
        assert_eq!(duration_ms("1.00m").unwrap(), 60000.0);
        assert!(duration_ms("3.0h").is_err());
        assert!(parse("Running 2s test\nRequests/sec: 10\n").is_err());
        let clean = OUT.replace("  Non-2xx or 3xx responses: 12\n", "");
        assert_eq!(parse(&clean).unwrap().non_2xx, 0);
    }
}
