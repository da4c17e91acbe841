//! Real parts for the end-to-end tests and the demo: PostgreSQL clusters on
//! temp dirs and free ports, the real agent binaries, and a two-cluster
//! replication set-up with the seed's tables.

pub mod agent;
pub mod certs;
pub mod cluster;
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
