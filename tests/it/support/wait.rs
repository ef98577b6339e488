//! Waiting for something to happen without guessing how long it takes: poll
//! the state that shows it (a replica's TXID, a status file, an HTTP
//! answer, a log line, a listing, the clock) until it holds, with a generous
//! deadline and a failure message that says what never happened and what
//! was seen last. A fixed sleep either waits too long or, on a loaded
//! machine, not long enough; these waits end as soon as the state is there.
//!
//! [`wait_until`] (blocking) and [`wait_until_async`] (in a Tokio runtime)
//! take a probe that answers `bool`, `Option<T>` or `Result<T, E>`: `true`,
//! `Some` or `Ok` ends the wait and is returned; an `Err` is kept as the
//! last thing seen, for the message.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// The deadline for things that take well under a second on an idle
/// machine: generous, so that only a state that never comes fails a test.
pub const WAIT: Duration = Duration::from_secs(60);

/// What a probe answers: ready (with a value), or not yet (with what it
/// saw, when it can say).
pub trait Probe {
    /// What a ready probe gives back.
    type Value;
    /// `Ok` when ready; else what was seen, if anything.
    fn ready(self) -> Result<Self::Value, Option<String>>;
}

impl Probe for bool {
    type Value = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Probe for Result<T, E> {
    type Value = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// The bookkeeping both waits share: the deadline, the pause between
/// probes (growing from 1 ms to 100 ms, so quick states are seen quickly
/// and slow ones are not polled hard), and the last thing seen.
struct Waiter {
    what: String,
    within: Duration,
    start: Instant,
    pause: Duration,
    probes: u64,
    last: Option<String>,
}

impl Waiter {
    fn new(within: Duration, what: String) -> Waiter {
        Waiter {
            what,
            within,
            start: Instant::now(),
            pause: Duration::from_millis(1),
            probes: 0,
            last: None,
        }
    }

    /// Records a probe's answer; `Some` when done. Panics past the deadline.
    fn check<P: Probe>(&mut self, answer: P) -> Option<P::Value> {
        self.probes += 1;
        match answer.ready() {
            Ok(v) => return Some(v),
            Err(Some(seen)) => self.last = Some(seen),
            Err(None) => {}
        }
        if self.start.elapsed() >= self.within {
            panic!(
                "gave up after {:?} ({} checks) waiting for {}{}",
                self.within,
                self.probes,
                self.what,
                self.last
                    .as_deref()
                    .map(|l| format!("; last seen: {l}"))
                    .unwrap_or_default()
            );
        }
        None
    }

    /// The pause before the next probe.
    fn next_pause(&mut self) -> Duration {
        let p = self.pause;
        self.pause = (self.pause * 2).min(Duration::from_millis(100));
        p
    }
}

/// Probes until the probe is ready and returns its value; panics after
/// `within`, naming `what` and the last thing seen. Blocking: for tests
/// that run no runtime on this thread.
pub fn wait_until<P: Probe>(
    within: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> P,
) -> P::Value {
    let mut w = Waiter::new(within, what.to_string());
    loop {
        if let Some(v) = w.check(probe()) {
            return v;
        }
        // The one place a test sleeps while waiting: between two looks.
        std::thread::sleep(w.next_pause());
    }
}

/// [`wait_until`] for async probes, inside a Tokio runtime (the pause
/// between probes lets the runtime's other tasks run).
pub async fn wait_until_async<P: Probe, F: Future<Output = P>>(
    within: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> F,
) -> P::Value {
    let mut w = Waiter::new(within, what.to_string());
    loop {
        if let Some(v) = w.check(probe().await) {
            return v;
        }
        tokio::time::sleep(w.next_pause()).await;
    }
}

/// A restore target by time that falls between two writes: a whole-second
/// timestamp (what `--timestamp` takes) no earlier than now, so at or after
/// every file written so far, returned once the clock has passed it, so
/// every file written from then on is stamped later. Waits for the clock,
/// at most a second.
pub fn timestamp_between_writes() -> String {
    use chrono::{DurationRound, SecondsFormat, Utc};
    let now = Utc::now();
    let floor = now.duration_trunc(chrono::TimeDelta::seconds(1)).unwrap();
    let stamp = if floor == now {
        now
    } else {
        floor + chrono::TimeDelta::seconds(1)
    };
    // Files carry milliseconds: the next one must be at least 1 ms later.
    let after = stamp + chrono::TimeDelta::milliseconds(1);
    wait_until(WAIT, format_args!("the clock to pass {stamp}"), || {
        Utc::now() >= after
    });
    stamp.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_probe_returns_its_value() {
        let mut n = 0;
        let v = wait_until(WAIT, "the counter to reach 3", || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v, 3);
    }

    #[test]
    fn a_probe_that_never_holds_fails_naming_what_and_the_last_seen() {
        let e = std::panic::catch_unwind(|| {
            wait_until(Duration::from_millis(20), "the impossible", || {
                Err::<(), _>("still nothing")
            })
        })
        .unwrap_err();
        let msg = e.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("the impossible") && msg.contains("last seen: still nothing"),
            "{msg}"
        );
    }
}
