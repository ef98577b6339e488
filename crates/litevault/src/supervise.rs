//! Supervision: run the application as a child once the databases are open,
//! forward SIGINT and SIGTERM to it, and when it exits, finish replicating
//! (a final, time-bounded sync) and report its exit code.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use litevault::{Replica, Replicator, ReplicateOptions};
//! let rep = Replicator::open("app.db", Replica::open("file:///backups/app")?, ReplicateOptions::default()).await?;
//! let outcome = litevault::supervise::supervise(vec![rep], "exec my-app --port 8080").await?;
//! std::process::exit(outcome.exit_code);
//! # }
//! ```

use std::process::Stdio;

use tokio::sync::watch;

use crate::replicate::{ReplicateError, Replicator};

/// Errors of supervision.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// The command could not be started.
    #[error("cannot start `{command}`: {source}; check that the program exists and is executable")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("waiting for `{command}`: {source}")]
    Wait {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// How supervision ended.
#[derive(Debug)]
pub struct Outcome {
    /// The application's exit code (128 + signal number when a signal ended
    /// it, as shells report it).
    pub exit_code: i32,
    /// The final sync of each replicator, in the order given.
    pub replication: Vec<Result<(), ReplicateError>>,
}

/// Runs `command` with `sh -c` while the replicators run. Signals SIGINT
/// and SIGTERM received by this process are forwarded to the child; when
/// the child exits, every replicator does its final sync (bounded by its
/// shutdown timeout) and the child's exit code is returned.
pub async fn supervise(
    replicators: Vec<Replicator>,
    command: &str,
) -> Result<Outcome, SuperviseError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(SuperviseError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SuperviseError::Signals)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(replicators.len());
    for r in replicators {
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            r.run(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        }));
    }
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).stdin(Stdio::inherit());
    // The socket systemd passed is litevault's HTTP listener (it is
    // close-on-exec): the application must not take the variables for its own.
    #[cfg(feature = "server")]
    if crate::server::systemd::taken() {
        for v in crate::server::systemd::ENV_VARS {
            cmd.env_remove(v);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(source) => {
            let _ = stop_tx.send(true);
            for t in tasks {
                let _ = t.await;
            }
            return Err(SuperviseError::Spawn {
                command: command.into(),
                source,
            });
        }
    };
    let pid = child.id();
    tracing::info!(command, pid, "started the application");
    let forward = |sig: i32| {
        if let Some(pid) = pid {
            // SAFETY: kill(2) with a PID we spawned and a valid signal.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    };
    let status = loop {
        tokio::select! {
            _ = term.recv() => forward(libc::SIGTERM),
            _ = int.recv() => forward(libc::SIGINT),
            s = child.wait() => break s.map_err(|source| SuperviseError::Wait { command: command.into(), source })?,
        }
    };
    let exit_code = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    tracing::info!(exit_code, "the application exited; final sync");
    let _ = stop_tx.send(true);
    let mut replication = Vec::with_capacity(tasks.len());
    for t in tasks {
        replication.push(match t.await {
            Ok(r) => r,
            Err(e) => Err(ReplicateError::Internal(e.to_string())),
        });
    }
    Ok(Outcome {
        exit_code,
        replication,
    })
}
