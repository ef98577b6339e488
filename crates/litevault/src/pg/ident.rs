//! Identifier and literal quoting (pure). Both PostgreSQL and SQLite accept
//! double-quoted identifiers with `"` doubled, so every name is always
//! quoted: spaces, quotes, keywords and mixed case survive on both sides.

/// `name` as a quoted identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `s` as a string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `schema.table`, both quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote(schema), quote(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes() {
        assert_eq!(quote("select"), "\"select\"");
        assert_eq!(quote("My \"odd\" Name"), "\"My \"\"odd\"\" Name\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(qualified("public", "T"), "\"public\".\"T\"");
    }
}
