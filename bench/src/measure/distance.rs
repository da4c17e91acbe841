//! Catch-up across a 50 ms link, plain and compressed, against loopback.

use crate::*;

/// Rounds of the distance measure (its figures are their medians).
pub(crate) const DISTANCE_ROUNDS: usize = 3;

impl Bench {
    /// Measure 6: Distance: the catch-up through a relay that delays each
    /// direction by 50 ms, and right before it the same catch-up on loopback,
    /// each into an emptied table as measure 2 starts with (the backlog
    /// measure leaves it large, and checksums of a large table would weigh
    /// more than the catch-up); then both again with `--compression zstd`.
    /// The four runs go round [`DISTANCE_ROUNDS`] times, interleaved: a
    /// single catch-up on loopback swings by a third from run to run here.
    /// Returns the median rows/s of each: [loopback, relay, loopback zstd,
    /// relay zstd].
    pub(crate) async fn distance(&mut self) -> [f64; 4] {
        let relay = relay(self.target_port, Duration::from_millis(50)).await;
        let mut rates = [[0.0; DISTANCE_ROUNDS]; 4];
        let runs = [
            (None, "none"),
            (Some(relay), "none"),
            (None, "zstd"),
            (Some(relay), "zstd"),
        ];
        for round in 0..DISTANCE_ROUNDS {
            for (rate, (via, compression)) in rates.iter_mut().zip(runs) {
                rate[round] = self.distance_run(via, compression).await;
            }
        }
        self.compression = "none";
        self.stop_pgferry().await;
        self.start_pgferry(None).await;
        rates.map(|mut rate| {
            rate.sort_by(f64::total_cmp);
            rate[DISTANCE_ROUNDS / 2]
        })
    }

    /// One catch-up of [`Bench::distance`], through `via` when set, with
    /// `compression`; returns rows/s.
    pub(crate) async fn distance_run(
        &mut self,
        via: Option<u16>,
        compression: &'static str,
    ) -> f64 {
        self.empty_drain().await;
        self.stop_pgferry().await;
        self.write_changes(System::Pgferry, CATCH_UP_CHANGES, TX_ROWS)
            .await;
        self.compression = compression;
        let started = Instant::now();
        self.start_pgferry(via).await;
        self.wait_equal(System::Pgferry, "drain", Duration::from_secs(600))
            .await;
        CATCH_UP_CHANGES as f64 / started.elapsed().as_secs_f64()
    }

    /// Empties the catch-up table on both sides (the agents running): a
    /// catch-up into a table left large would time its checksums too.
    pub(crate) async fn empty_drain(&mut self) {
        self.ferry_src
            .batch_execute("truncate drain")
            .await
            .expect("truncate");
        self.wait_equal(System::Pgferry, "drain", Duration::from_secs(120))
            .await;
    }
}
