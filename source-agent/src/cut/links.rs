//! What the cutter and the stream tell each other while both run: the
//! newest batch cut, the last batch the target applied and the last one it
//! has on disk, and how many changes the last batch sent carried.

use tokio::sync::watch;

use crate::ids::{BatchId, ChangeCount};

/// The cutter's ends.
pub struct CutterEnds {
    /// Where the cutter publishes the newest batch it cut.
    pub newest_cut: watch::Sender<BatchId>,
    /// The last batch the target applied (it may have let the next cut go).
    pub applied: watch::Receiver<BatchId>,
    /// The size of the last batch sent, which paces the next cut.
    pub last_sent: watch::Receiver<ChangeCount>,
}

/// The stream's ends.
pub struct StreamEnds {
    /// The newest batch cut, which the stream may send.
    pub newest_cut: watch::Receiver<BatchId>,
    /// Where the stream publishes the last batch the target applied.
    pub applied: watch::Sender<BatchId>,
    /// Where the stream publishes the last batch the target has on disk;
    /// the session loop starts its back-off over when it moves.
    pub durable: watch::Sender<BatchId>,
    /// Where the stream publishes the size of each batch it sends.
    pub last_sent: watch::Sender<ChangeCount>,
}

/// Both ends, starting from nothing cut, applied or sent.
pub fn links() -> (CutterEnds, StreamEnds) {
    let (newest_cut_tx, newest_cut_rx) = watch::channel(BatchId::default());
    let (applied_tx, applied_rx) = watch::channel(BatchId::default());
    let (last_sent_tx, last_sent_rx) = watch::channel(ChangeCount::default());
    let (durable, _) = watch::channel(BatchId::default());
    (
        CutterEnds {
            newest_cut: newest_cut_tx,
            applied: applied_rx,
            last_sent: last_sent_rx,
        },
        StreamEnds {
            newest_cut: newest_cut_rx,
            applied: applied_tx,
            durable,
            last_sent: last_sent_tx,
        },
    )
}
