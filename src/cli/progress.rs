//! The progress bar the command line draws on stderr while a restore, an
//! export or an import runs: the library reports through
//! [`litevault::progress::Progress`], this draws it with indicatif.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use litevault::progress::{Progress, ProgressSink, Unit};

/// A bar on stderr when it is a terminal; otherwise nothing (logs and
/// pipes get no escape codes).
pub(crate) fn terminal() -> ProgressSink {
    if std::io::stderr().is_terminal() {
        ProgressSink::new(Arc::new(Bar(ProgressBar::hidden())))
    } else {
        ProgressSink::none()
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, unit: Unit, total: Option<u64>) {
        let template = match (unit, total) {
            (Unit::Bytes, _) => {
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})"
            }
            (Unit::Rows, Some(_)) => {
                "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} rows ({per_sec}, {eta})"
            }
            (Unit::Rows, None) => "{spinner} {msg} {human_pos} rows ({per_sec})",
        };
        let style =
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        self.0.set_style(style);
        self.0.set_length(total.unwrap_or(0));
        if total.is_none() {
            self.0.unset_length();
        }
        self.0.set_position(0);
        self.0
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }

    fn message(&self, what: &str) {
        self.0.set_message(what.to_string());
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
