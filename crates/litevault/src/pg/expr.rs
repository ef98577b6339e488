//! SQLite SQL fragments rewritten for PostgreSQL (pure): defaults, CHECK
//! constraints, index expressions and WHERE clauses, view bodies.
//!
//! The rewrite is token by token: identifiers are re-quoted with their real
//! names (PostgreSQL folds unquoted names to lower case, SQLite does not),
//! `==` becomes `=`, a few functions are renamed, comparisons of boolean
//! columns with 0/1 become TRUE/FALSE. What cannot be rewritten is refused
//! with a reason; PostgreSQL then validates what was rewritten, and a
//! statement it rejects is reported with its SQL, never dropped silently.

use super::ident::quote;

/// One token of SQLite SQL, with its byte range in the source.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An unquoted word (keyword or name).
    Word(String),
    /// A quoted identifier (`"x"`, `[x]` or `` `x` ``), unescaped.
    Quoted(String),
    /// A string literal, as written (with its quotes).
    Str(String),
    /// A blob literal's hex digits.
    Blob(String),
    Num(String),
    /// Operators and punctuation.
    Op(String),
}

/// Splits SQL into tokens with their byte ranges; comments are dropped.
pub fn tokenize(sql: &str) -> Result<Vec<(Tok, std::ops::Range<usize>)>, String> {
    let b = sql.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        let tok = if c == b'\'' {
            i += 1;
            loop {
                if i >= b.len() {
                    return Err("unterminated string literal".into());
                }
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            Tok::Str(sql[start..i].to_string())
        } else if c == b'"' || c == b'`' || c == b'[' {
            let close = if c == b'[' { b']' } else { c };
            i += 1;
            let mut name = Vec::new();
            loop {
                if i >= b.len() {
                    return Err("unterminated quoted identifier".into());
                }
                if b[i] == close {
                    if close != b']' && b.get(i + 1) == Some(&close) {
                        name.push(close);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                name.push(b[i]);
                i += 1;
            }
            Tok::Quoted(String::from_utf8_lossy(&name).into_owned())
        } else if (c == b'x' || c == b'X') && b.get(i + 1) == Some(&b'\'') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated blob literal".into());
            }
            i += 1;
            Tok::Blob(sql[start + 2..i - 1].to_string())
        } else if c.is_ascii_digit()
            || (c == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == b'.'
                    || ((b[i] == b'+' || b[i] == b'-') && matches!(b[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            Tok::Num(sql[start..i].to_string())
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            Tok::Word(sql[start..i].to_string())
        } else {
            // `None` also when a multi-byte character follows.
            let two = sql.get(i..i + 2).unwrap_or("");
            let op = match two {
                "==" | "!=" | "<>" | "<=" | ">=" | "||" | "<<" | ">>" => two,
                // Cannot fail: `c` is ASCII (the bytes from 0x80 start a
                // word above), so it is a whole character.
                _ => &sql[i..i + 1],
            };
            i += op.len();
            Tok::Op(op.to_string())
        };
        out.push((tok, start..i));
    }
    Ok(out)
}

/// What the rewrite knows about names.
pub trait Names {
    /// The real name of an unquoted identifier, if it names a known table
    /// or column (SQLite matches names case-insensitively).
    fn resolve(&self, word: &str) -> Option<String>;
    /// True if the named column is exported as boolean.
    fn is_bool(&self, column: &str) -> bool;
}

const KEYWORDS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "IN",
    "BETWEEN",
    "LIKE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "AS",
    "TRUE",
    "FALSE",
    "DISTINCT",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT",
    "INNER",
    "OUTER",
    "CROSS",
    "ON",
    "UNION",
    "ALL",
    "ASC",
    "DESC",
    "EXISTS",
    "USING",
    "INTERSECT",
    "EXCEPT",
    "INTEGER",
    "TEXT",
    "REAL",
    "NUMERIC",
    "ESCAPE",
    "COLLATE",
    "NULLS",
    "FIRST",
    "LAST",
    "WITH",
    "RECURSIVE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "ISNULL",
    "NOTNULL",
];

/// Rewrites a SQLite expression or query for PostgreSQL.
pub fn translate(sql: &str, names: &dyn Names) -> Result<String, String> {
    let toks: Vec<Tok> = tokenize(sql)?.into_iter().map(|(t, _)| t).collect();
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    let next_is = |i: usize, s: &str| matches!(toks.get(i), Some(Tok::Op(o)) if o == s);
    while i < toks.len() {
        let t = &toks[i];
        match t {
            Tok::Str(s) => out.push(s.clone()),
            Tok::Num(n) => out.push(n.clone()),
            Tok::Blob(h) => out.push(format!("'\\x{h}'::bytea")),
            Tok::Op(o) => out.push(match o.as_str() {
                "==" => "=".into(),
                "?" | ":" | "@" | "$" => return Err(format!("parameter {o} in SQL")),
                "<<" | ">>" | "&" | "|" | "~" => o.clone(),
                _ => o.clone(),
            }),
            Tok::Word(w) | Tok::Quoted(w) => {
                let quoted = matches!(t, Tok::Quoted(_));
                let upper = w.to_ascii_uppercase();
                // `INSERT INTO t(...)`, `ON t(...)`: a name, not a call.
                let after_name_kw = out.last().is_some_and(|l| {
                    matches!(
                        l.to_ascii_uppercase().as_str(),
                        "INTO" | "ON" | "TABLE" | "REFERENCES"
                    )
                });
                if !quoted && next_is(i + 1, "(") && !after_name_kw {
                    out.push(function(&upper, &toks, &mut i)?);
                    i += 1;
                    continue;
                }
                if !quoted {
                    match upper.as_str() {
                        "GLOB" | "REGEXP" | "MATCH" => {
                            return Err(format!("{upper} has no PostgreSQL equivalent"));
                        }
                        "NOCASE" | "RTRIM" | "BINARY"
                            if out.last().is_some_and(|l| l == "COLLATE") =>
                        {
                            return Err(format!("COLLATE {upper} has no PostgreSQL equivalent"));
                        }
                        "ISNULL" => {
                            out.push("IS NULL".into());
                            i += 1;
                            continue;
                        }
                        "NOTNULL" => {
                            out.push("IS NOT NULL".into());
                            i += 1;
                            continue;
                        }
                        _ => {}
                    }
                }
                let real = if quoted {
                    Some(names.resolve(w).unwrap_or_else(|| w.clone()))
                } else if KEYWORDS.contains(&upper.as_str()) {
                    None
                } else {
                    names.resolve(w)
                };
                match real {
                    Some(name) => {
                        out.push(quote(&name));
                        // boolean column compared with 0/1
                        if names.is_bool(&name)
                            && let Some(Tok::Op(op)) = toks.get(i + 1)
                            && matches!(op.as_str(), "=" | "==" | "!=" | "<>")
                            && let Some(Tok::Num(n)) = toks.get(i + 2)
                            && (n == "0" || n == "1")
                        {
                            let op = if op == "==" { "=" } else { op.as_str() };
                            out.push(op.into());
                            out.push(if n == "1" { "TRUE" } else { "FALSE" }.into());
                            i += 3;
                            continue;
                        }
                    }
                    None if KEYWORDS.contains(&upper.as_str()) => out.push(upper),
                    // An alias or a name PostgreSQL will check.
                    None => out.push(w.clone()),
                }
            }
        }
        i += 1;
    }
    Ok(join(&out))
}

fn join(parts: &[String]) -> String {
    let mut s = String::new();
    for p in parts {
        let glue = !s.is_empty()
            && !s.ends_with('(')
            && !s.ends_with('.')
            && p != ")"
            && p != ","
            && p != "."
            && !(p == "("
                && s.chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_'));
        if glue {
            s.push(' ');
        }
        s.push_str(p);
    }
    s
}

/// Renames a function (`i` at its name; the arguments follow as tokens).
fn function(upper: &str, toks: &[Tok], i: &mut usize) -> Result<String, String> {
    // datetime('now') and friends: the current time.
    if matches!(upper, "DATETIME" | "DATE" | "TIME")
        && matches!(toks.get(*i + 2), Some(Tok::Str(s)) if s.eq_ignore_ascii_case("'now'"))
        && matches!(toks.get(*i + 3), Some(Tok::Op(o)) if o == ")")
    {
        *i += 3;
        return Ok(match upper {
            "DATETIME" => "CURRENT_TIMESTAMP",
            "DATE" => "CURRENT_DATE",
            _ => "CURRENT_TIME",
        }
        .into());
    }
    Ok(match upper {
        "IFNULL" => "coalesce".into(),
        "INSTR" => "strpos".into(),
        "SUBSTR" | "SUBSTRING" => "substr".into(),
        "LENGTH" | "LOWER" | "UPPER" | "ABS" | "COALESCE" | "NULLIF" | "TRIM" | "LTRIM"
        | "RTRIM" | "ROUND" | "REPLACE" | "COUNT" | "SUM" | "MIN" | "MAX" | "AVG" | "CAST"
        | "EXISTS" | "IN" | "NOT" | "AND" | "OR" | "VALUES" => upper.to_ascii_lowercase(),
        "TYPEOF" | "JSON_VALID" | "JSON_EXTRACT" | "PRINTF" | "FORMAT" | "STRFTIME"
        | "JULIANDAY" | "UNIXEPOCH" | "DATETIME" | "DATE" | "TIME" | "GLOB" | "LIKELY"
        | "UNLIKELY" | "IIF" | "HEX" | "RANDOM" | "RANDOMBLOB" | "TOTAL" | "GROUP_CONCAT"
        | "CHAR" | "UNICODE" | "ZEROBLOB" | "QUOTE" | "RAISE" | "LAST_INSERT_ROWID" | "CHANGES" => {
            return Err(format!(
                "SQLite function {} has no direct PostgreSQL equivalent",
                upper.to_ascii_lowercase()
            ));
        }
        // Unknown: keep it; PostgreSQL decides.
        _ => upper.to_ascii_lowercase(),
    })
}

/// The parenthesised bodies of the CHECK constraints in a CREATE TABLE.
pub fn checks_of_table(create_sql: &str) -> Vec<String> {
    let Ok(toks) = tokenize(create_sql) else {
        return vec![];
    };
    let mut out = vec![];
    let mut k = 0;
    while k < toks.len() {
        if matches!(&toks[k].0, Tok::Word(w) if w.eq_ignore_ascii_case("CHECK"))
            && matches!(toks.get(k + 1), Some((Tok::Op(o), _)) if o == "(")
        {
            let start = toks[k + 1].1.end;
            let mut depth = 1;
            let mut j = k + 2;
            while j < toks.len() {
                match &toks[j].0 {
                    Tok::Op(o) if o == "(" => depth += 1,
                    Tok::Op(o) if o == ")" => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j < toks.len() {
                out.push(create_sql[start..toks[j].1.start].trim().to_string());
            }
            k = j;
        }
        k += 1;
    }
    out
}

/// The column named inside `JSON_VALID(...)` calls of an expression.
pub fn json_valid_columns(expr: &str) -> Vec<String> {
    let Ok(toks) = tokenize(expr) else {
        return vec![];
    };
    let mut out = vec![];
    for w in toks.windows(4) {
        if let (Tok::Word(f), Tok::Op(o), Tok::Word(c) | Tok::Quoted(c), Tok::Op(cl)) =
            (&w[0].0, &w[1].0, &w[2].0, &w[3].0)
            && f.eq_ignore_ascii_case("json_valid")
            && o == "("
            && cl == ")"
        {
            out.push(c.clone());
        }
    }
    out
}

/// The CHECK is only `col IN (0, 1)` (SQLAlchemy's boolean) or only
/// `JSON_VALID(col) [OR col IS NULL]` (Django's JSONField): a check the
/// PostgreSQL type enforces by itself.
pub fn is_type_check(expr: &str) -> Option<String> {
    let toks: Vec<Tok> = tokenize(expr).ok()?.into_iter().map(|(t, _)| t).collect();
    let word = |t: &Tok, s: &str| matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case(s));
    let name = |t: &Tok| match t {
        Tok::Word(w) | Tok::Quoted(w) => Some(w.clone()),
        _ => None,
    };
    let op = |t: &Tok, s: &str| matches!(t, Tok::Op(o) if o == s);
    let strip: Vec<&Tok> = toks.iter().filter(|t| !op(t, "(") && !op(t, ")")).collect();
    // c IN 0 , 1
    if strip.len() == 5
        && word(strip[1], "IN")
        && matches!(strip[2], Tok::Num(n) if n == "0")
        && op(strip[3], ",")
        && matches!(strip[4], Tok::Num(n) if n == "1")
    {
        return name(strip[0]);
    }
    // json_valid c [OR c IS NULL]
    if (strip.len() == 2 || strip.len() == 6) && word(strip[0], "json_valid") {
        let c = name(strip[1])?;
        if strip.len() == 6
            && !(word(strip[2], "OR")
                && name(strip[3]).as_deref() == Some(&c)
                && word(strip[4], "IS")
                && word(strip[5], "NULL"))
        {
            return None;
        }
        return Some(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct N;
    impl Names for N {
        fn resolve(&self, w: &str) -> Option<String> {
            ["Age", "active", "User Name", "Users"]
                .iter()
                .find(|n| n.eq_ignore_ascii_case(w))
                .map(|s| s.to_string())
        }
        fn is_bool(&self, c: &str) -> bool {
            c == "active"
        }
    }

    #[test]
    fn hostile_sql_tokenizes_or_fails_without_panicking() {
        assert_eq!(tokenize("x'00").unwrap_err(), "unterminated blob literal");
        // An operator byte followed by a multi-byte character.
        let sql = "(\u{e9}<\u{e9}";
        let toks = tokenize(sql).unwrap();
        let ops: Vec<_> = toks
            .iter()
            .filter_map(|(t, _)| match t {
                Tok::Op(o) => Some(o.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ops, ["(", "<"]);
        assert!(toks.iter().all(|(_, r)| r.end <= sql.len()));
    }

    #[test]
    fn rewrites_names_and_operators() {
        assert_eq!(translate("age >= 0", &N).unwrap(), "\"Age\" >= 0");
        assert_eq!(
            translate("[user name] == 'x''y' AND active = 1", &N).unwrap(),
            "\"User Name\" = 'x''y' AND \"active\" = TRUE"
        );
        assert_eq!(
            translate("length(`User Name`) <= 40", &N).unwrap(),
            "length(\"User Name\") <= 40"
        );
        assert_eq!(
            translate("datetime('now')", &N).unwrap(),
            "CURRENT_TIMESTAMP"
        );
        assert_eq!(
            translate("ifnull(age, 0) ISNULL", &N).unwrap(),
            "coalesce(\"Age\", 0) IS NULL"
        );
        assert!(translate("typeof(age) = 'integer'", &N).is_err());
        assert!(translate("name GLOB 'a*'", &N).is_err());
        assert_eq!(
            translate("INSERT INTO users(age) VALUES (1)", &N).unwrap(),
            "INSERT INTO \"Users\" (\"Age\") values(1)"
        );
        assert_eq!(
            translate("SELECT u.age AS a FROM users u WHERE active", &N).unwrap(),
            "SELECT u.\"Age\" AS a FROM \"Users\" u WHERE \"active\""
        );
    }

    #[test]
    fn finds_checks_and_type_checks() {
        let sql = r#"CREATE TABLE "t" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "n" integer unsigned NOT NULL CHECK ("n" >= 0), "data" text NULL CHECK ((JSON_VALID("data") OR "data" IS NULL)), b BOOLEAN, CHECK (b IN (0, 1)))"#;
        let c = checks_of_table(sql);
        assert_eq!(
            c,
            vec![
                "\"n\" >= 0",
                "(JSON_VALID(\"data\") OR \"data\" IS NULL)",
                "b IN (0, 1)"
            ]
        );
        assert_eq!(is_type_check(&c[0]), None);
        assert_eq!(is_type_check(&c[1]).as_deref(), Some("data"));
        assert_eq!(is_type_check(&c[2]).as_deref(), Some("b"));
        assert_eq!(json_valid_columns(&c[1]), vec!["data"]);
    }
}
