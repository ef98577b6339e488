//! `litevault ltx URL`: what the replica holds; `--v03`: its Litestream
//! v0.3 backup (generations, snapshots, WAL indexes).

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
    /// List the replica's Litestream v0.3 backup instead: each generation
    /// (the one `restore --generation` takes), its snapshots and its runs of
    /// WAL indexes, with the times their objects were written.
    #[arg(long, conflicts_with = "level")]
    v03: bool,
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
    if a.v03 {
        return list_v03(&replica, a.json).await;
    }
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
        if replica.has_litestream_v03().await? {
            println!(
                "the replica also holds a Litestream v0.3 backup: litevault ltx {} --v03",
                a.url
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list_v03(replica: &Replica, json: bool) -> anyhow::Result<ExitCode> {
    let generations = litevault::restore::v03::list(replica).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&generations)?);
        return Ok(ExitCode::SUCCESS);
    }
    if generations.is_empty() {
        println!("{replica} holds no Litestream v0.3 backup");
    }
    let time =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for g in &generations {
        println!(
            "generation {}  written {} to {}",
            g.generation,
            time(&g.created),
            time(&g.updated)
        );
        for s in &g.snapshots {
            println!(
                "  snapshot  index {}           {:<9} {}",
                s.index,
                s.size,
                time(&s.written)
            );
        }
        for w in &g.wal {
            println!(
                "  wal       index {}-{}  {:<9} {} to {} ({} segment(s))",
                w.first_index,
                w.last_index,
                w.size,
                time(&w.first_written),
                time(&w.last_written),
                w.segments
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
