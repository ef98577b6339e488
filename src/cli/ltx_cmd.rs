//! `litevault ltx URL`: what the replica holds.

use std::process::ExitCode;

use litevault::replica::Replica;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Replica URL.
    url: String,
    /// Level to list: 0-9, or `all`.
    #[arg(long, default_value = "all")]
    level: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Row {
    level: u8,
    min_txid: String,
    max_txid: String,
    size: u64,
    created: String,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let replica = Replica::open(&a.url)?;
    let files = if a.level == "all" {
        replica.list_all().await?
    } else {
        let level: u8 = a
            .level
            .parse()
            .ok()
            .filter(|l| *l <= 9)
            .ok_or_else(|| anyhow::anyhow!("--level {:?}: use 0 to 9, or all", a.level))?;
        replica.list_level(level).await?
    };
    let rows: Vec<Row> = files
        .iter()
        .map(|f| Row {
            level: f.level,
            min_txid: f.min_txid.to_string(),
            max_txid: f.max_txid.to_string(),
            size: f.size,
            created: f.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("level  min_txid          max_txid          size      created");
        for r in &rows {
            println!(
                "{:<6} {}  {}  {:<9} {}",
                r.level, r.min_txid, r.max_txid, r.size, r.created
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
