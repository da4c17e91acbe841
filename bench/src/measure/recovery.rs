//! How soon a target agent back from an outage receives a row written meanwhile.

use crate::*;

/// How long the target agent is down in the recovery measure: past the
/// source agent's --max-backoff (5 s), so its reconnect back-off is grown.
pub(crate) const RECOVERY_OUTAGE: Duration = Duration::from_secs(7);

impl Bench {
    /// Measure: recovery after a target outage. The target agent stops for
    /// longer than the source agent's reconnect back-off can grow
    /// (`--max-backoff`, 5 s), a row is written meanwhile, and the target
    /// agent starts again: milliseconds from its start until that row is on
    /// the target, for each of three outages.
    pub(crate) async fn recovery(&mut self) -> Vec<f64> {
        let mut times = Vec::new();
        for outage in 0..3 {
            let mut target = self.target_agent.take().expect("target agent running");
            target.terminate(Duration::from_secs(30)).await;
            tokio::time::sleep(RECOVERY_OUTAGE).await;
            let id = 9_000_000 + outage;
            self.ferry_src
                .execute("insert into hb values ($1, clock_timestamp())", &[&id])
                .await
                .expect("row written during the outage");
            let look = self
                .ferry_dst
                .prepare("select exists (select from hb where id = $1)")
                .await
                .expect("prepare the look");
            let started = Instant::now();
            target.restart();
            loop {
                let seen: bool = self
                    .ferry_dst
                    .query_one(&look, &[&id])
                    .await
                    .expect("look")
                    .get(0);
                if seen {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "row never arrived"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            self.target_agent = Some(target);
        }
        times
    }
}
