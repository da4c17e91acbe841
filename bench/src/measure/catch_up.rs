//! Catch-up: the consumer stopped, changes written in transactions of a hundred rows, then the time until the target holds them all.

use crate::*;

/// Row changes of the catch-up test.
pub(crate) const CATCH_UP_CHANGES: i64 = 200_000;

/// Rows per transaction in the catch-up test.
pub(crate) const TX_ROWS: i64 = 100;

impl Bench {
    /// Writes the catch-up workload to `drain`: inserts, updates and
    /// deletes, `TX_ROWS` rows per transaction, `changes` row changes in all.
    pub(crate) async fn write_changes(&self, system: System, changes: i64, tx_rows: i64) {
        let (src, _) = self.sessions(system);
        let start: i64 = src
            .query_one("select coalesce(max(id), 0)::bigint from drain", &[])
            .await
            .expect("max id")
            .get(0);
        let inserts = changes / 2;
        let updates = changes * 3 / 10;
        let deletes = changes - inserts - updates;
        let mut id = start;
        while id < start + inserts {
            src.batch_execute(&format!(
                "insert into drain select g, 0, md5(g::text) from generate_series({}, {}) g",
                id + 1,
                id + tx_rows
            ))
            .await
            .expect("insert");
            id += tx_rows;
        }
        let mut done = 0;
        while done < updates {
            let from = start + (done % inserts) + 1;
            src.batch_execute(&format!(
                "update drain set v = v + 1 where id between {from} and {}",
                from + tx_rows - 1
            ))
            .await
            .expect("update");
            done += tx_rows;
        }
        done = 0;
        while done < deletes {
            let from = start + done + 1;
            src.batch_execute(&format!(
                "delete from drain where id between {from} and {}",
                from + tx_rows - 1
            ))
            .await
            .expect("delete");
            done += tx_rows;
        }
    }

    /// Measure 2: Catch-up: consumer stopped, 200k changes written, then timed
    /// until the target's checksum equals the source's. Returns rows/s.
    pub(crate) async fn catch_up(&mut self, system: System) -> f64 {
        self.stop_consumer(system).await;
        self.write_changes(system, CATCH_UP_CHANGES, TX_ROWS).await;
        let started = Instant::now();
        self.start_consumer(system).await;
        self.wait_equal(system, "drain", Duration::from_secs(600))
            .await;
        CATCH_UP_CHANGES as f64 / started.elapsed().as_secs_f64()
    }
}
