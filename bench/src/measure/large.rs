//! Large values: a row holding 5 MB updated 1,000 times in a small column, one statement each, replicated table against plain (three rounds, alternating): the writers' time, the WAL written and, for pgferry, the queue's bytes per update.

use crate::*;

/// The updates of one round of the large-value measure.
const LARGE_UPDATES: u32 = 1000;

/// Its rounds, the replicated and the plain table in turn: one round is
/// a third of a second, which a machine's swing would blur.
const LARGE_ROUNDS: u32 = 3;

/// What the large-value measure found.
pub(crate) struct Large {
    /// The writers' seconds (replicated, plain).
    pub(crate) seconds: (f64, f64),
    /// WAL bytes written per update (replicated, plain), the replication's
    /// own writes (queue, batches, acknowledgements) included.
    pub(crate) wal_per_update: (f64, f64),
    /// pgferry's queue bytes per update, the source agent stopped so that
    /// the queue holds them all; NaN for the others.
    pub(crate) queue_per_update: f64,
}

impl Bench {
    /// Measure: [`LARGE_UPDATES`] single-statement UPDATEs of the small
    /// column of a row whose other column holds 5 MB, from one pgbench
    /// client, on the replicated table, then on an identical plain one,
    /// [`LARGE_ROUNDS`] times; seconds and WAL per update over all rounds.
    pub(crate) async fn large(&mut self, system: System) -> Large {
        let count = LARGE_UPDATES.to_string();
        let mut seconds = [0.0; 2];
        let mut wal = [0.0; 2];
        let updates = f64::from(LARGE_UPDATES * LARGE_ROUNDS);
        for _ in 0..LARGE_ROUNDS {
            for (i, table) in ["big_rep", "big_plain"].into_iter().enumerate() {
                let script = format!("update {table} set n = n + 1 where id = 1;\n");
                let before = self.wal_lsn(system).await;
                let tps = self.pgbench(system, &script, &["-c", "1", "-t", &count]);
                seconds[i] += f64::from(LARGE_UPDATES) / tps;
                self.wait_equal(system, "big_rep", Duration::from_secs(300))
                    .await;
                wal[i] += self.wal_since(system, &before).await / updates;
            }
        }
        let mut queue_per_update = f64::NAN;
        if system == System::Pgferry {
            self.stop_pgferry().await;
            let script = "update big_rep set n = n + 1 where id = 1;\n";
            self.pgbench(system, script, &["-c", "1", "-t", &count]);
            let bytes: i64 = self
                .ferry_src
                .query_one(
                    "select coalesce(sum(pg_column_size(q.*)), 0)::bigint from pgferry.queue q",
                    &[],
                )
                .await
                .expect("queue bytes")
                .get(0);
            queue_per_update = bytes as f64 / f64::from(LARGE_UPDATES);
            self.start_pgferry(None).await;
            self.wait_equal(system, "big_rep", Duration::from_secs(300))
                .await;
        }
        Large {
            seconds: (seconds[0], seconds[1]),
            wal_per_update: (wal[0], wal[1]),
            queue_per_update,
        }
    }

    async fn wal_lsn(&self, system: System) -> String {
        let (src, _) = self.sessions(system);
        src.query_one("select pg_current_wal_lsn()::text", &[])
            .await
            .expect("wal position")
            .get(0)
    }

    async fn wal_since(&self, system: System, before: &str) -> f64 {
        let (src, _) = self.sessions(system);
        src.query_one(
            "select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
            &[&before],
        )
        .await
        .expect("wal written")
        .get(0)
    }
}
