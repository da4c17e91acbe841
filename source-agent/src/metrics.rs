//! The source agent's metrics.

/// Batches fully sent to the target.
pub const BATCHES_SENT: &str = "pgferry_batches_sent_total";
/// Changes sent to the target.
pub const CHANGES_SENT: &str = "pgferry_changes_sent_total";
/// Newest batch the target has reported applied (visible there).
pub const APPLIED_BATCH: &str = "pgferry_applied_batch";
/// Newest batch the target has reported durable (acknowledged: deleted here).
pub const ACKED_BATCH: &str = "pgferry_acked_batch";
/// Seconds since the oldest batch the target has not acknowledged was cut
/// (0 when none waits): how far behind the target is.
pub const DELAY: &str = "pgferry_delay_seconds";
/// Batches cut and not yet acknowledged by the target.
pub const BATCHES_UNACKED: &str = "pgferry_batches_unacked";
/// Sessions with the target that ended in an error.
pub const SESSION_ERRORS: &str = "pgferry_session_errors_total";

/// A batch went out whole.
pub fn batch_sent(changes: u64) {
    metrics::counter!(BATCHES_SENT).increment(1);
    metrics::counter!(CHANGES_SENT).increment(changes);
}

/// The target applied `batch_id`.
pub fn batch_applied(batch_id: u64) {
    metrics::gauge!(APPLIED_BATCH).set(batch_id as f64);
}

/// The target has `batch_id` and every batch before it on disk.
pub fn batch_acked(batch_id: u64) {
    metrics::gauge!(ACKED_BATCH).set(batch_id as f64);
}

/// A session ended in an error.
pub fn session_failed() {
    metrics::counter!(SESSION_ERRORS).increment(1);
}

/// The delay as last read (see [`DELAY`]).
pub fn delay(seconds: f64, unacked: i64) {
    metrics::gauge!(DELAY).set(seconds);
    metrics::gauge!(BATCHES_UNACKED).set(unacked as f64);
}
