//! Real parts for the end-to-end tests and the demo: PostgreSQL clusters on
//! temp dirs and free ports, the real agent binaries, and a two-cluster
//! replication set-up with the seed's tables.

pub mod agent;
pub mod certs;
pub mod cluster;
pub mod pair;
pub mod proxy;
pub mod setup;

pub use agent::{Agent, bin, run_command};
pub use cluster::PgCluster;
pub use setup::Replication;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rows a queue row (or batch change) named `alias` holds, as a set of
/// JSON objects `r` to join: a statement's array, or its one object.
pub fn queued_rows(alias: &str) -> String {
    format!(
        "json_array_elements(case when {alias}.statement_rows is null
                                  then json_build_array({alias}.new_row) else {alias}.new_row end) r"
    )
}

/// The seed of a randomized test and its generator: `PGFERRY_SEED` when set
/// (to replay a run), else one from the clock. Print the seed.
pub fn seeded() -> (u64, proptest::test_runner::TestRng) {
    let seed = std::env::var("PGFERRY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    (seed, rng(seed, 0))
}

/// The generator of `seed`'s stream number `stream`: the same numbers
/// whenever the seed is the same.
pub fn rng(seed: u64, stream: u64) -> proptest::test_runner::TestRng {
    use proptest::test_runner::{RngAlgorithm, TestRng};
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&stream.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}
