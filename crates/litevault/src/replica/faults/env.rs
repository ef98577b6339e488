//! Faults from the environment (`LITEVAULT_FAULTS`): the stores it wraps,
//! and their counts reported when a command ends.

use super::*;

/// The counters of the stores opened with faults from [`FAULTS_ENV`] in this
/// process.
static FROM_ENV: Mutex<Vec<Arc<Counters>>> = Mutex::new(Vec::new());

/// Wraps `store` in a [`FaultStore`] when [`FAULTS_ENV`] is set, logging a
/// loud warning; registers its counters for [`ExitReport`]. Each store opened
/// so gets its own sequence: seed + the number of stores opened before.
pub(crate) fn wrap_from_env(
    store: Arc<dyn ObjectStore>,
    replica: &str,
) -> Result<Arc<dyn ObjectStore>, FaultConfigError> {
    let Some(mut config) = FaultConfig::from_env()? else {
        return Ok(store);
    };
    let mut registry = FROM_ENV.lock().unwrap_or_else(|e| e.into_inner());
    config.seed = config.seed.wrapping_add(registry.len() as u64);
    tracing::warn!(
        %replica,
        rate = config.rate,
        seed = config.seed,
        kinds = ?config.kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "FAULT INJECTION IS ON ({FAULTS_ENV} is set): requests to this replica fail on purpose. This is a test facility; never set {FAULTS_ENV} in production"
    );
    let faulty = FaultStore::new(store, config);
    registry.push(faulty.shared.counters.clone());
    Ok(Arc::new(faulty))
}

/// The summed counts of the stores opened with [`FAULTS_ENV`] in this
/// process, or `None` when there were none.
pub fn env_counts() -> Option<FaultCounts> {
    let registry = FROM_ENV.lock().unwrap_or_else(|e| e.into_inner());
    if registry.is_empty() {
        return None;
    }
    let mut sum = FaultCounts::default();
    for c in registry.iter() {
        sum.add(&c.snapshot());
    }
    Some(sum)
}

/// The exit line: `{"faults":{...}}`.
pub fn exit_line(counts: &FaultCounts) -> String {
    serde_json::json!({ "faults": counts }).to_string()
}

/// Prints the fault counts ([`env_counts`]) as one JSON line on stderr when
/// dropped, if any replica was opened with faults: hold one for the life of
/// a command.
#[derive(Debug, Default)]
pub struct ExitReport;

impl Drop for ExitReport {
    fn drop(&mut self) {
        if let Some(c) = env_counts() {
            eprintln!("{}", exit_line(&c));
        }
    }
}
