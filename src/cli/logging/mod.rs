//! The log: which events are written, in what format, to which stream.
//!
//! Each setting is taken from the first of these that gives it:
//!
//! | setting | `--log-*` flag | environment | config file | default |
//! |---|---|---|---|---|
//! | which events | `--log-level LEVEL` | `LITEVAULT_LOG` (a full tracing filter) | `logging.level` | `info` |
//! | format | `--log-format text\|json\|pretty` | | `logging.type` | `text` |
//! | stream | | | `logging.stderr` (`false`: stdout) | stderr |
//!
//! The config file counts when the subcommand reads one: `replicate`
//! without a DB, `restore` and `verify` without a URL, `status` without
//! databases, `config check` and `config explain`. [`plan`] makes the
//! decision and is pure; [`init`] installs the subscriber; [`json`] writes
//! the JSON lines.

pub mod json;

use std::io::IsTerminal;
use std::path::Path;

use litevault::config::{self, Config, LoadOptions, LogFormat, LogLevel, LoggingConfig};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that holds a tracing filter
/// (`info,litevault::replicate=debug`).
pub const ENV: &str = "LITEVAULT_LOG";

/// What `litevault --help` says about the log, after the subcommands.
pub const HELP: &str = "\
Logs: --log-level, else $LITEVAULT_LOG (a tracing filter such as \
`info,litevault::replicate=debug`), else the config file's logging.level, \
else info. --log-format, else the config file's logging.type, else text. \
Logs go to stderr, or to stdout when the config file sets logging.stderr: false.";

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line: severity, time, message, target, fields.
    Json,
    /// Several human-readable lines per event.
    Pretty,
}

/// `--log-level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// Everything.
    Trace,
    /// What each step does.
    Debug,
    /// What happens (the default).
    Info,
    /// Problems that litevault works around.
    #[value(alias = "warning")]
    Warn,
    /// Failures.
    Error,
}

impl Level {
    fn directive(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl Format {
    /// The name the flag and the config file use.
    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Pretty => "pretty",
        }
    }
}

impl From<LogLevel> for Level {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Trace => Level::Trace,
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        }
    }
}

impl From<LogFormat> for Format {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => Format::Text,
            LogFormat::Json => Format::Json,
            LogFormat::Pretty => Format::Pretty,
        }
    }
}

/// The global `--log-format` and `--log-level` flags.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Flags {
    /// Log format (over the config file's logging.type; default text).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<Format>,
    /// Least severe events logged (over $LITEVAULT_LOG and the config
    /// file's logging.level; default info).
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        value_name = "LEVEL"
    )]
    pub log_level: Option<Level>,
}

/// Where the log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard error (the default).
    Stderr,
    /// Standard output (`logging.stderr: false`).
    Stdout,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stderr => "stderr",
            Stream::Stdout => "stdout",
        }
    }
}

/// The config file a subcommand reads: its `--config` flag (else the usual
/// search, [`config::locate`]) and whether `$VAR`s are expanded.
pub struct ConfigFile<'a> {
    /// `--config`.
    pub flag: Option<&'a Path>,
    /// Not `--no-expand-env`.
    pub expand_env: bool,
}

impl<'a> ConfigFile<'a> {
    /// The file `--config` names, else the one the usual search finds, with
    /// `$VAR`s expanded.
    pub fn new(flag: Option<&'a Path>) -> Self {
        ConfigFile {
            flag,
            expand_env: true,
        }
    }
}

/// The `logging` section of a config file, or nothing when the file is
/// missing or invalid: the subcommand reads it again and reports why.
pub fn from_config_file(file: &ConfigFile<'_>) -> Option<LoggingConfig> {
    let path = config::locate(file.flag).ok()?;
    let opts = LoadOptions {
        expand_env: file.expand_env,
    };
    Config::load(&path, &opts).ok().map(|c| c.logging)
}

/// What the log will be, and where each part of the decision came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The tracing filter.
    pub filter: String,
    /// Where the filter came from: `--log-level`, `LITEVAULT_LOG`,
    /// `logging.level` or `default`.
    pub filter_from: &'static str,
    /// The format.
    pub format: Format,
    /// The stream.
    pub stream: Stream,
    /// A `LITEVAULT_LOG` that is not a filter, and why; it was skipped.
    pub bad_env: Option<(String, String)>,
}

/// Decides the log from the flags, `LITEVAULT_LOG` (an empty value counts as
/// unset) and the config file's `logging` section.
pub fn plan(flags: &Flags, env: Option<&str>, file: Option<&LoggingConfig>) -> Plan {
    let mut bad_env = None;
    let env = env.filter(|v| !v.trim().is_empty()).and_then(|v| {
        EnvFilter::try_new(v)
            .map_err(|e| bad_env = Some((v.to_string(), e.to_string())))
            .ok()
            .map(|_| v)
    });
    let (filter, filter_from) = if let Some(l) = flags.log_level {
        (l.directive().to_string(), "--log-level")
    } else if let Some(v) = env {
        (v.to_string(), ENV)
    } else if let Some(c) = file {
        (
            Level::from(c.level).directive().to_string(),
            "logging.level",
        )
    } else {
        (Level::Info.directive().to_string(), "default")
    };
    let format = flags
        .log_format
        .or(file.map(|c| Format::from(c.format)))
        .unwrap_or(Format::Text);
    let to_stderr = file.map_or(litevault::defaults::LOG_TO_STDERR, |c| c.stderr);
    Plan {
        filter,
        filter_from,
        format,
        stream: if to_stderr {
            Stream::Stderr
        } else {
            Stream::Stdout
        },
        bad_env,
    }
}

type Filtered = Layered<EnvFilter, tracing_subscriber::Registry>;

/// Installs the log `plan` describes for the rest of the process, then logs
/// (at debug) what it decided.
pub fn init(plan: &Plan) {
    let filter = EnvFilter::try_new(&plan.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, ansi) = match plan.stream {
        Stream::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        Stream::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
    };
    let layer: Box<dyn Layer<Filtered> + Send + Sync> = match plan.format {
        Format::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        Format::Pretty => tracing_subscriber::fmt::layer()
            .pretty()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        Format::Json => match plan.stream {
            Stream::Stderr => json::JsonLayer::new(std::io::stderr).boxed(),
            Stream::Stdout => json::JsonLayer::new(std::io::stdout).boxed(),
        },
    };
    // Fails only if a subscriber is already installed, which main does not do.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    if let Some((value, why)) = &plan.bad_env {
        tracing::warn!(
            "{ENV}={value:?} is not a tracing filter ({why}); ignored. \
             Write levels like `info` or `info,litevault::replicate=debug`"
        );
    }
    tracing::debug!(
        filter = %plan.filter,
        filter_from = plan.filter_from,
        format = plan.format.name(),
        stream = plan.stream.name(),
        "log settings"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(level: LogLevel, format: LogFormat, stderr: bool) -> LoggingConfig {
        LoggingConfig {
            level,
            format,
            stderr,
        }
    }

    #[test]
    fn nothing_set_is_info_text_on_stderr() {
        let p = plan(&Flags::default(), None, None);
        assert_eq!(
            (p.filter.as_str(), p.filter_from, p.format, p.stream),
            ("info", "default", Format::Text, Stream::Stderr)
        );
        // An empty LITEVAULT_LOG is no setting.
        assert_eq!(
            plan(&Flags::default(), Some(""), None).filter_from,
            "default"
        );
    }

    #[test]
    fn flag_over_env_over_config_over_default() {
        let cfg = file(LogLevel::Debug, LogFormat::Json, false);
        let p = plan(&Flags::default(), None, Some(&cfg));
        assert_eq!(
            (p.filter.as_str(), p.filter_from, p.format, p.stream),
            ("debug", "logging.level", Format::Json, Stream::Stdout)
        );
        let p = plan(&Flags::default(), Some("warn,litevault=trace"), Some(&cfg));
        assert_eq!(
            (p.filter.as_str(), p.filter_from),
            ("warn,litevault=trace", ENV)
        );
        assert_eq!(
            p.format,
            Format::Json,
            "LITEVAULT_LOG sets the events, not the format"
        );
        let flags = Flags {
            log_format: Some(Format::Text),
            log_level: Some(Level::Error),
        };
        let p = plan(&flags, Some("warn"), Some(&cfg));
        assert_eq!(
            (p.filter.as_str(), p.filter_from, p.format, p.stream),
            ("error", "--log-level", Format::Text, Stream::Stdout)
        );
    }

    #[test]
    fn a_bad_env_filter_is_reported_and_skipped() {
        let cfg = file(LogLevel::Warn, LogFormat::Text, true);
        let p = plan(&Flags::default(), Some("litevault=loud"), Some(&cfg));
        assert_eq!(
            (p.filter.as_str(), p.filter_from),
            ("warn", "logging.level")
        );
        let (value, _) = p.bad_env.unwrap();
        assert_eq!(value, "litevault=loud");
    }

    #[test]
    fn the_flags_parse_with_any_subcommand_position() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            log: Flags,
            #[command(subcommand)]
            cmd: Sub,
        }
        #[derive(clap::Subcommand)]
        enum Sub {
            Run,
        }
        let t = T::try_parse_from(["t", "run", "--log-format", "json", "--log-level", "WARNING"])
            .unwrap();
        assert!(matches!(t.cmd, Sub::Run));
        assert_eq!(
            (t.log.log_format, t.log.log_level),
            (Some(Format::Json), Some(Level::Warn))
        );
        assert!(T::try_parse_from(["t", "--log-format", "xml", "run"]).is_err());
    }
}
