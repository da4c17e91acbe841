//! Lag: a heartbeat row timed from its INSERT on the source until visible on the target, under pgbench at 500 TPS; on loopback and through a relay that delays each way.

use crate::*;

/// How long a heartbeat is looked for without pauses (then every
/// millisecond: a bulk statement's heartbeat waits seconds, and looking
/// without pause would take a core from the apply being timed).
pub(crate) const LOOK_CLOSELY: Duration = Duration::from_millis(50);

/// What the relay of the far lag measure adds each way (a 50 ms round trip).
pub(crate) const FAR_DELAY: Duration = Duration::from_millis(25);

impl Bench {
    /// Measure 3: Lag: pgbench at 500 TPS for 30 s while a heartbeat row is written
    /// every 200 ms and looked for on the target. Returns (p50, p99, max) ms.
    pub(crate) async fn lag(&self, system: System) -> (f64, f64, f64) {
        let (src, _) = self.sessions(system);
        let load = self.paced_pgbench(system, script("t_rep"), 30);
        let base: i32 = src
            .query_one("select coalesce(max(id), 0) from hb", &[])
            .await
            .expect("hb")
            .get(0);
        let mut lags = Vec::new();
        let started = Instant::now();
        let mut n = base;
        while started.elapsed() < Duration::from_secs(29) {
            n += 1;
            let tick = Instant::now();
            self.heartbeat(system, n, Duration::from_secs(30)).await;
            lags.push(tick.elapsed().as_secs_f64() * 1000.0);
            let next = tick + Duration::from_millis(200);
            tokio::time::sleep_until(next.into()).await;
        }
        load.join().expect("pgbench thread");
        lags.sort_by(f64::total_cmp);
        let pick = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
        (pick(0.5), pick(0.99), *lags.last().expect("samples"))
    }

    /// Measure: lag as in [`Bench::lag`], through a relay adding
    /// [`FAR_DELAY`] each way where each system crosses the network:
    /// between the agents for pgferry, between subscriber and publisher for
    /// native. Returns (p50, p99, max) in ms; not measured for Slony-I
    /// (its subscriber's path to the origin would go through the relay).
    pub(crate) async fn lag_far(&mut self, system: System) -> (f64, f64, f64) {
        if system == System::Slony {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        let connect = |port: u16| {
            format!(
                "alter subscription s connection 'host=127.0.0.1 port={port} user=postgres dbname=native'"
            )
        };
        match system {
            System::Pgferry => {
                let relay = relay(self.target_port, FAR_DELAY).await;
                self.stop_pgferry().await;
                self.start_pgferry(Some(relay)).await;
            }
            System::Native => {
                let relay = relay(self.source.port, FAR_DELAY).await;
                self.native_dst
                    .batch_execute(&connect(relay))
                    .await
                    .expect("subscription through the relay");
            }
            System::Slony => unreachable!("returned above"),
        }
        // Streaming through the relay before the clock runs.
        self.heartbeat(system, 8_000_000, Duration::from_secs(60))
            .await;
        let lags = self.lag(system).await;
        match system {
            System::Pgferry => {
                self.stop_pgferry().await;
                self.start_pgferry(None).await;
            }
            System::Native => self
                .native_dst
                .batch_execute(&connect(self.source.port))
                .await
                .expect("subscription direct"),
            System::Slony => unreachable!("returned above"),
        }
        lags
    }

    /// Writes heartbeat row `id` on the source and waits until it is
    /// visible on the target (or `timeout` passed). For the first
    /// [`LOOK_CLOSELY`] the looks follow each other without a pause: a 1 ms
    /// sleep wakes on tokio's next millisecond but one, so with the look
    /// itself lags came out in steps of about 3 ms (1.2, 4.2, 7.2 ms in
    /// the samples of a debug run), the size of what the measure compares.
    pub(crate) async fn heartbeat(&self, system: System, id: i32, timeout: Duration) {
        let (src, dst) = self.sessions(system);
        let look = dst
            .prepare("select exists (select from hb where id = $1)")
            .await
            .expect("prepare the look");
        let sent = Instant::now();
        src.execute("insert into hb values ($1, clock_timestamp())", &[&id])
            .await
            .expect("heartbeat");
        while sent.elapsed() < timeout {
            let seen: bool = dst.query_one(&look, &[&id]).await.expect("look").get(0);
            if seen {
                return;
            }
            if sent.elapsed() > LOOK_CLOSELY {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
