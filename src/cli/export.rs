//! `litevault export DB POSTGRES_URL`, `litevault export --from REPLICA POSTGRES_URL`,
//! `litevault export DB --schema-only`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use litevault::ltx::Txid;
use litevault::pg::export::{
    ExportMode, ExportOptions, ExportReport, IfExists, OnBadRow, parse_type_override, plan,
    read_types_file, schema_script,
};
use litevault::pg::select::TableSelection;
use litevault::replica::Replica;
use litevault::restore::{RestoreOptions, RestoreTarget, restore};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `DB POSTGRES_URL`; with --from only `POSTGRES_URL`; with --schema-only only `DB`.
    #[arg(num_args = 1..=2, required = true, value_name = "DB | POSTGRES_URL")]
    args: Vec<String>,
    /// Export a point in time of this replica (restored to a temporary file first).
    #[arg(long)]
    from: Option<String>,
    /// With --from: the state right after this TXID (hex).
    #[arg(long, requires = "from", conflicts_with = "timestamp")]
    txid: Option<String>,
    /// With --from: the latest state at or before this time (RFC 3339).
    #[arg(long, requires = "from")]
    timestamp: Option<String>,
    /// Load into an existing schema (tables matched by name, columns by name).
    #[arg(long, conflicts_with = "schema_only")]
    data_only: bool,
    /// Print the DDL and exit.
    #[arg(long)]
    schema_only: bool,
    /// Drop tables that already exist and create them again.
    #[arg(long, conflicts_with_all = ["truncate", "data_only"])]
    drop: bool,
    /// Empty tables that already exist and load into them.
    #[arg(long)]
    truncate: bool,
    /// Tables loaded at once (one connection each).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// `stop` (default) or `report=FILE`: skip rows PostgreSQL cannot hold and list them in FILE.
    #[arg(long, default_value = "stop")]
    on_bad_row: String,
    /// Set a column's type: `table.column=TYPE` (repeatable).
    #[arg(long = "type", value_name = "TABLE.COLUMN=TYPE")]
    types: Vec<String>,
    /// A file of `table.column = TYPE` lines (`#` comments).
    #[arg(long, value_name = "FILE")]
    types_file: Option<PathBuf>,
    /// Target PostgreSQL schema.
    #[arg(long, default_value = "public")]
    schema: String,
    /// Export only the tables whose name matches GLOB (`*`, `?`, `[a-z]`; repeatable; default: every table).
    #[arg(long = "table", value_name = "GLOB")]
    tables: Vec<String>,
    /// Leave out the tables whose name matches GLOB (repeatable; wins over --table).
    #[arg(long = "exclude-table", value_name = "GLOB")]
    exclude_tables: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut types = BTreeMap::new();
    if let Some(f) = &a.types_file {
        types.extend(read_types_file(f)?);
    }
    for t in &a.types {
        let (k, v) = parse_type_override(t)?;
        types.insert(k, v);
    }
    let on_bad_row = match a.on_bad_row.as_str() {
        "stop" => OnBadRow::Stop,
        s if s.starts_with("report=") && s.len() > 7 => OnBadRow::Report(PathBuf::from(&s[7..])),
        s => bail!("--on-bad-row {s:?}: write `stop` or `report=FILE`"),
    };
    let opts = ExportOptions {
        mode: if a.data_only {
            ExportMode::DataOnly
        } else {
            ExportMode::Full
        },
        if_exists: if a.drop {
            IfExists::Drop
        } else if a.truncate {
            IfExists::Truncate
        } else {
            IfExists::Refuse
        },
        jobs: a.jobs.max(1),
        on_bad_row,
        types,
        schema: a.schema.clone(),
        tables: TableSelection::parse(&a.tables, &a.exclude_tables)?,
        progress: super::progress::terminal(),
    };
    let (db, url, _tmp): (PathBuf, Option<String>, Option<tempfile::TempDir>) = match &a.from {
        Some(replica_url) => {
            if a.args.len() != 1 && !a.schema_only {
                bail!(
                    "with --from, give only the PostgreSQL URL: litevault export --from REPLICA POSTGRES_URL"
                );
            }
            let dir = tempfile::tempdir().context("creating a temporary folder")?;
            let db = dir.path().join("restored.db");
            let target = match (&a.txid, &a.timestamp) {
                (Some(t), _) => RestoreTarget::Txid(t.parse::<Txid>().map_err(|_| {
                    anyhow::anyhow!("--txid {t:?} is not a hex TXID (up to 16 hex digits)")
                })?),
                (_, Some(ts)) => RestoreTarget::Timestamp(
                    chrono::DateTime::parse_from_rfc3339(ts)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "--timestamp {ts:?} is not RFC 3339 ({e}); write e.g. 2026-11-22T10:00:00Z"
                            )
                        })?
                        .to_utc(),
                ),
                _ => RestoreTarget::Latest,
            };
            let replica = Replica::open(replica_url)?;
            let ro = RestoreOptions {
                target,
                progress: super::progress::terminal(),
                write_state: false,
                ..RestoreOptions::default()
            };
            restore(&replica, &db, &ro)
                .await
                .with_context(|| format!("restoring {replica_url} for the export"))?;
            (db, a.args.first().cloned(), Some(dir))
        }
        None => {
            let Some(db) = a.args.first() else {
                bail!("give the database to export: litevault export DB POSTGRES_URL");
            };
            (PathBuf::from(db), a.args.get(1).cloned(), None)
        }
    };
    if a.schema_only {
        let db2 = db.clone();
        let o2 = opts.clone();
        let p = tokio::task::spawn_blocking(move || plan(&db2, &o2)).await??;
        print!("{}", schema_script(&p, &a.schema));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(url) = url else {
        bail!(
            "no PostgreSQL URL: litevault export {} postgres://user@host:5432/db (or --schema-only to print the DDL)",
            db.display()
        );
    };
    let report = litevault::pg::export(&db, &url, &opts).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.ok() {
        let bad: Vec<&str> = report
            .tables
            .iter()
            .filter(|t| !t.verified)
            .map(|t| t.table.as_str())
            .collect();
        if !bad.is_empty() {
            eprintln!(
                "error: verification failed for {}: PostgreSQL does not hold what was sent",
                bad.join(", ")
            );
        }
        if report.failed_constraints > 0 {
            eprintln!(
                "error: PostgreSQL refused {} constraint(s) or index(es); see the problems above",
                report.failed_constraints
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &ExportReport) {
    if r.orm != "none" {
        println!("schema created by: {}", r.orm);
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    super::print_unported(&r.problems);
    let w = super::name_width(r.tables.iter().map(|t| t.table.as_str()));
    println!(
        "{:<w$}  {:>10}  {:>8}  {:>10}  {:<32}  {:<32}  result",
        "table", "sqlite", "rejected", "postgres", "sqlite checksum", "postgres checksum"
    );
    for t in &r.tables {
        println!(
            "{:<w$}  {:>10}  {:>8}  {:>10}  {:<32}  {:<32}  {}",
            t.table,
            t.source_rows,
            t.rejected,
            t.postgres.rows,
            t.sqlite.hex(),
            t.postgres.hex(),
            if t.verified { "ok" } else { "MISMATCH" }
        );
    }
    let rows: u64 = r.tables.iter().map(|t| t.postgres.rows).sum();
    println!(
        "exported {} table(s), {rows} row(s) in {} ms; {} row(s) rejected{}",
        r.tables.len(),
        r.millis,
        r.rejected_rows,
        if r.ok() { "; verified" } else { "" }
    );
    for n in &r.notices {
        println!("{n}");
    }
}
