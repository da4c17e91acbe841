//! The cutter's alarm: a wait until an instant, kept to a fraction of a
//! millisecond.
//!
//! tokio's timer counts whole milliseconds and wakes at the first
//! millisecond boundary after the deadline, so a look due 1 ms after the
//! last came 1 to 2 ms after it (1.54 ms at the median under the lag
//! measure, docs/benchmarks.md), and a change committed just after a look
//! waited that long for the next. A thread of its own waits on the
//! operating system's high-resolution timer instead and wakes the cutter.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The cutter's end of its alarm thread, which ends with it.
pub struct Alarm {
    deadlines: mpsc::Sender<std::time::Instant>,
    rang: Arc<Notify>,
}

impl Alarm {
    /// Starts the alarm's thread.
    pub fn new() -> io::Result<Alarm> {
        let (deadlines, asked) = mpsc::channel();
        let rang = Arc::new(Notify::new());
        let ring = Arc::clone(&rang);
        std::thread::Builder::new()
            .name("cutter-alarm".into())
            .spawn(move || ring_at(&asked, &ring))?;
        Ok(Alarm { deadlines, rang })
    }

    /// Waits until `deadline`, at once when it has passed. It may return a
    /// little early (a ring left over from a wait given up on): the cutter
    /// looks at the time again either way.
    pub async fn sleep_until(&mut self, deadline: Instant) {
        if deadline <= Instant::now() {
            return;
        }
        let rung = self.rang.notified();
        if self.deadlines.send(deadline.into_std()).is_err() {
            // The thread is gone (it never ends while the cutter lives):
            // tokio's own timer still keeps the cutter going.
            tokio::time::sleep_until(deadline).await;
            return;
        }
        rung.await;
    }
}

/// The alarm thread: rings at the newest deadline asked for, until the
/// cutter drops its end.
fn ring_at(asked: &mpsc::Receiver<std::time::Instant>, ring: &Notify) {
    let mut next = None;
    loop {
        let mut deadline = match next.take() {
            Some(deadline) => deadline,
            None => match asked.recv() {
                Ok(deadline) => deadline,
                Err(_) => return,
            },
        };
        while let Ok(newer) = asked.try_recv() {
            deadline = newer;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !left.is_zero() {
            match asked.recv_timeout(left) {
                Ok(newer) => {
                    next = Some(newer);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        ring.notify_one();
    }
}
