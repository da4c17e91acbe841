//! Capture overhead: pgbench single-row updates from 4 clients in alternating 5 s slices on a replicated and an identical plain table (plain or partitioned).

use crate::*;

impl Bench {
    /// Capture overhead: pgbench single-row updates, 4 clients, uncapped,
    /// alternating 5 s slices on the replicated table and its unreplicated
    /// twin, 3 rounds. Returns (tps replicated, tps plain, overhead %).
    pub(crate) fn overhead(&self, system: System, replicated: &str, twin: &str) -> (f64, f64, f64) {
        let (mut rep, mut plain) = (0.0, 0.0);
        for _ in 0..3 {
            rep += self.pgbench(
                system,
                &script(replicated),
                &["-c", "4", "-j", "2", "-T", "5"],
            );
            plain += self.pgbench(system, &script(twin), &["-c", "4", "-j", "2", "-T", "5"]);
        }
        (rep / 3.0, plain / 3.0, (1.0 - rep / plain) * 100.0)
    }
}
