//! File-name patterns for `dir` + `pattern` database sources, with the
//! rules of Go's `filepath.Match` that Litestream uses: `*` (any run of
//! characters but `/`), `?` (one character but `/`), `[abc]`, `[a-z]`,
//! `[^a-z]`, and `\` to escape. The pattern is matched against the file's
//! base name. Pure.

/// A checked file-name pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    chars: Vec<char>,
    text: String,
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Pattern {
    /// Checks a pattern.
    ///
    /// ```
    /// use litevault::config::glob::Pattern;
    /// let p = Pattern::new("user_*.db").unwrap();
    /// assert!(p.matches("user_42.db"));
    /// assert!(!p.matches("admin.db"));
    /// assert!(Pattern::new("[a-").is_err());
    /// ```
    pub fn new(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("the pattern is empty; write e.g. \"*.db\"".into());
        }
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    if i + 1 >= chars.len() {
                        return Err(format!("pattern {text:?} ends with a lone backslash"));
                    }
                    i += 2;
                }
                '[' => {
                    i = class_end(&chars, i).ok_or_else(|| {
                        format!("pattern {text:?} has an unterminated or malformed [class]")
                    })?;
                }
                _ => i += 1,
            }
        }
        Ok(Pattern {
            chars,
            text: text.to_string(),
        })
    }

    /// Whether a file name matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        match_at(&self.chars, &name)
    }
}

/// The index just past a `[...]` class starting at `start`, or `None` when
/// it is malformed.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            return Some(i + 1);
        }
        first = false;
        // One range: lo or lo-hi.
        let lo_len = if c == '\\' { 2 } else { 1 };
        if c == '-' || (c == ']') {
            return None;
        }
        p.get(i + lo_len - 1)?;
        i += lo_len;
        if p.get(i) == Some(&'-') {
            let h = *p.get(i + 1)?;
            if h == ']' || h == '-' {
                return None;
            }
            i += if h == '\\' { 3 } else { 2 };
            p.get(i - 1)?;
        }
    }
}

/// Whether `c` is in the class `p[start..end]`.
fn class_matches(p: &[char], start: usize, end: usize, c: char) -> bool {
    let mut i = start + 1;
    let negated = p[i] == '^';
    if negated {
        i += 1;
    }
    let mut hit = false;
    while i < end - 1 {
        let lo = if p[i] == '\\' {
            i += 1;
            p[i]
        } else {
            p[i]
        };
        i += 1;
        let mut hi = lo;
        if p[i] == '-' {
            i += 1;
            hi = if p[i] == '\\' {
                i += 1;
                p[i]
            } else {
                p[i]
            };
            i += 1;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
    }
    hit != negated
}

fn match_at(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => {
            let rest = &p[1..];
            (0..=s.len())
                .take_while(|&k| k == 0 || s[k - 1] != '/')
                .any(|k| match_at(rest, &s[k..]))
        }
        Some('?') => !s.is_empty() && s[0] != '/' && match_at(&p[1..], &s[1..]),
        Some('[') => {
            let end = class_end(p, 0).unwrap_or(p.len());
            !s.is_empty()
                && s[0] != '/'
                && class_matches(p, 0, end, s[0])
                && match_at(&p[end..], &s[1..])
        }
        Some('\\') => !s.is_empty() && p.len() > 1 && s[0] == p[1] && match_at(&p[2..], &s[1..]),
        Some(c) => !s.is_empty() && s[0] == *c && match_at(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Pattern::new(p).unwrap().matches(s)
    }

    #[test]
    fn go_filepath_match_cases() {
        // Cases from the semantics of Go's filepath.Match.
        assert!(m("*.db", "app.db"));
        assert!(m("*.db", ".db"));
        assert!(!m("*.db", "app.db-wal"));
        assert!(!m("*.db", "app.sqlite"));
        assert!(m("*", "anything"));
        assert!(!m("*", "a/b"));
        assert!(m("user_?.db", "user_1.db"));
        assert!(!m("user_?.db", "user_12.db"));
        assert!(m("[abc]*.db", "b.db"));
        assert!(!m("[abc]*.db", "d.db"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[^a-c]x", "ax"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*.s*", "x.sqlite"));
        assert!(m("a*b*c", "abbbc"));
        assert!(!m("a*b*c", "abbb"));
        assert!(m("[\\]]", "]"));
    }

    #[test]
    fn bad_patterns() {
        for bad in ["", "[", "[a-", "[]", "a\\", "[a-]", "[-a]"] {
            assert!(Pattern::new(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Pattern::new("[]a]").is_err());
    }
}
