//! How long to wait before trying again, for every loop of the source agent
//! that retries (the replication session, the cutter): from 100 ms,
//! doubling after each failure up to `--max-backoff`, with jitter so that
//! agents that failed together do not retry in step. A target that refused
//! the connection outright is tried again soon whatever the back-off has
//! grown to: a refused connect costs it nothing, and a target agent that
//! comes back after an outage should get its first batch at once, not up to
//! `--max-backoff` later.

use std::time::Duration;

use pgferry_runtime::recovery::Recovery;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// The first wait, and the one after progress.
const LEAST: Duration = Duration::from_millis(100);

/// The wait after a refused connection.
const AFTER_REFUSED: Duration = Duration::from_millis(200);

/// A back-off that honours `--max-backoff`.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// `--max-backoff`: the longest wait.
    most: Duration,
    /// The wait before jitter the next failure gets.
    next: Duration,
}

impl Backoff {
    /// A back-off whose waits never exceed `most`.
    pub fn new(most: Duration) -> Backoff {
        Backoff {
            most,
            next: LEAST.min(most),
        }
    }

    /// Back to the shortest wait (the last attempt made progress).
    pub fn reset(&mut self) {
        self.next = LEAST.min(self.most);
    }

    /// The wait before trying again after `err`, by what it needs
    /// ([`Error::recovery`]); `None`: stop. A failure that needs an operator
    /// is tried again at `--max-backoff`, so replication resumes on its own
    /// once the fix is in, without hammering what is broken meanwhile.
    pub fn after(&mut self, err: &Error) -> Option<Duration> {
        match err.recovery() {
            Recovery::Retry => Some(self.failed(err.is_connection_refused())),
            Recovery::Operator => Some(jitter(self.most)),
            Recovery::Stop => None,
        }
    }

    /// After a session of `what` (a loop with its own database session)
    /// failed with `err`: logs it and waits the back-off. `Ok(true)`: try
    /// again; `Ok(false)`: `cancel` came meanwhile; `Err`: an error that
    /// stops ([`Backoff::after`]).
    pub async fn pause(
        &mut self,
        what: &'static str,
        err: Error,
        cancel: &CancellationToken,
    ) -> Result<bool, Error> {
        let Some(wait) = self.after(&err) else {
            return Err(err);
        };
        tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying");
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Ok(false),
            _ = tokio::time::sleep(wait) => Ok(true),
        }
    }

    /// The wait before the next attempt, after a failure that passes;
    /// `refused` says the peer refused the connection outright.
    pub fn failed(&mut self, refused: bool) -> Duration {
        let base = if refused {
            AFTER_REFUSED.min(self.most)
        } else {
            let base = self.next;
            self.next = (self.next * 2).min(self.most);
            base
        };
        jitter(base)
    }
}

/// Half to all of `base`, so agents that failed together do not retry in
/// step.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_max_backoff_with_jitter_and_an_operator_is_waited_for_at_max_backoff() {
        let most = Duration::from_secs(1);
        let mut backoff = Backoff::new(most);
        let waits: Vec<Duration> = (0..8).map(|_| backoff.failed(false)).collect();
        for (wait, base) in waits
            .iter()
            .zip([100u64, 200, 400, 800, 1000, 1000, 1000, 1000])
        {
            let base = Duration::from_millis(base);
            assert!(*wait >= base / 2 && *wait <= base, "{wait:?} for {base:?}");
        }
        assert!(
            backoff.failed(true) <= AFTER_REFUSED,
            "a refused connect is retried soon"
        );
        backoff.reset();
        assert!(backoff.failed(false) <= LEAST);
        let diverged = Error::Diverged {
            target: 7,
            reason: "has cut only up to batch 5".into(),
        };
        let wait = backoff.after(&diverged).expect("retried slowly");
        assert!(wait >= most / 2 && wait <= most, "{wait:?}");
        assert_eq!(
            backoff.after(&Error::AlreadyRunning {
                target: "dc2".into()
            }),
            None,
            "a stop"
        );
        let mut tiny = Backoff::new(Duration::from_millis(10));
        assert!(tiny.failed(false) <= Duration::from_millis(10));
        assert!(tiny.failed(true) <= Duration::from_millis(10));
    }
}
