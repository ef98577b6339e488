//! `$VAR` / `${VAR}` expansion with the exact rules of Go's `os.Expand`, as
//! Litestream applies it to the whole configuration text before parsing it.
//!
//! Litestream's rules, kept here on purpose so that a `litestream.yml`
//! means the same thing to both tools:
//!
//! - `$NAME` takes the longest run of `[A-Za-z0-9_]`; `${ANY}` takes
//!   everything up to the closing brace.
//! - `$` followed by one of `*#$@!?-0123456789` names a one-character
//!   variable (so `$$` is the variable `$`, normally unset, hence empty).
//! - `$PID` is the process id.
//! - An undefined variable expands to the empty string (the caller gets the
//!   list, to warn about it).
//! - `${}` disappears, an unterminated `${` loses its `${`, and a `$` before
//!   anything else (or at the very end) stays as it is.
//! - There is no escape: a literal `$` followed by a name cannot be written.
//!   `--no-expand-env` turns the whole expansion off.

/// One substitution made while expanding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Substitution {
    /// The variable name (`HOME`, `$`, `1`).
    pub name: String,
    /// 1-based line of the expanded text that holds the result.
    pub line: u32,
    /// Whether the variable was defined (an undefined one expands to "").
    pub defined: bool,
    /// Whether the reference sits in a YAML comment (no effect on the
    /// configuration; no warning is due).
    pub in_comment: bool,
}

/// The text after expansion and what was substituted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded text.
    pub text: String,
    /// Every substitution, in order.
    pub substitutions: Vec<Substitution>,
}

impl Expansion {
    /// The substitutions made on a line of the expanded text.
    pub fn on_line(&self, line: u32) -> impl Iterator<Item = &Substitution> {
        self.substitutions.iter().filter(move |s| s.line == line)
    }
}

fn is_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_name(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Reads a variable name after a `$`: `(name, bytes consumed)`. An empty
/// name with a non-zero width is bad syntax whose characters are dropped; an
/// empty name with zero width leaves the `$` as it is.
fn shell_name(s: &[u8]) -> (&[u8], usize) {
    if s[0] == b'{' {
        if s.len() > 2 && is_special(s[1]) && s[2] == b'}' {
            return (&s[1..2], 3);
        }
        for i in 1..s.len() {
            if s[i] == b'}' {
                if i == 1 {
                    return (&[], 2);
                }
                return (&s[1..i], i + 1);
            }
        }
        return (&[], 1);
    }
    if is_special(s[0]) {
        return (&s[..1], 1);
    }
    let n = s.iter().take_while(|c| is_name(**c)).count();
    (&s[..n], n)
}

/// Whether byte `at` of `line` lies in a YAML comment: after a `#` that
/// starts the line or follows a blank, outside quotes.
fn in_comment(line: &[u8], at: usize) -> bool {
    let (mut single, mut double) = (false, false);
    for (i, &c) in line[..at].iter().enumerate() {
        match c {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || line[i - 1].is_ascii_whitespace()) => {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// Expands `text` like Litestream does, looking variables up with `lookup`
/// and answering `$PID` with `pid`.
///
/// ```
/// use litevault::config::env::expand;
/// let e = expand("url: s3://$BUCKET/${APP}-$NOPE", |k| match k {
///     "BUCKET" => Some("b".into()),
///     "APP" => Some("app".into()),
///     _ => None,
/// }, 42);
/// assert_eq!(e.text, "url: s3://b/app-");
/// assert!(!e.substitutions[2].defined);
/// ```
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>, pid: u32) -> Expansion {
    let s = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut subs = Vec::new();
    let mut i = 0usize;
    let mut j = 0usize;
    while j < s.len() {
        if s[j] == b'$' && j + 1 < s.len() {
            out.extend_from_slice(&s[i..j]);
            let (name, w) = shell_name(&s[j + 1..]);
            if name.is_empty() && w > 0 {
                // Bad syntax: the characters are dropped.
            } else if name.is_empty() {
                out.push(b'$');
            } else {
                let name = String::from_utf8_lossy(name).into_owned();
                let value = if name == "PID" {
                    Some(pid.to_string())
                } else {
                    lookup(&name)
                };
                let line = 1 + out.iter().filter(|c| **c == b'\n').count() as u32;
                let line_start_in = s[..j]
                    .iter()
                    .rposition(|c| *c == b'\n')
                    .map_or(0, |p| p + 1);
                let line_end = s[j..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(s.len(), |p| j + p);
                subs.push(Substitution {
                    line,
                    defined: value.is_some(),
                    in_comment: in_comment(&s[line_start_in..line_end], j - line_start_in),
                    name,
                });
                out.extend_from_slice(value.unwrap_or_default().as_bytes());
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    out.extend_from_slice(&s[i.min(s.len())..]);
    Expansion {
        // Only ASCII bytes were removed or inserted around valid UTF-8, and
        // the inserted values are Strings.
        text: String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        substitutions: subs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            "A_1" => Some("x".into()),
            "WEIRD NAME" => Some("w".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> String {
        expand(s, env, 7).text
    }

    #[test]
    fn go_os_expand_rules() {
        // The cases observed with litestream 0.5.17 (`file:///tmp/rep-$HOME-${NOPE}-$$-$PID`
        // replicated to `/tmp/rep-/root---<pid>`).
        assert_eq!(ex("rep-$HOME-${NOPE}-$$-$PID"), "rep-/root---7");
        assert_eq!(ex("$A_1.b"), "x.b");
        assert_eq!(ex("${A_1}b"), "xb");
        assert_eq!(ex("$A_1b"), "");
        assert_eq!(ex("${WEIRD NAME}"), "w");
        assert_eq!(ex("a${}b"), "ab");
        assert_eq!(ex("a${HOME"), "aHOME");
        assert_eq!(ex("cost $5"), "cost ");
        assert_eq!(ex("$1abc"), "abc");
        assert_eq!(ex("${$}x"), "x");
        assert_eq!(ex("a $ b"), "a $ b");
        assert_eq!(ex("end$"), "end$");
        assert_eq!(ex("$/x"), "$/x");
        assert_eq!(ex("no dollars"), "no dollars");
        assert_eq!(ex("ünï $HOME ✓"), "ünï /root ✓");
        assert_eq!(ex("$EMPTY|"), "|");
    }

    #[test]
    fn records_lines_definedness_and_comments() {
        let e = expand(
            "a: $HOME\n# b: $NOPE\nc: x # $NOPE2\nd: \"#$NOPE3\"\n",
            env,
            1,
        );
        let s = &e.substitutions;
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].line, s[0].defined, s[0].in_comment), (1, true, false));
        assert_eq!((s[1].line, s[1].defined, s[1].in_comment), (2, false, true));
        assert_eq!((s[2].line, s[2].in_comment), (3, true));
        assert_eq!((s[3].line, s[3].in_comment), (4, false));
        assert_eq!(e.on_line(3).count(), 1);
    }

    #[test]
    fn lines_count_the_expanded_text() {
        let e = expand(
            "a: $ML\nb: $HOME\n",
            |k| (k == "ML").then(|| "x\ny".to_string()).or_else(|| env(k)),
            1,
        );
        assert_eq!(e.substitutions[1].line, 3);
    }
}
