//! `litevault config check | explain`

use std::path::PathBuf;
use std::process::ExitCode;

use litevault::config::{self, Config, ConfigError, LoadOptions, Problem};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Validate the configuration: errors and warnings with file:line, exit 1 on error.
    Check(Common),
    /// Print every resolved setting, defaults included, with where it came from (secrets redacted).
    Explain {
        #[command(flatten)]
        common: Common,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The config file (default: $LITEVAULT_CONFIG, ./litevault.yml, /etc/litevault.yml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Do not expand $VAR / ${VAR} in the file.
    #[arg(long)]
    no_expand_env: bool,
}

impl Args {
    /// The config file this command reads.
    pub fn config_file(&self) -> super::logging::ConfigFile<'_> {
        let c = match &self.command {
            Command::Check(c) | Command::Explain { common: c, .. } => c,
        };
        super::logging::ConfigFile {
            flag: c.config.as_deref(),
            expand_env: !c.no_expand_env,
        }
    }
}

fn load(c: &Common) -> Result<(PathBuf, Result<Config, ConfigError>), ConfigError> {
    let path = config::locate(c.config.as_deref())?;
    let opts = LoadOptions {
        expand_env: !c.no_expand_env,
    };
    let cfg = Config::load(&path, &opts);
    Ok((path, cfg))
}

fn print_problems(kind: &str, problems: &[Problem]) {
    for p in problems {
        eprintln!("{kind}: {p}");
    }
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        Command::Check(c) => check(&c),
        Command::Explain { common, json } => explain(&common, json),
    }
}

fn check(c: &Common) -> anyhow::Result<ExitCode> {
    let (path, cfg) = load(c)?;
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(ConfigError::Invalid { problems, warnings }) => {
            print_problems("warning", &warnings);
            print_problems("error", &problems);
            eprintln!(
                "{}: {} error(s), {} warning(s)",
                path.display(),
                problems.len(),
                warnings.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    print_problems("warning", &cfg.warnings);
    // Directory sources are scanned now, to count their databases and to
    // catch two databases sharing a replica.
    let dbs = match cfg.expand_dbs() {
        Ok(dbs) => dbs,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let replicas: usize = dbs.iter().map(|d| d.replicas.len()).sum();
    println!(
        "{}: ok: {} database(s), {} replica(s), {} warning(s)",
        path.display(),
        dbs.len(),
        replicas,
        cfg.warnings.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(c: &Common, json: bool) -> anyhow::Result<ExitCode> {
    let (path, cfg) = load(c)?;
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(ConfigError::Invalid { problems, warnings }) => {
            print_problems("warning", &warnings);
            print_problems("error", &problems);
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let entries = cfg.explain();
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "settings": entries,
            "warnings": cfg.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_problems("warning", &cfg.warnings);
    println!("# {}", path.display());
    let kw = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    let vw = entries
        .iter()
        .map(|e| e.value.len())
        .max()
        .unwrap_or(0)
        .min(60);
    for e in &entries {
        println!("{:kw$}  {:vw$}  {}", e.key, e.value, e.origin);
    }
    Ok(ExitCode::SUCCESS)
}
