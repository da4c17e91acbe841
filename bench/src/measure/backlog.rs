//! The agents' peak memory draining a backlog, with the target agent's default windows and bounded ones.

use crate::*;

/// The target agent's settings the backlog is drained with: its defaults,
/// which buy catch-up speed with memory (a 32 MiB net-change window that
/// spans a 200k catch-up, a 16 MiB HTTP/2 window for a 100 ms round trip),
/// and windows small enough that a 200k backlog fills them too.
pub(crate) const BACKLOG_SETTINGS: [(&str, &[&str]); 2] = [
    ("default", &[]),
    (
        "bounded",
        &[
            "--compact-window-bytes",
            "16777216",
            "--receive-window-bytes",
            "4194304",
        ],
    ),
];

impl Bench {
    /// Measure 5: Backlog memory: `changes` queued with the agents stopped, drained
    /// by fresh agents. Returns (source, target) peak RSS in MiB and rows/s.
    pub(crate) async fn backlog(&mut self, changes: i64) -> (u64, u64, f64) {
        self.stop_pgferry().await;
        self.write_changes(System::Pgferry, changes, 10_000).await;
        let started = Instant::now();
        self.start_pgferry(None).await;
        self.wait_equal(System::Pgferry, "drain", Duration::from_secs(1800))
            .await;
        let rate = changes as f64 / started.elapsed().as_secs_f64();
        let (source, target) = self.stop_pgferry().await;
        self.start_pgferry(None).await;
        (source, target, rate)
    }
}
