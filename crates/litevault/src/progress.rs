//! How long operations (a restore, an export to PostgreSQL, an import from
//! it) say how far they are. The library never draws anything: the caller
//! passes a [`Progress`], and the `litevault` command line passes one that
//! draws a bar when stderr is a terminal.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use litevault::progress::{Progress, ProgressSink, Unit};
//!
//! #[derive(Default)]
//! struct Count(AtomicU64);
//! impl Progress for Count {
//!     fn start(&self, _unit: Unit, _total: Option<u64>) {}
//!     fn message(&self, _what: &str) {}
//!     fn advance(&self, n: u64) {
//!         self.0.fetch_add(n, Ordering::Relaxed);
//!     }
//!     fn finish(&self) {}
//! }
//!
//! let count = Arc::new(Count::default());
//! let sink = ProgressSink::new(count.clone());
//! sink.advance(3);
//! assert_eq!(count.0.load(Ordering::Relaxed), 3);
//! ```

use std::fmt;
use std::sync::Arc;

/// What the counts of a [`Progress`] measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes fetched (a restore).
    Bytes,
    /// Rows copied (an export or an import).
    Rows,
}

/// Receives the progress of one operation. Calls may come from several
/// threads at once (an export loads tables in parallel).
pub trait Progress: Send + Sync {
    /// The operation begins; `total` is known for a restore (bytes to fetch)
    /// and an export (rows), not for an import.
    fn start(&self, unit: Unit, total: Option<u64>);
    /// What is being done now: `fetching`, `applying`, a table's name.
    fn message(&self, what: &str);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The operation ended, successfully or not.
    fn finish(&self);
}

/// An optional [`Progress`], cheap to clone into the options of an
/// operation. The default reports nowhere.
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Progress>>);

impl ProgressSink {
    /// Reports to `p`.
    pub fn new(p: Arc<dyn Progress>) -> ProgressSink {
        ProgressSink(Some(p))
    }

    /// Reports nowhere.
    pub fn none() -> ProgressSink {
        ProgressSink(None)
    }

    /// Whether anything listens: an operation skips work done only for the
    /// report (an export counts every table's rows first) when nothing does.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// See [`Progress::start`].
    pub fn start(&self, unit: Unit, total: Option<u64>) {
        if let Some(p) = &self.0 {
            p.start(unit, total);
        }
    }

    /// See [`Progress::message`].
    pub fn message(&self, what: &str) {
        if let Some(p) = &self.0 {
            p.message(what);
        }
    }

    /// See [`Progress::advance`].
    pub fn advance(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.advance(n);
        }
    }

    /// See [`Progress::finish`].
    pub fn finish(&self) {
        if let Some(p) = &self.0 {
            p.finish();
        }
    }

    /// Calls [`Progress::finish`] when the guard drops, however the
    /// operation ends.
    pub fn finish_on_drop(&self) -> FinishOnDrop<'_> {
        FinishOnDrop(self)
    }
}

/// Finishes a [`ProgressSink`] when dropped; see
/// [`ProgressSink::finish_on_drop`].
#[must_use = "the report finishes when this guard drops"]
pub struct FinishOnDrop<'a>(&'a ProgressSink);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_on() {
            "ProgressSink(on)"
        } else {
            "ProgressSink(none)"
        })
    }
}
