//! Which tables an export or import carries (`--table GLOB`,
//! `--exclude-table GLOB`), pure: glob matching, the selection, and the
//! foreign-key check.
//!
//! A table is selected when it matches any include glob (every table when
//! there is none) and no exclude glob. An include glob that matches no table
//! at all is an error naming the glob, so a typo never turns into a silently
//! smaller export.
//!
//! # Foreign keys into unselected tables
//!
//! A selected table whose foreign key refers to a table left out is an error
//! ([`SelectionError::UnselectedParent`]) naming both tables and saying to
//! include the parent or exclude the child, when the run creates foreign
//! keys (a full export, an import). The alternative, dropping the key with a
//! note, would give a copy whose schema quietly allows what the source
//! forbids; and keeping it would make PostgreSQL refuse it after the load
//! (SQLite would accept it and then fail every write to the child).
//! `--data-only` exports create no keys (the existing PostgreSQL schema has
//! its own), so there the check is not made. A key of a table to itself, or
//! to a table the source does not have, is not this case.
//!
//! The other direction, a table left out whose key refers to a selected
//! one, is fine, except that `TRUNCATE ... CASCADE` would empty it: an
//! export with a selection and `--truncate` refuses that before writing
//! (`ExportError::TruncateCascades`, checked against PostgreSQL's catalog).
//!
//! # Globs
//!
//! `*` (any run of characters, also none), `?` (one character), `[abc]`,
//! `[a-z]`, `[!abc]` or `[^abc]` (one character in or not in the class).
//! Anything else matches itself; `[*]` matches a literal `*`. A glob is
//! matched against the whole table name: SQLite names ASCII
//! case-insensitively (as SQLite resolves them), PostgreSQL names exactly;
//! on import a glob with a dot is also matched against `schema.table`.

use std::collections::BTreeSet;

/// Why a selection cannot be made.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("{flag} {glob:?}: {reason}")]
    BadGlob {
        flag: &'static str,
        glob: String,
        reason: String,
    },
    #[error("--table {glob:?} matches no table{where_}; the tables are: {tables}. {how_to_list}")]
    NoMatch {
        glob: String,
        /// e.g. ` in schema "public"`.
        where_: String,
        /// The first table names, comma-separated.
        tables: String,
        /// How to list them, e.g. `List them with: sqlite3 app.db .tables`.
        how_to_list: String,
    },
    #[error(
        "no table is left: every table matching --table is excluded by --exclude-table; \
         loosen --exclude-table"
    )]
    NothingSelected,
    #[error(
        "table {child:?} is selected but its foreign key refers to {parent:?}, which is not: \
         include it (--table {parent}) or exclude {child:?} as well (--exclude-table {child})"
    )]
    UnselectedParent { child: String, parent: String },
}

/// One glob, checked when made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableGlob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl TableGlob {
    /// Parses a glob; `flag` names the option in the error.
    pub fn parse(flag: &'static str, text: &str) -> Result<TableGlob, SelectionError> {
        let bad = |reason: &str| SelectionError::BadGlob {
            flag,
            glob: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(bad("empty; give a table name or a glob such as 'audit_*'"));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = vec![];
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    i += 1;
                }
                '?' => {
                    tokens.push(Token::Any);
                    i += 1;
                }
                '[' => {
                    let mut k = i + 1;
                    let negated = matches!(chars.get(k), Some('!' | '^'));
                    if negated {
                        k += 1;
                    }
                    let mut ranges = vec![];
                    // A `]` right after the opening is a member, as in shells.
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(k) else {
                            return Err(bad(
                                "unclosed '[': close the class with ']', or write '[[]' for a literal '['",
                            ));
                        };
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if chars.get(k + 1) == Some(&'-')
                            && chars.get(k + 2).is_some_and(|&e| e != ']')
                        {
                            let end = chars[k + 2];
                            if end < c {
                                return Err(bad(&format!(
                                    "range '{c}-{end}' runs backwards; write '{end}-{c}'"
                                )));
                            }
                            ranges.push((c, end));
                            k += 3;
                        } else {
                            ranges.push((c, c));
                            k += 1;
                        }
                    }
                    tokens.push(Token::Class { negated, ranges });
                    i = k + 1;
                }
                c => {
                    tokens.push(Token::Char(c));
                    i += 1;
                }
            }
        }
        Ok(TableGlob {
            text: text.to_string(),
            tokens,
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `name` matches; `fold` compares ASCII letters
    /// case-insensitively.
    pub fn matches(&self, name: &str, fold: bool) -> bool {
        let name: Vec<char> = name.chars().collect();
        let eq = |a: char, b: char| {
            if fold {
                a.eq_ignore_ascii_case(&b)
            } else {
                a == b
            }
        };
        let one = |t: &Token, c: char| match t {
            Token::Char(x) => eq(*x, c),
            Token::Any => true,
            Token::Star => unreachable!("stars are handled by the matcher"),
            Token::Class { negated, ranges } => {
                let folded = [c, c.to_ascii_lowercase(), c.to_ascii_uppercase()];
                let inside = ranges.iter().any(|&(lo, hi)| {
                    if fold {
                        folded.iter().any(|&c| lo <= c && c <= hi)
                    } else {
                        lo <= c && c <= hi
                    }
                });
                inside != *negated
            }
        };
        // Iterative matching with backtracking to the last star: linear
        // in practice, never exponential.
        let (mut t, mut n) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, n));
                    t += 1;
                }
                Some(tok) if one(tok, name[n]) => {
                    t += 1;
                    n += 1;
                }
                _ => match star {
                    Some((st, sn)) => {
                        t = st + 1;
                        n = sn + 1;
                        star = Some((st, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[t..].iter().all(|x| *x == Token::Star)
    }
}

/// The tables to carry: include and exclude globs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSelection {
    /// `--table`: any of them selects a table; none selects every table.
    pub include: Vec<TableGlob>,
    /// `--exclude-table`: any of them leaves a table out.
    pub exclude: Vec<TableGlob>,
}

/// Where the tables come from, for matching and for the error messages.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// Compare ASCII letters case-insensitively (SQLite's names).
    pub fold_case: bool,
    /// Also match globs with a dot against `schema.table` (PostgreSQL).
    pub schema: Option<&'a str>,
    /// e.g. ` in schema "public"`, or empty.
    pub where_: String,
    /// How to list the tables, e.g. `List them with: sqlite3 app.db .tables`.
    pub how_to_list: String,
}

impl TableSelection {
    /// Parses the globs of `--table` and `--exclude-table`.
    pub fn parse<S: AsRef<str>>(
        include: &[S],
        exclude: &[S],
    ) -> Result<TableSelection, SelectionError> {
        Ok(TableSelection {
            include: include
                .iter()
                .map(|g| TableGlob::parse("--table", g.as_ref()))
                .collect::<Result<_, _>>()?,
            exclude: exclude
                .iter()
                .map(|g| TableGlob::parse("--exclude-table", g.as_ref()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// No glob given: every table.
    pub fn is_everything(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    fn hit(g: &TableGlob, name: &str, src: &Source) -> bool {
        g.matches(name, src.fold_case)
            || (g.as_str().contains('.')
                && src
                    .schema
                    .is_some_and(|s| g.matches(&format!("{s}.{name}"), src.fold_case)))
    }

    /// Whether one table is selected.
    pub fn selects(&self, name: &str, src: &Source) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| Self::hit(g, name, src)))
            && !self.exclude.iter().any(|g| Self::hit(g, name, src))
    }

    /// The selected names among `tables`, in their order; an include glob
    /// matching none of them, or nothing left, is an error.
    pub fn choose<'t>(
        &self,
        tables: &[&'t str],
        src: &Source,
    ) -> Result<Vec<&'t str>, SelectionError> {
        for g in &self.include {
            if !tables.iter().any(|t| Self::hit(g, t, src)) {
                const SHOWN: usize = 20;
                let mut list: Vec<&str> = tables.iter().take(SHOWN).copied().collect();
                if tables.is_empty() {
                    list.push("(none)");
                }
                let more = tables.len().saturating_sub(SHOWN);
                let mut shown = list.join(", ");
                if more > 0 {
                    shown.push_str(&format!(" and {more} more"));
                }
                return Err(SelectionError::NoMatch {
                    glob: g.as_str().to_string(),
                    where_: src.where_.clone(),
                    tables: shown,
                    how_to_list: src.how_to_list.clone(),
                });
            }
        }
        let out: Vec<&str> = tables
            .iter()
            .copied()
            .filter(|t| self.selects(t, src))
            .collect();
        if out.is_empty() && !tables.is_empty() {
            return Err(SelectionError::NothingSelected);
        }
        Ok(out)
    }
}

/// Checks that every foreign key of a selected table refers to a selected
/// table (see the module docs). `keys` are (child, parent) pairs of every
/// table; `all` every table of the source, `chosen` the selected ones;
/// `fold_case` compares names as SQLite does.
pub fn check_foreign_keys<'a>(
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    all: &[&str],
    chosen: &[&str],
    fold_case: bool,
) -> Result<(), SelectionError> {
    let norm = |s: &str| {
        if fold_case {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    let all: BTreeSet<String> = all.iter().map(|s| norm(s)).collect();
    let chosen_set: BTreeSet<String> = chosen.iter().map(|s| norm(s)).collect();
    for (child, parent) in keys {
        let (c, p) = (norm(child), norm(parent));
        if chosen_set.contains(&c) && c != p && all.contains(&p) && !chosen_set.contains(&p) {
            return Err(SelectionError::UnselectedParent {
                child: child.to_string(),
                parent: parent.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> TableGlob {
        TableGlob::parse("--table", s).unwrap()
    }

    fn sqlite() -> Source<'static> {
        Source {
            fold_case: true,
            schema: None,
            where_: String::new(),
            how_to_list: "List them with: sqlite3 app.db .tables".into(),
        }
    }

    fn pg() -> Source<'static> {
        Source {
            fold_case: false,
            schema: Some("public"),
            where_: " in schema \"public\"".into(),
            how_to_list: "List them with: psql URL -c '\\dt public.*'".into(),
        }
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(g("*").matches("", false));
        assert!(g("*").matches("users", false));
        assert!(g("user*").matches("users", false));
        assert!(g("user*").matches("user", false));
        assert!(!g("user*").matches("use", false));
        assert!(g("*_log").matches("audit_log", false));
        assert!(!g("*_log").matches("audit_logs", false));
        assert!(g("a*b*c").matches("abc", false));
        assert!(g("a*b*c").matches("axxbyyc", false));
        assert!(!g("a*b*c").matches("axxbyy", false));
        assert!(g("t?").matches("t1", false));
        assert!(!g("t?").matches("t", false));
        assert!(!g("t?").matches("t12", false));
        assert!(g("**x").matches("x", false));
        assert!(g("ü?").matches("üß", false), "characters, not bytes");
        // Backtracking that a naive matcher gets wrong.
        assert!(g("*ab").matches("aab", false));
        assert!(g("*a*a*a*a*b").matches(&"a".repeat(60).replace("aa", "ab"), false));
        assert!(!g("*a*a*a*a*c").matches(&"a".repeat(200), false));
    }

    #[test]
    fn classes() {
        assert!(g("t[0-9]").matches("t7", false));
        assert!(!g("t[0-9]").matches("tx", false));
        assert!(g("t[!0-9]").matches("tx", false));
        assert!(!g("t[^0-9]").matches("t7", false));
        assert!(g("[abc]x").matches("bx", false));
        assert!(g("[]]").matches("]", false));
        assert!(g("a[*]").matches("a*", false));
        assert!(!g("a[*]").matches("ab", false));
        assert!(g("[a-]").matches("-", false));
    }

    #[test]
    fn case_folding_is_for_sqlite_names_only() {
        assert!(g("Users").matches("users", true));
        assert!(!g("Users").matches("users", false));
        assert!(g("[A-C]*").matches("beta", true));
        assert!(!g("[A-C]*").matches("beta", false));
    }

    #[test]
    fn bad_globs_say_what_to_write() {
        let e = TableGlob::parse("--table", "t[0-9").unwrap_err();
        assert!(
            e.to_string().contains("--table \"t[0-9\": unclosed '['"),
            "{e}"
        );
        let e = TableGlob::parse("--exclude-table", "[z-a]").unwrap_err();
        assert!(e.to_string().contains("write 'a-z'"), "{e}");
        let e = TableGlob::parse("--table", "").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn include_then_exclude() {
        let tables = ["users", "orders", "audit_log", "audit_events", "sessions"];
        let s = TableSelection::parse::<&str>(&[], &[]).unwrap();
        assert!(s.is_everything());
        assert_eq!(s.choose(&tables, &sqlite()).unwrap(), tables);

        let s = TableSelection::parse(&["users", "orders"], &[]).unwrap();
        assert_eq!(s.choose(&tables, &sqlite()).unwrap(), ["users", "orders"]);

        let s = TableSelection::parse(&[], &["audit_*"]).unwrap();
        assert_eq!(
            s.choose(&tables, &sqlite()).unwrap(),
            ["users", "orders", "sessions"]
        );

        // Exclusion wins over inclusion.
        let s = TableSelection::parse(&["audit_*", "users"], &["*_log"]).unwrap();
        assert_eq!(
            s.choose(&tables, &sqlite()).unwrap(),
            ["users", "audit_events"]
        );
    }

    #[test]
    fn schema_qualified_globs_on_postgres() {
        let tables = ["users", "orders"];
        let s = TableSelection::parse(&["public.users"], &[]).unwrap();
        assert_eq!(s.choose(&tables, &pg()).unwrap(), ["users"]);
        let s = TableSelection::parse(&["other.users"], &[]).unwrap();
        let e = s.choose(&tables, &pg()).unwrap_err();
        assert!(matches!(e, SelectionError::NoMatch { .. }), "{e}");
        // SQLite tables have no schema: the dot is part of the name.
        let s = TableSelection::parse(&["public.users"], &[]).unwrap();
        assert!(s.choose(&tables, &sqlite()).is_err());
    }

    #[test]
    fn a_glob_matching_nothing_names_it_and_the_tables() {
        let tables = ["users", "orders"];
        let s = TableSelection::parse(&["users", "oders"], &[]).unwrap();
        let e = s.choose(&tables, &pg()).unwrap_err().to_string();
        assert_eq!(
            e,
            "--table \"oders\" matches no table in schema \"public\"; the tables are: users, orders. \
             List them with: psql URL -c '\\dt public.*'"
        );
        let many: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        let e = TableSelection::parse(&["x"], &[])
            .unwrap()
            .choose(&many, &sqlite())
            .unwrap_err()
            .to_string();
        assert!(e.contains("t19 and 5 more"), "{e}");
        assert!(!e.contains("t20"), "{e}");
        // Matching only excluded tables is not "no match", but nothing is left.
        let e = TableSelection::parse(&["users"], &["u*"])
            .unwrap()
            .choose(&tables, &sqlite())
            .unwrap_err();
        assert_eq!(e, SelectionError::NothingSelected);
    }

    #[test]
    fn foreign_keys_into_unselected_tables_are_refused() {
        let all = ["users", "orders", "items", "tags"];
        let keys = [
            ("orders", "Users"),
            ("items", "orders"),
            ("items", "items"),
            ("tags", "gone"),
        ];
        // Parent selected with the child: fine.
        check_foreign_keys(keys, &all, &["users", "orders"], true).unwrap();
        // The child left out: fine (nothing refers to a missing table).
        check_foreign_keys(keys, &all, &["users"], true).unwrap();
        // A key to itself, or to a table the source lacks: not this case.
        check_foreign_keys(keys, &all, &["tags"], true).unwrap();
        let e = check_foreign_keys(keys, &all, &["orders", "items"], true).unwrap_err();
        assert_eq!(
            e,
            SelectionError::UnselectedParent {
                child: "orders".into(),
                parent: "Users".into()
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("--table Users"), "{msg}");
        assert!(msg.contains("--exclude-table orders"), "{msg}");
        // PostgreSQL names are exact: "Users" is another table there (and
        // not in the source), while "orders" is.
        check_foreign_keys([("orders", "Users")], &all, &["orders"], false).unwrap();
        let e = check_foreign_keys(keys, &all, &["items"], false).unwrap_err();
        assert_eq!(
            e,
            SelectionError::UnselectedParent {
                child: "items".into(),
                parent: "orders".into()
            }
        );
    }
}
