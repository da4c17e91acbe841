//! pgferry's change queue after each load: size, live and dead rows once acknowledged and vacuumed; and the soak watch of it.

use crate::*;

/// How long the queue is watched under load (`PGFERRY_BENCH_ONLY=soak`).
pub(crate) const SOAK_SECONDS: u32 = 300;

/// How often the queue is looked at meanwhile.
pub(crate) const SOAK_SAMPLE_EVERY: Duration = Duration::from_secs(10);

impl Bench {
    /// After one of pgferry's measures, records [`Bench::queue_state`] under
    /// `key` (native has no queue).
    pub(crate) async fn record_queue(
        &self,
        system: System,
        queue: &mut Map<String, Value>,
        key: &str,
    ) {
        if system == System::Pgferry {
            queue.insert(key.into(), self.queue_state().await);
        }
    }

    /// The queue on pgferry's source once a measure's changes are all
    /// acknowledged (and deleted), plus the agent's vacuum interval: its
    /// size on disk and the dead rows left. DELETE and vacuum keep the
    /// space for reuse, so the size is the high-water mark so far.
    pub(crate) async fn queue_state(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left: i64 = self
                .ferry_src
                .query_one("select count(*) from pgferry.queue", &[])
                .await
                .expect("queue rows")
                .get(0);
            if left == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        self.queue_now().await
    }

    /// pgferry's queue on the source now: its size on disk, live rows and
    /// the dead rows the statistics count.
    pub(crate) async fn queue_now(&self) -> Value {
        let row = self
            .ferry_src
            .query_one(
                "select pg_total_relation_size('pgferry.queue') / 1048576.0::float8,
                        (select count(*) from pgferry.queue),
                        coalesce((select n_dead_tup from pg_stat_user_tables
                                  where relid = 'pgferry.queue'::regclass), 0)",
                &[],
            )
            .await
            .expect("queue state");
        let (size, live, dead): (f64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        json!({"size_mib": size, "live": live, "dead": dead})
    }

    /// The queue over a long run (issue 4's queue cleanup lever): pgbench
    /// at 500 TPS on the replicated table for [`SOAK_SECONDS`], the queue's
    /// size on disk and its live and dead rows read every
    /// [`SOAK_SAMPLE_EVERY`], then [`Bench::queue_state`] once all is acked.
    pub(crate) async fn soak(&self) -> Value {
        let load = self.paced_pgbench(System::Pgferry, script("t_rep"), SOAK_SECONDS);
        let started = Instant::now();
        let mut samples = Vec::new();
        while started.elapsed() < Duration::from_secs(SOAK_SECONDS.into()) {
            tokio::time::sleep(SOAK_SAMPLE_EVERY).await;
            let mut sample = self.queue_now().await;
            sample["s"] = started.elapsed().as_secs().into();
            samples.push(sample);
        }
        load.join().expect("pgbench thread");
        json!({"samples": samples, "after": self.queue_state().await})
    }
}
