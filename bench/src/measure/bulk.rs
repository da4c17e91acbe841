//! Bulk statements: a 1M-row INSERT ... SELECT and an UPDATE of all its rows, each timed until a heartbeat written after it is on the target.

use crate::*;

impl Bench {
    /// Measure 4: Bulk: INSERT ... SELECT of 1M rows, then an UPDATE of all of
    /// them, each timed until a heartbeat written right after it is visible
    /// on the target: both systems apply in commit order, so the statement
    /// is applied by then. Checksums confirm it, untimed: polling checksums
    /// of a 1M-row table would take a core from the apply being timed.
    pub(crate) async fn bulk(&self, system: System) -> (f64, f64) {
        let (src, _) = self.sessions(system);
        let mut seconds = [0.0; 2];
        let statements = [
            "insert into bulk select generate_series(1, 1000000), 0",
            "update bulk set v = v + 1",
        ];
        for (time, sql) in seconds.iter_mut().zip(statements) {
            let marker: i32 = src
                .query_one("select coalesce(max(id), 0) + 1 from hb", &[])
                .await
                .expect("hb")
                .get(0);
            let started = Instant::now();
            src.batch_execute(sql).await.expect(sql);
            self.heartbeat(system, marker, Duration::from_secs(900))
                .await;
            *time = started.elapsed().as_secs_f64();
            self.wait_equal(system, "bulk", Duration::from_secs(900))
                .await;
        }
        (seconds[0], seconds[1])
    }
}
