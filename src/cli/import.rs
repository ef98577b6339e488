//! `litevault import POSTGRES_URL OUT.db`

use std::path::PathBuf;
use std::process::ExitCode;

use litevault::pg::import::{ImportOptions, ImportReport, import};
use litevault::pg::select::TableSelection;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/app
    url: String,
    /// The SQLite database to create (must not exist).
    output: PathBuf,
    /// PostgreSQL schema to import.
    #[arg(long, default_value = "public")]
    schema: String,
    /// Import only the tables whose name (or `schema.name`) matches GLOB (`*`, `?`, `[a-z]`; repeatable; default: every table).
    #[arg(long = "table", value_name = "GLOB")]
    tables: Vec<String>,
    /// Leave out the tables whose name (or `schema.name`) matches GLOB (repeatable; wins over --table).
    #[arg(long = "exclude-table", value_name = "GLOB")]
    exclude_tables: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let opts = ImportOptions {
        schema: a.schema.clone(),
        tables: TableSelection::parse(&a.tables, &a.exclude_tables)?,
        progress: super::progress::terminal(),
    };
    let report = import(&a.url, &a.output, &opts).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &a.output);
    }
    if !report.ok() {
        let bad: Vec<&str> = report
            .tables
            .iter()
            .filter(|t| !t.verified)
            .map(|t| t.table.as_str())
            .collect();
        eprintln!(
            "error: verification failed for {}: the SQLite file does not hold what PostgreSQL sent",
            bad.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &ImportReport, out: &std::path::Path) {
    if r.orm != "none" {
        println!("ORM: {} (values stored as it stores them on SQLite)", r.orm);
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    super::print_unported(&r.problems);
    let w = super::name_width(r.tables.iter().map(|t| t.table.as_str()));
    println!(
        "{:<w$}  {:>10}  {:>10}  {:<32}  {:<32}  result",
        "table", "postgres", "sqlite", "postgres checksum", "sqlite checksum"
    );
    for t in &r.tables {
        println!(
            "{:<w$}  {:>10}  {:>10}  {:<32}  {:<32}  {}",
            t.table,
            t.postgres.rows,
            t.sqlite.rows,
            t.postgres.hex(),
            t.sqlite.hex(),
            if t.verified { "ok" } else { "MISMATCH" }
        );
    }
    let rows: u64 = r.tables.iter().map(|t| t.sqlite.rows).sum();
    println!(
        "imported {} table(s), {rows} row(s) into {} (WAL mode) in {} ms{}",
        r.tables.len(),
        out.display(),
        r.millis,
        if r.ok() { "; verified" } else { "" }
    );
    for n in &r.notices {
        println!("{n}");
    }
}
