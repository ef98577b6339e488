//! The SQLite schema written from the catalog (pure): `CREATE TABLE`,
//! indexes, and PostgreSQL's casts stripped from checks and index
//! expressions.

use super::ImportTable;
use crate::pg::ident::quote;
use crate::pg::types::PgType;

/// The column that becomes the rowid alias: a single integer primary key.
pub fn rowid_pk(t: &ImportTable) -> Option<String> {
    (t.primary_key.len() == 1
        && t.columns.iter().any(|c| {
            c.name == t.primary_key[0]
                && matches!(
                    c.read_as,
                    PgType::SmallInt | PgType::Integer | PgType::BigInt
                )
        }))
    .then(|| t.primary_key[0].clone())
}

/// `CREATE TABLE` for SQLite (pure). A single integer primary key becomes
/// the rowid alias (`INTEGER PRIMARY KEY`).
pub fn sqlite_create_table(t: &ImportTable, checks: &[String]) -> String {
    let rowid_pk = rowid_pk(t).is_some();
    let cols = |c: &[String]| c.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let mut parts: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            if rowid_pk && c.name == t.primary_key[0] {
                return format!("{} INTEGER PRIMARY KEY", quote(&c.name));
            }
            let mut s = format!("{} {}", quote(&c.name), c.sqlite_type);
            if c.not_null {
                s.push_str(" NOT NULL");
            }
            if let Some(d) = &c.default {
                s.push_str(&format!(" DEFAULT ({d})"));
            }
            s
        })
        .collect();
    if !t.primary_key.is_empty() && !rowid_pk {
        parts.push(format!("PRIMARY KEY ({})", cols(&t.primary_key)));
    }
    for u in &t.uniques {
        parts.push(format!("UNIQUE ({})", cols(u)));
    }
    for fk in &t.foreign_keys {
        parts.push(format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}) ON UPDATE {} ON DELETE {}{}",
            cols(&fk.columns),
            quote(&fk.parent),
            cols(&fk.parent_columns),
            fk.on_update,
            fk.on_delete,
            if fk.deferred {
                " DEFERRABLE INITIALLY DEFERRED"
            } else {
                ""
            }
        ));
    }
    for c in checks {
        parts.push(c.clone());
    }
    format!(
        "CREATE TABLE {} (\n  {}\n)",
        quote(&t.name),
        parts.join(",\n  ")
    )
}

/// Rewrites `pg_get_indexdef` output for SQLite: drop the schema,
/// `USING btree`, casts and operator classes (`varchar_pattern_ops`: SQLite
/// has none; such an index is a plain one there); other methods are left to
/// SQLite to refuse.
pub fn sqlite_index(schema: &str, table: &str, def: &str) -> String {
    let on = format!(" ON {} USING btree ", qualified_pg(schema, table));
    let on_bare = format!(
        " ON {} USING btree ",
        qualified_pg("", table).trim_start_matches('.')
    );
    strip_opclasses(&strip_casts(
        &def.replace(&on, &format!(" ON {} ", quote(table)))
            .replace(&on_bare, &format!(" ON {} ", quote(table))),
    ))
}

/// Drops operator-class words (`x varchar_pattern_ops`) outside literals.
fn strip_opclasses(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_str = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let w = std::mem::take(word);
        if w.ends_with("_ops") && out.ends_with(' ') {
            out.pop();
        } else {
            out.push_str(&w);
        }
    };
    for c in sql.chars() {
        if !in_str && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if c == '\'' {
            in_str = !in_str;
        }
        out.push(c);
    }
    flush(&mut word, &mut out);
    out
}

/// PostgreSQL prints `x IN ('a', 'b')` as `x = ANY (ARRAY['a', 'b'])` (and
/// `NOT IN` as `<> ALL (...)`): rewritten back for SQLite, casts already
/// stripped (pure).
pub fn any_array_to_in(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    loop {
        let any = rest.find("= ANY (");
        let all = rest.find("<> ALL (");
        let (at, op_len, word) = match (any, all) {
            (Some(a), Some(b)) if b < a => (b, "<> ALL (".len(), "NOT IN"),
            (Some(a), _) => (a, "= ANY (".len(), "IN"),
            (None, Some(b)) => (b, "<> ALL (".len(), "NOT IN"),
            (None, None) => break,
        };
        let after = &rest[at + op_len..];
        // `(ARRAY[...])` may sit in extra parentheses.
        let opens = after.len() - after.trim_start_matches('(').len();
        let body = &after[opens..];
        let Some(items) = body.strip_prefix("ARRAY[") else {
            out.push_str(&rest[..at + op_len]);
            rest = after;
            continue;
        };
        let Some(close) = closing_bracket(items) else {
            break;
        };
        let tail = &items[close + 1..];
        let closes = tail.len() - tail.trim_start_matches(')').len();
        if closes < opens + 1 {
            out.push_str(&rest[..at + op_len]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        out.push_str(&format!("{word} ({})", &items[..close]));
        rest = &tail[opens + 1..];
    }
    out.push_str(rest);
    out
}

/// The index of the `]` closing an `ARRAY[` (quotes and nesting skipped).
fn closing_bracket(s: &str) -> Option<usize> {
    let (mut depth, mut in_str) = (0usize, false);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => in_str = !in_str,
            '[' if !in_str => depth += 1,
            ']' if !in_str => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// A name as `pg_get_indexdef` prints it: quoted only when it must be.
fn qualified_pg(schema: &str, table: &str) -> String {
    let q = |s: &str| {
        let plain = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit());
        if plain { s.to_string() } else { quote(s) }
    };
    if schema.is_empty() {
        format!(".{}", q(table))
    } else {
        format!("{}.{}", q(schema), q(table))
    }
}

/// Removes PostgreSQL casts (`(x)::text`, `0::numeric(10,2)`, `'a'::character
/// varying[]`) and spells `~~` as LIKE, so that simple checks and index
/// expressions printed by PostgreSQL run in SQLite (pure).
pub fn strip_casts(sql: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(sql.len());
    let b = sql.as_bytes();
    // Compared as bytes: `i` may be inside a multi-byte character, or past
    // the end after an unterminated quote or modifier.
    let at = |i: usize| b.get(i..).unwrap_or_default();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            in_str = !in_str;
        }
        if !in_str && c == b':' && b.get(i + 1) == Some(&b':') {
            i += 2;
            // A type name, maybe several words, maybe with a modifier and [].
            loop {
                if b.get(i) == Some(&b'"') {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += 1;
                    }
                    i += 1;
                }
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                const MORE: [&[u8]; 4] = [
                    b" varying",
                    b" precision",
                    b" without time zone",
                    b" with time zone",
                ];
                let more = MORE.iter().find(|w| at(i).starts_with(w));
                match more {
                    Some(w) => i += w.len(),
                    None => break,
                }
            }
            if b.get(i) == Some(&b'(') {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
            }
            while at(i).starts_with(b"[]") {
                i += 2;
            }
            continue;
        }
        if !in_str && at(i).starts_with(b"!~~") {
            out.extend_from_slice(b"NOT LIKE");
            i += 3;
            continue;
        }
        if !in_str && at(i).starts_with(b"~~") {
            out.extend_from_slice(b"LIKE");
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    // Only ASCII was removed or added: the rest is the input's UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| sql.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_are_stripped() {
        assert_eq!(
            strip_casts("CHECK ((length((name)::text) > 0))"),
            "CHECK ((length((name)) > 0))"
        );
        assert_eq!(
            strip_casts("CHECK ((n >= (0)::numeric(10,2)) AND (s ~~ 'é::x%'::character varying))"),
            "CHECK ((n >= (0)) AND (s LIKE 'é::x%'))"
        );
        assert_eq!(strip_casts("(a)::timestamp without time zone"), "(a)");
        // Unterminated quotes and modifiers, and multi-byte characters
        // outside string literals.
        assert_eq!(strip_casts("a::\"unterminated"), "a");
        assert_eq!(strip_casts("a::numeric(10"), "a");
        assert_eq!(strip_casts("\"\u{e9}\" ~~ x"), "\"\u{e9}\" LIKE x");
    }

    #[test]
    fn any_array_becomes_in() {
        // As pg_get_constraintdef prints Django's choices check.
        let pg = "CHECK (((status)::text = ANY ((ARRAY['draft'::character varying, 'paid'::character varying])::text[])))";
        assert_eq!(
            any_array_to_in(&strip_casts(pg)),
            "CHECK (((status) IN ('draft', 'paid')))"
        );
        assert_eq!(
            any_array_to_in("CHECK ((n <> ALL (ARRAY[1, 2])) AND (s = ANY (ARRAY['a]', 'b'])))"),
            "CHECK ((n NOT IN (1, 2)) AND (s IN ('a]', 'b')))"
        );
        // Anything else is left as it is (SQLite refuses it, reported).
        assert_eq!(
            any_array_to_in("CHECK ((a = ANY (b)))"),
            "CHECK ((a = ANY (b)))"
        );
    }

    #[test]
    fn index_rewrite() {
        assert_eq!(
            sqlite_index(
                "public",
                "shop",
                "CREATE INDEX shop_slug_like ON public.shop USING btree (slug varchar_pattern_ops)"
            ),
            "CREATE INDEX shop_slug_like ON \"shop\" (slug)"
        );
        assert_eq!(
            sqlite_index(
                "public",
                "t",
                "CREATE INDEX ix ON public.t USING btree (lower(b)) WHERE (a > 0)"
            ),
            "CREATE INDEX ix ON \"t\" (lower(b)) WHERE (a > 0)"
        );
        assert_eq!(
            sqlite_index(
                "public",
                "My T",
                "CREATE UNIQUE INDEX \"Ix\" ON public.\"My T\" USING btree (a DESC)"
            ),
            "CREATE UNIQUE INDEX \"Ix\" ON \"My T\" (a DESC)"
        );
    }
}
