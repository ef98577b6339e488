//! A strict checker of the Prometheus text format, for `/metrics`.

use super::*;

/// Parses the Prometheus text format strictly: HELP and TYPE once per
/// family and before its samples, families contiguous, valid names, label
/// escapes and values, counters named `_total` and never negative, no
/// duplicate series. Returns each series (`name{a="x",b="y"}`, labels
/// sorted) and its value.
pub(super) fn check_exposition(text: &str) -> Result<BTreeMap<String, f64>, String> {
    fn valid_name(n: &str, label: bool) -> bool {
        let mut cs = n.chars();
        let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':');
        cs.next().is_some_and(first_ok)
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (!label && c == ':'))
    }
    fn value(s: &str) -> Option<f64> {
        match s {
            "NaN" => Some(f64::NAN),
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            _ => s.parse().ok(),
        }
    }
    if !text.ends_with('\n') {
        return Err("the text must end with a newline".into());
    }
    let mut help = HashSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut done = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("empty line"));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap_or("");
            let name = parts.next().ok_or_else(|| at("no metric name"))?;
            let arg = parts.next().ok_or_else(|| at("no text"))?;
            if !valid_name(name, false) {
                return Err(at("bad metric name"));
            }
            if done.contains(name) {
                return Err(at("family appears twice"));
            }
            if current.as_deref() != Some(name) {
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                current = Some(name.to_string());
            }
            match kw {
                "HELP" => {
                    if !help.insert(name.to_string()) {
                        return Err(at("second HELP"));
                    }
                }
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        return Err(at("unknown type"));
                    }
                    if types.insert(name.to_string(), arg.to_string()).is_some() {
                        return Err(at("second TYPE"));
                    }
                    if arg == "counter" && !name.ends_with("_total") {
                        return Err(at("a counter's name must end in _total"));
                    }
                }
                _ => return Err(at("unknown comment")),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comment without a space"));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if !valid_name(name, false) {
            return Err(at("bad metric name"));
        }
        if current.as_deref() != Some(name) {
            return Err(at("sample outside its family's HELP/TYPE block"));
        }
        let kind = types.get(name).ok_or_else(|| at("sample before TYPE"))?;
        if !help.contains(name) {
            return Err(at("sample before HELP"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            while let Some(&(i, c)) = chars.peek() {
                if c == '}' {
                    end = Some(i);
                    break;
                }
                let start = i;
                while chars.peek().is_some_and(|&(_, c)| c != '=') {
                    chars.next();
                }
                let (eq, _) = chars.next().ok_or_else(|| at("label without ="))?;
                let lname = &r[start..eq];
                if !valid_name(lname, true) || lname.starts_with("__") {
                    return Err(at("bad label name"));
                }
                if chars.next().map(|x| x.1) != Some('"') {
                    return Err(at("label value not quoted"));
                }
                let mut v = String::new();
                loop {
                    match chars.next().map(|x| x.1) {
                        Some('\\') => match chars.next().map(|x| x.1) {
                            Some('\\') => v.push('\\'),
                            Some('"') => v.push('"'),
                            Some('n') => v.push('\n'),
                            _ => return Err(at("bad escape in a label value")),
                        },
                        Some('"') => break,
                        Some('\n') | None => return Err(at("unterminated label value")),
                        Some(c) => v.push(c),
                    }
                }
                labels.push((lname.to_string(), v));
                match chars.peek().map(|x| x.1) {
                    Some(',') => {
                        chars.next();
                    }
                    Some('}') => {}
                    _ => return Err(at("expected , or } after a label")),
                }
            }
            let end = end.ok_or_else(|| at("unterminated labels"))?;
            rest = &r[end + 1..];
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value"))?;
        let mut parts = rest.split(' ');
        let v = parts
            .next()
            .and_then(value)
            .ok_or_else(|| at("bad value"))?;
        if let Some(ts) = parts.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(at("bad timestamp"));
        }
        if parts.next().is_some() {
            return Err(at("trailing text"));
        }
        if kind == "counter" && (v.is_nan() || v < 0.0) {
            return Err(at("negative or NaN counter"));
        }
        let names: HashSet<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        if names.len() != labels.len() {
            return Err(at("repeated label"));
        }
        labels.sort();
        let key = series_key(
            name,
            &labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        if series.insert(key, v).is_some() {
            return Err(at("duplicate series"));
        }
    }
    for name in help.iter() {
        if !types.contains_key(name) {
            return Err(format!("{name} has HELP but no TYPE"));
        }
    }
    Ok(series)
}

pub(super) fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<_> = labels.to_vec();
    l.sort();
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[test]
fn the_checker_rejects_malformed_expositions() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{db=\"p\\\"q\"} 1\n";
    assert_eq!(
        check_exposition(good).unwrap()[&series_key("a_total", &[("db", "p\"q")])],
        1.0
    );
    for bad in [
        "# TYPE a_total counter\na_total 1\n",     // no HELP
        "# HELP a x\na 1\n",                       // no TYPE
        "# HELP a x\n# TYPE a counter\na 1\n",     // counter name
        "# HELP a x\n# TYPE a gauge\na{db=p} 1\n", // unquoted
        "# HELP a x\n# TYPE a gauge\na{db=\"p\"} 1\na{db=\"p\"} 2\n", // duplicate
        "# HELP a x\n# TYPE a gauge\na one\n",     // value
        "# HELP a x\n# TYPE a gauge\na 1",         // newline
        "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\na 1\n", // interleaved
        "# HELP a x\n# TYPE a gauge\na{db=\"\\x\"} 1\n", // escape
    ] {
        assert!(check_exposition(bad).is_err(), "accepted {bad:?}");
    }
}
