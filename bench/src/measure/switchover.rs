//! Switchover: how long an application's writes are unavailable while the
//! source role moves to the target, and how long the switchover takes.

use support::pair::{App, Pair};

use crate::*;

/// The application's pace: a transaction every 2 ms (500 TPS).
const EVERY: Duration = Duration::from_millis(2);

/// One switchover's figures.
pub(crate) struct Switched {
    /// From the first write refused to the next write accepted, on either
    /// side, in ms.
    pub(crate) unavailable_ms: f64,
    /// The longest one write waited (for the fence's locks), in ms.
    pub(crate) longest_write_ms: f64,
    /// The command's whole switchover (fence to final batch on the new
    /// source's disk), in ms, as it reports it.
    pub(crate) took_ms: f64,
}

/// Measure: three switchovers (a to b, back, and again) of two durable
/// clusters of their own, each with pgferry's source and target schemas,
/// while an application writes at 500 TPS through whichever side accepts
/// (a ledger row, an event from a sequence and an account's balance per
/// transaction); the agents are moved as `switchover` prints.
pub(crate) async fn switchover() -> Vec<Switched> {
    let mut pair = Pair::with_settings("fsync = on\nsynchronous_commit = on\n").await;
    pair.sides[1].start_target_agent().await;
    pair.sides[0].start_source_agent().await;
    pair.wait_equal(Duration::from_secs(120)).await;
    let mut runs = Vec::new();
    for (round, from) in [0, 1, 0].into_iter().enumerate() {
        let app = App::start_paced(
            [
                pair.sides[0].source_db.clone(),
                pair.sides[1].source_db.clone(),
            ],
            from,
            EVERY,
            round as i64 * 1_000_000,
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let out = pair.hand_over(from).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let written = app.stop().await;
        assert!(
            written.committed.iter().any(|(_, side)| *side != from),
            "round {round}: no write went to the new source"
        );
        let took_ms = out
            .split("whole switchover ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(f64::NAN);
        runs.push(Switched {
            unavailable_ms: written.longest_gap.as_secs_f64() * 1000.0,
            longest_write_ms: written.longest_write.as_secs_f64() * 1000.0,
            took_ms,
        });
        pair.wait_equal(Duration::from_secs(120)).await;
    }
    runs
}
