//! One seed per run: the guard that prints it when a run fails, and the seeds a property
//! test runs over (`MESH_SIM_SEEDS`, `MESH_SIM_SEED`).

/// Environment variable: how many seeds a property test runs (its own default otherwise).
pub const SEEDS_ENV: &str = "MESH_SIM_SEEDS";
/// Environment variable: run only this seed (to replay a failure).
pub const SEED_ENV: &str = "MESH_SIM_SEED";

/// Prints the run's seed if the thread panics while the guard lives. [`crate::Sim`] holds
/// one; a test that loops over seeds can hold its own around each iteration, too.
#[derive(Debug)]
pub struct SeedGuard {
    seed: u64,
    what: String,
}

/// The environment variable that turns the nodes' logs on (see [`SeedGuard::new`]).
pub const LOG_ENV: &str = "MESH_SIM_LOG";

impl SeedGuard {
    /// A guard for `seed`; `what` names the run in the message.
    /// With `MESH_SIM_LOG` set (a `RUST_LOG`-style filter such as `mesh_core=debug`), the
    /// nodes' log lines go to stderr, in the order the virtual clock runs them.
    pub fn new(seed: u64, what: impl Into<String>) -> Self {
        if let Ok(filter) = std::env::var(LOG_ENV) {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .without_time()
                .with_writer(std::io::stderr)
                .try_init();
        }
        Self {
            seed,
            what: what.into(),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\nmesh-sim: {} failed with seed {seed}; replay it alone with {SEED_ENV}={seed}\n",
                self.what,
                seed = self.seed
            );
        }
    }
}

/// The seeds a property test runs: `MESH_SIM_SEED` alone if set, else `0..MESH_SIM_SEEDS`
/// (or `0..default` when that is unset or not a number).
pub fn seeds(default: u64) -> Vec<u64> {
    if let Some(one) = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var(SEEDS_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default);
    (0..n).collect()
}
