//! Type mapping between SQLite and PostgreSQL (pure).
//!
//! A column's PostgreSQL type is chosen from its declared type, the values
//! it actually holds ([`ColumnStats`]), the ORM that created the schema
//! ([`Orm`]) and an optional per-column override. Every choice that is not
//! the obvious one comes with a note for the report.

use std::fmt;

/// A PostgreSQL column type litevault can write and read back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgType {
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    /// `numeric`, with optional precision and scale.
    Numeric(Option<(u32, u32)>),
    Text,
    /// `varchar`, with an optional length limit (in characters).
    Varchar(Option<u32>),
    Bytea,
    Date,
    Time,
    /// `timestamp without time zone`, optional fractional precision.
    Timestamp(Option<u32>),
    /// `timestamp with time zone`, optional fractional precision.
    TimestampTz(Option<u32>),
    Json,
    Jsonb,
    Uuid,
    /// `interval`: months, days and microseconds.
    Interval,
    /// `inet`: a host address with an optional netmask.
    Inet,
    /// `cidr`: a network (no bits set right of the netmask).
    Cidr,
    /// `macaddr` (6 bytes).
    MacAddr,
    /// `macaddr8` (8 bytes; a 6-byte address is widened as PostgreSQL does).
    MacAddr8,
    /// A type whose binary form is its text: `citext`, or an enum (then
    /// `labels` lists the values it accepts). Its OID comes from the catalog.
    Labelled {
        name: String,
        oid: u32,
        labels: Option<Vec<String>>,
    },
    /// A one- or more-dimensional array, written from JSON text (`[1, 2]`).
    Array {
        elem: Box<PgType>,
        elem_oid: u32,
    },
    /// `tsvector`: derived by the app from other columns, so it is loaded
    /// empty and rebuilt by the app (the SQLite values are not copied).
    TsVector,
}

impl PgType {
    /// Parses a PostgreSQL type name as `format_type()` prints it, or as a
    /// user writes it in `--type table.column=TYPE`.
    pub fn parse(s: &str) -> Option<PgType> {
        if s.trim_end().ends_with("[]") {
            return PgType::parse_array(s);
        }
        let l = s.trim().to_ascii_lowercase();
        let (base, args) = match l.find('(') {
            Some(i) => {
                let close = l.rfind(')').filter(|&c| c > i)?;
                let args: Vec<u32> = l[i + 1..close]
                    .split(',')
                    .map(|a| a.trim().parse().ok())
                    .collect::<Option<_>>()?;
                let rest = l[close + 1..].trim();
                (
                    format!("{} {}", l[..i].trim(), rest).trim().to_string(),
                    args,
                )
            }
            None => (l.clone(), vec![]),
        };
        let one = args.first().copied();
        Some(match base.as_str() {
            "boolean" | "bool" => PgType::Boolean,
            "smallint" | "int2" => PgType::SmallInt,
            "integer" | "int" | "int4" | "serial" => PgType::Integer,
            "bigint" | "int8" | "bigserial" => PgType::BigInt,
            "real" | "float4" => PgType::Real,
            "double precision" | "float8" | "float" => PgType::Double,
            "numeric" | "decimal" => PgType::Numeric(match args.as_slice() {
                [p] => Some((*p, 0)),
                [p, s] => Some((*p, *s)),
                _ => None,
            }),
            "text" => PgType::Text,
            "varchar" | "character varying" => PgType::Varchar(one),
            "bytea" => PgType::Bytea,
            "date" => PgType::Date,
            "time" | "time without time zone" => PgType::Time,
            "timestamp" | "timestamp without time zone" => PgType::Timestamp(one),
            "timestamptz" | "timestamp with time zone" => PgType::TimestampTz(one),
            "json" => PgType::Json,
            "jsonb" => PgType::Jsonb,
            "uuid" => PgType::Uuid,
            "interval" => PgType::Interval,
            "inet" => PgType::Inet,
            "cidr" => PgType::Cidr,
            "macaddr" => PgType::MacAddr,
            "macaddr8" => PgType::MacAddr8,
            "tsvector" => PgType::TsVector,
            _ => return None,
        })
    }

    /// Parses `integer[]`, `text[][]` (format_type prints one `[]` for any
    /// number of dimensions) as an array of a built-in element type.
    fn parse_array(s: &str) -> Option<PgType> {
        let base = s.trim().strip_suffix("[]")?;
        let base = base.trim_end_matches("[]");
        let elem = PgType::parse(base)?;
        let elem_oid = elem.oid()?;
        Some(PgType::Array {
            elem: Box::new(elem),
            elem_oid,
        })
    }

    /// The OID of the type (PostgreSQL's catalog), which binary arrays carry
    /// for their elements.
    pub fn oid(&self) -> Option<u32> {
        use PgType as T;
        Some(match self {
            T::Boolean => 16,
            T::SmallInt => 21,
            T::Integer => 23,
            T::BigInt => 20,
            T::Real => 700,
            T::Double => 701,
            T::Numeric(_) => 1700,
            T::Text => 25,
            T::Varchar(_) => 1043,
            T::Bytea => 17,
            T::Date => 1082,
            T::Time => 1083,
            T::Timestamp(_) => 1114,
            T::TimestampTz(_) => 1184,
            T::Json => 114,
            T::Jsonb => 3802,
            T::Uuid => 2950,
            T::Interval => 1186,
            T::Inet => 869,
            T::Cidr => 650,
            T::MacAddr => 829,
            T::MacAddr8 => 774,
            T::TsVector => 3614,
            T::Labelled { oid, .. } => *oid,
            T::Array { .. } => return None,
        })
    }

    /// True for the two timestamp types.
    pub fn is_timestamp(&self) -> bool {
        matches!(self, PgType::Timestamp(_) | PgType::TimestampTz(_))
    }

    /// True for types whose values are dates or times (epoch conversions apply).
    pub fn is_temporal(&self) -> bool {
        self.is_timestamp() || matches!(self, PgType::Date)
    }
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgType::Boolean => write!(f, "boolean"),
            PgType::SmallInt => write!(f, "smallint"),
            PgType::Integer => write!(f, "integer"),
            PgType::BigInt => write!(f, "bigint"),
            PgType::Real => write!(f, "real"),
            PgType::Double => write!(f, "double precision"),
            PgType::Numeric(None) => write!(f, "numeric"),
            PgType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            PgType::Text => write!(f, "text"),
            PgType::Varchar(None) => write!(f, "varchar"),
            PgType::Varchar(Some(n)) => write!(f, "varchar({n})"),
            PgType::Bytea => write!(f, "bytea"),
            PgType::Date => write!(f, "date"),
            PgType::Time => write!(f, "time"),
            PgType::Timestamp(None) => write!(f, "timestamp"),
            PgType::Timestamp(Some(p)) => write!(f, "timestamp({p})"),
            PgType::TimestampTz(None) => write!(f, "timestamptz"),
            PgType::TimestampTz(Some(p)) => write!(f, "timestamptz({p})"),
            PgType::Json => write!(f, "json"),
            PgType::Jsonb => write!(f, "jsonb"),
            PgType::Uuid => write!(f, "uuid"),
            PgType::Interval => write!(f, "interval"),
            PgType::Inet => write!(f, "inet"),
            PgType::Cidr => write!(f, "cidr"),
            PgType::MacAddr => write!(f, "macaddr"),
            PgType::MacAddr8 => write!(f, "macaddr8"),
            PgType::Labelled { name, .. } => write!(f, "{name}"),
            PgType::Array { elem, .. } => write!(f, "{elem}[]"),
            PgType::TsVector => write!(f, "tsvector"),
        }
    }
}

/// How integers stored in a date/time column count time since 1970-01-01 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
}

impl EpochUnit {
    /// Guesses the unit from the largest absolute integer stored: seconds
    /// reach 1e11 only in the year 5138, milliseconds reach 1e14 at the same
    /// date, so magnitudes separate them for any plausible date after 1973.
    pub fn from_max_abs(max_abs: u64) -> EpochUnit {
        if max_abs >= 100_000_000_000_000 {
            EpochUnit::Micros
        } else if max_abs >= 100_000_000_000 {
            EpochUnit::Millis
        } else {
            EpochUnit::Seconds
        }
    }

    /// Microseconds per unit.
    pub fn micros(self) -> i64 {
        match self {
            EpochUnit::Seconds => 1_000_000,
            EpochUnit::Millis => 1_000,
            EpochUnit::Micros => 1,
        }
    }
}

/// The ORM whose migrations created a SQLite schema, recognised by its
/// bookkeeping table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Orm {
    /// No ORM recognised.
    None,
    /// `django_migrations`.
    Django,
    /// `schema_migrations` and `ar_internal_metadata`.
    Rails,
    /// `alembic_version` (SQLAlchemy).
    Alembic,
    /// `_prisma_migrations`.
    Prisma,
}

impl Orm {
    /// The table whose rows name the migrations applied.
    pub fn bookkeeping_table(self) -> Option<&'static str> {
        match self {
            Orm::Django => Some("django_migrations"),
            Orm::Alembic => Some("alembic_version"),
            Orm::Rails => Some("schema_migrations"),
            Orm::Prisma => Some("_prisma_migrations"),
            Orm::None => None,
        }
    }

    /// Recognises the ORM from the table names of a database.
    pub fn detect<'a>(tables: impl IntoIterator<Item = &'a str>) -> Orm {
        let names: Vec<String> = tables.into_iter().map(|t| t.to_lowercase()).collect();
        let has = |n: &str| names.iter().any(|t| t == n);
        if has("django_migrations") {
            Orm::Django
        } else if has("ar_internal_metadata") || has("schema_migrations") {
            Orm::Rails
        } else if has("alembic_version") {
            Orm::Alembic
        } else if has("_prisma_migrations") {
            Orm::Prisma
        } else {
            Orm::None
        }
    }
}

impl fmt::Display for Orm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Orm::None => "none",
            Orm::Django => "Django",
            Orm::Rails => "Rails",
            Orm::Alembic => "Alembic/SQLAlchemy",
            Orm::Prisma => "Prisma",
        })
    }
}

/// What a column holds, by SQLite storage class, from one scan of the table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnStats {
    pub nulls: u64,
    pub integers: u64,
    pub reals: u64,
    pub texts: u64,
    pub blobs: u64,
    pub int_min: Option<i64>,
    pub int_max: Option<i64>,
    /// Integers other than 0 and 1.
    pub non_bool_integers: u64,
    /// Texts of the form of a UUID (32 hex digits, or 36 with dashes).
    pub uuid_texts: u64,
    /// Texts carrying a time-zone designator (`Z` or `+hh:mm` at the end).
    pub tz_texts: u64,
    /// Largest absolute real value.
    pub real_max_abs: f64,
    /// In a date/time column: texts that are not dates or times (SQLite's
    /// own date parser refuses them), and one of them.
    pub not_temporal: u64,
    pub not_temporal_example: Option<String>,
    /// Texts of the shape of an IPv4 or IPv6 address, with or without `/bits`.
    pub address_texts: u64,
}

impl ColumnStats {
    fn non_null(&self) -> u64 {
        self.integers + self.reals + self.texts + self.blobs
    }

    /// Largest absolute integer stored.
    pub fn int_max_abs(&self) -> u64 {
        let a = self.int_min.map(|v| v.unsigned_abs()).unwrap_or(0);
        let b = self.int_max.map(|v| v.unsigned_abs()).unwrap_or(0);
        a.max(b)
    }

    fn ints_fit(&self, lo: i64, hi: i64) -> bool {
        self.int_min.is_none_or(|v| v >= lo) && self.int_max.is_none_or(|v| v <= hi)
    }
}

/// A SQLite column, as its schema declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDecl {
    pub name: String,
    /// The declared type, as written (may be empty).
    pub declared: String,
    pub not_null: bool,
    /// The column is the table's rowid alias (`INTEGER PRIMARY KEY`).
    pub rowid_alias: bool,
    /// Declared with a `CHECK (JSON_VALID(col))` (Django's JSONField).
    pub json_checked: bool,
    /// The default, as SQLite SQL text.
    pub default: Option<String>,
    /// A generated column (its values are exported as plain values).
    pub generated: bool,
}

/// The decision for one column.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnMapping {
    pub pg_type: PgType,
    /// Unit of integers stored in a date/time column.
    pub epoch: EpochUnit,
    /// Identity column (`GENERATED BY DEFAULT AS IDENTITY`), reset to max+1.
    pub identity: bool,
    /// Why, when the choice needs explaining.
    pub notes: Vec<String>,
}

/// SQLite's column affinity for a declared type (section 3.1 of "Datatypes
/// In SQLite").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    /// The affinity SQLite gives a declared type.
    pub fn of(declared: &str) -> Affinity {
        let d = declared.to_ascii_uppercase();
        if d.contains("INT") {
            Affinity::Integer
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            Affinity::Text
        } else if d.contains("BLOB") || d.trim().is_empty() {
            Affinity::Blob
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

/// Splits `VARCHAR(20)` into `("varchar", [20])`; `numeric(10, 2)` into
/// `("numeric", [10, 2])`.
fn split_declared(declared: &str) -> (String, Vec<u32>) {
    let l = declared.trim().to_ascii_lowercase();
    match (l.find('('), l.rfind(')')) {
        (Some(i), Some(j)) if j > i => {
            let args = l[i + 1..j]
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect();
            let base = format!("{} {}", l[..i].trim(), l[j + 1..].trim());
            (base.trim().to_string(), args)
        }
        _ => (l, vec![]),
    }
}

/// Chooses the PostgreSQL type of a column.
pub fn map_column(
    col: &ColumnDecl,
    stats: &ColumnStats,
    orm: Orm,
    override_type: Option<&PgType>,
) -> ColumnMapping {
    let mut m = map_column_inner(col, stats, orm, override_type);
    if col.generated {
        m.notes
            .push("generated column: its values are exported, the expression is not".into());
    }
    m
}

fn map_column_inner(
    col: &ColumnDecl,
    stats: &ColumnStats,
    orm: Orm,
    override_type: Option<&PgType>,
) -> ColumnMapping {
    let mut m = ColumnMapping {
        pg_type: PgType::Text,
        epoch: EpochUnit::from_max_abs(stats.int_max_abs().max(stats.real_max_abs as u64)),
        identity: col.rowid_alias,
        notes: vec![],
    };
    if let Some(t) = override_type {
        m.pg_type = t.clone();
        m.notes.push(format!("type {t} set by override"));
        if *t == PgType::Interval {
            // Numbers in a duration column: Django's DurationField holds
            // microseconds; otherwise seconds.
            m.epoch = match orm {
                Orm::Django => EpochUnit::Micros,
                _ => EpochUnit::Seconds,
            };
        }
        if m.identity && !matches!(t, PgType::SmallInt | PgType::Integer | PgType::BigInt) {
            m.identity = false;
        }
        epoch_note(&mut m, stats);
        return m;
    }
    let (base, args) = split_declared(&col.declared);
    let words: Vec<&str> = base.split_whitespace().collect();
    let first = words.first().copied().unwrap_or("");
    let ints_only = stats.non_null() == stats.integers;

    // The rowid alias: always an integer, identity, reset to max+1.
    if col.rowid_alias {
        m.pg_type = match orm {
            Orm::Prisma | Orm::Alembic if stats.ints_fit(i32::MIN as i64, i32::MAX as i64) => {
                PgType::Integer
            }
            _ => PgType::BigInt,
        };
        return m;
    }

    let is_bool = matches!(first, "bool" | "boolean");
    let is_json = matches!(first, "json" | "jsonb") || col.json_checked;
    let is_uuid = matches!(first, "uuid" | "guid" | "uniqueidentifier");
    let is_datetime = base.contains("datetime") || base.starts_with("timestamp");
    let is_date = first == "date";
    let is_time = first == "time";

    if is_bool {
        let texty = stats.texts > 0 || stats.reals > 0 || stats.blobs > 0;
        if stats.non_bool_integers == 0 && !texty {
            m.pg_type = PgType::Boolean;
        } else if stats.non_bool_integers == 0 && stats.reals == 0 && stats.blobs == 0 {
            // 't'/'f' (old Rails) or 'true'/'false': converted value by value.
            m.pg_type = PgType::Boolean;
            m.notes
                .push("boolean stored as text ('t'/'f', 'true'/'false')".into());
        } else {
            m.pg_type = PgType::BigInt;
            m.notes.push(format!(
                "declared {} but holds values other than 0/1: kept as bigint",
                col.declared
            ));
        }
        return m;
    }
    if is_json {
        m.pg_type = match (orm, first) {
            (Orm::Rails | Orm::Alembic, "json") => PgType::Json,
            _ => PgType::Jsonb,
        };
        if col.json_checked && first != "json" && first != "jsonb" {
            m.notes.push(format!(
                "{} with a JSON_VALID check: jsonb (the check is enforced by the type)",
                col.declared
            ));
        }
        return m;
    }
    if is_uuid {
        m.pg_type = PgType::Uuid;
        return m;
    }
    // char(32)/char(36) holding only UUIDs: Django's and SQLAlchemy's UUID fields.
    if matches!(first, "char" | "character" | "varchar" | "nchar")
        && matches!(args.as_slice(), [32] | [36])
        && stats.texts > 0
        && stats.uuid_texts == stats.non_null()
    {
        m.pg_type = PgType::Uuid;
        m.notes.push(format!(
            "{} holding only UUIDs: uuid (PostgreSQL prints them lowercase with dashes)",
            col.declared
        ));
        return m;
    }
    // Values that are not dates demote the column to text, said in a note.
    let not_dates = stats.not_temporal > 0
        && stats
            .not_temporal_example
            .as_deref()
            .is_none_or(|e| crate::pg::value::parse_timestamp(e).is_none());
    if (is_datetime || is_date || is_time) && not_dates {
        m.pg_type = PgType::Text;
        let example = stats
            .not_temporal_example
            .as_deref()
            .map(|e| format!(" (e.g. {:?})", e.chars().take(40).collect::<String>()))
            .unwrap_or_default();
        m.notes.push(format!(
            "declared {} but {} value(s) are not dates or times{example}: text. To keep a \
             date/time type, fix those rows, or give --type with --on-bad-row report=FILE",
            col.declared, stats.not_temporal
        ));
        return m;
    }
    // Django's GenericIPAddressField is char(39) on SQLite, inet on PostgreSQL.
    if orm == Orm::Django
        && matches!(first, "char" | "character")
        && args == [39]
        && stats.texts > 0
        && stats.address_texts == stats.non_null()
    {
        m.pg_type = PgType::Inet;
        m.notes
            .push("char(39) holding only addresses (Django's GenericIPAddressField): inet".into());
        return m;
    }
    if is_datetime || is_date {
        let precision = args.first().copied();
        m.pg_type = if is_date {
            PgType::Date
        } else {
            match orm {
                Orm::Django => PgType::TimestampTz(None),
                Orm::Rails => PgType::Timestamp(precision.or(Some(6))),
                Orm::Prisma => PgType::Timestamp(Some(3)),
                Orm::Alembic => PgType::Timestamp(precision),
                Orm::None if base.contains("tz") || base.contains("with time zone") => {
                    PgType::TimestampTz(precision)
                }
                Orm::None if stats.tz_texts > 0 => {
                    m.notes
                        .push("values carry a time zone: timestamptz (converted to UTC)".into());
                    PgType::TimestampTz(precision)
                }
                Orm::None => PgType::Timestamp(precision),
            }
        };
        if orm == Orm::Django && !is_date {
            m.notes
                .push("Django datetime: timestamptz (stored values are UTC)".into());
        }
        epoch_note(&mut m, stats);
        return m;
    }
    if is_time {
        m.pg_type = PgType::Time;
        return m;
    }
    match Affinity::of(&col.declared) {
        Affinity::Integer => {
            let fits32 = stats.ints_fit(i32::MIN as i64, i32::MAX as i64);
            let fits16 = stats.ints_fit(i16::MIN as i64, i16::MAX as i64);
            m.pg_type = match first {
                "smallint" | "int2" | "tinyint" if fits16 => PgType::SmallInt,
                "integer" | "int" | "int4" | "mediumint"
                    if orm != Orm::None && fits32 && !base.contains("unsigned big") =>
                {
                    PgType::Integer
                }
                _ => PgType::BigInt,
            };
            if matches!(first, "smallint" | "int2" | "tinyint") && !fits16 {
                m.notes
                    .push("declared small integer holds larger values: bigint".into());
            }
        }
        Affinity::Real => m.pg_type = PgType::Double,
        Affinity::Text => {
            m.pg_type = match (first, args.as_slice()) {
                ("varchar" | "character" | "char" | "nvarchar" | "nchar", [n]) => {
                    PgType::Varchar(Some(*n))
                }
                ("varchar" | "character", []) if orm == Orm::Rails => PgType::Varchar(None),
                _ => PgType::Text,
            };
        }
        Affinity::Blob if col.declared.trim().is_empty() => {
            // No declared type: decide from the values.
            let kinds = [stats.integers, stats.reals, stats.texts, stats.blobs]
                .iter()
                .filter(|&&n| n > 0)
                .count();
            m.pg_type = if kinds == 0 || stats.texts == stats.non_null() {
                PgType::Text
            } else if ints_only {
                PgType::BigInt
            } else if stats.integers + stats.reals == stats.non_null() {
                PgType::Double
            } else if stats.blobs == stats.non_null() {
                PgType::Bytea
            } else if stats.blobs == 0 {
                m.notes.push(
                    "no declared type and mixed numbers and text: text (numbers written as decimal text)"
                        .into(),
                );
                PgType::Text
            } else {
                m.notes.push(
                    "no declared type and blobs mixed with other values: bytea (text as its UTF-8 bytes)"
                        .into(),
                );
                PgType::Bytea
            };
        }
        Affinity::Blob => m.pg_type = PgType::Bytea,
        Affinity::Numeric => {
            m.pg_type = match (first, args.as_slice()) {
                ("numeric" | "decimal", [p, s]) => PgType::Numeric(Some((*p, *s))),
                ("numeric" | "decimal", [p]) => PgType::Numeric(Some((*p, 0))),
                ("numeric" | "decimal", []) if orm == Orm::Prisma => {
                    PgType::Numeric(Some((65, 30)))
                }
                ("numeric" | "decimal" | "money", _) => PgType::Numeric(None),
                _ if ints_only => PgType::BigInt,
                _ if stats.texts == 0 && stats.blobs == 0 => PgType::Double,
                _ => {
                    m.notes.push(format!(
                        "declared {:?} (numeric affinity) holds text: text",
                        col.declared
                    ));
                    PgType::Text
                }
            };
        }
    }
    m
}

fn epoch_note(m: &mut ColumnMapping, stats: &ColumnStats) {
    if m.pg_type.is_temporal() && stats.integers > 0 {
        let unit = match m.epoch {
            EpochUnit::Seconds => "seconds",
            EpochUnit::Millis => "milliseconds",
            EpochUnit::Micros => "microseconds",
        };
        m.notes
            .push(format!("integers read as Unix epoch {unit} (by magnitude)"));
    }
    if m.pg_type.is_temporal() && stats.reals > 0 {
        m.notes.push(
            "reals read as Julian day numbers (below 1e7) or fractional epoch seconds".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, declared: &str) -> ColumnDecl {
        ColumnDecl {
            name: name.into(),
            declared: declared.into(),
            not_null: false,
            rowid_alias: false,
            json_checked: false,
            default: None,
            generated: false,
        }
    }

    fn ints(min: i64, max: i64) -> ColumnStats {
        ColumnStats {
            integers: 10,
            int_min: Some(min),
            int_max: Some(max),
            non_bool_integers: if min >= 0 && max <= 1 { 0 } else { 5 },
            ..Default::default()
        }
    }

    #[test]
    fn parse_and_print_round_trip() {
        for t in [
            "boolean",
            "smallint",
            "integer",
            "bigint",
            "real",
            "double precision",
            "numeric",
            "numeric(10,2)",
            "text",
            "varchar",
            "varchar(20)",
            "bytea",
            "date",
            "time",
            "timestamp",
            "timestamp(3)",
            "timestamptz",
            "json",
            "jsonb",
            "uuid",
            "interval",
            "inet",
            "cidr",
            "macaddr",
            "macaddr8",
            "tsvector",
            "integer[]",
            "varchar(20)[]",
        ] {
            assert_eq!(PgType::parse(t).unwrap().to_string(), t);
        }
        assert_eq!(
            PgType::parse("character varying(20)[]"),
            Some(PgType::Array {
                elem: Box::new(PgType::Varchar(Some(20))),
                elem_oid: 1043
            })
        );
        assert_eq!(
            PgType::parse("character varying(12)"),
            Some(PgType::Varchar(Some(12)))
        );
        assert_eq!(
            PgType::parse("timestamp(6) without time zone"),
            Some(PgType::Timestamp(Some(6)))
        );
        assert_eq!(PgType::parse("tsquery"), None);
        assert_eq!(PgType::parse("point[]"), None);
        assert_eq!(PgType::parse("numeric)(10"), None);
    }

    #[test]
    fn epoch_units_by_magnitude() {
        assert_eq!(EpochUnit::from_max_abs(1_700_000_000), EpochUnit::Seconds);
        assert_eq!(
            EpochUnit::from_max_abs(1_700_000_000_000),
            EpochUnit::Millis
        );
        assert_eq!(
            EpochUnit::from_max_abs(1_700_000_000_000_000),
            EpochUnit::Micros
        );
    }

    #[test]
    fn booleans_need_zero_one() {
        let m = map_column(&decl("b", "BOOLEAN"), &ints(0, 1), Orm::None, None);
        assert_eq!(m.pg_type, PgType::Boolean);
        let m = map_column(&decl("b", "bool"), &ints(0, 2), Orm::None, None);
        assert_eq!(m.pg_type, PgType::BigInt);
        assert!(!m.notes.is_empty());
    }

    #[test]
    fn django_types() {
        let s = ColumnStats::default();
        let d = Orm::Django;
        assert_eq!(
            map_column(&decl("a", "datetime"), &s, d, None).pg_type,
            PgType::TimestampTz(None)
        );
        assert_eq!(
            map_column(&decl("a", "varchar(40)"), &s, d, None).pg_type,
            PgType::Varchar(Some(40))
        );
        let mut j = decl("a", "text");
        j.json_checked = true;
        assert_eq!(map_column(&j, &s, d, None).pg_type, PgType::Jsonb);
        let u = ColumnStats {
            texts: 3,
            uuid_texts: 3,
            ..Default::default()
        };
        assert_eq!(
            map_column(&decl("a", "char(32)"), &u, d, None).pg_type,
            PgType::Uuid
        );
        assert_eq!(
            map_column(&decl("a", "integer"), &ints(1, 5), d, None).pg_type,
            PgType::Integer
        );
        assert_eq!(
            map_column(&decl("a", "real"), &s, d, None).pg_type,
            PgType::Double
        );
    }

    #[test]
    fn generic_integers_are_bigint_and_untyped_follows_values() {
        assert_eq!(
            map_column(&decl("a", "INTEGER"), &ints(1, 5), Orm::None, None).pg_type,
            PgType::BigInt
        );
        let mixed = ColumnStats {
            integers: 1,
            texts: 1,
            ..Default::default()
        };
        let m = map_column(&decl("a", ""), &mixed, Orm::None, None);
        assert_eq!(m.pg_type, PgType::Text);
        assert!(!m.notes.is_empty());
    }

    #[test]
    fn detects_orm() {
        assert_eq!(Orm::detect(["a", "django_migrations"]), Orm::Django);
        assert_eq!(Orm::detect(["ar_internal_metadata"]), Orm::Rails);
        assert_eq!(Orm::detect(["alembic_version"]), Orm::Alembic);
        assert_eq!(Orm::detect(["_prisma_migrations"]), Orm::Prisma);
        assert_eq!(Orm::detect(["users"]), Orm::None);
    }

    #[test]
    fn override_wins() {
        let m = map_column(
            &decl("a", "TEXT"),
            &ColumnStats::default(),
            Orm::None,
            Some(&PgType::Jsonb),
        );
        assert_eq!(m.pg_type, PgType::Jsonb);
    }
}
