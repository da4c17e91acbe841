//! The source agent's metrics, each labelled with the target it is about.

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
/// The target's tables whose copy there misses changes (their capture was
/// found switched off, or they were set aside) until copied again.
pub const TABLES_DIVERGED: &str = "pgferry_tables_diverged";

/// Rows that differed on the target at a table's last `verify` (after the
/// repair, for `repair`), per target and table.
pub const VERIFY_DIFFERENCES: &str = "pgferry_verify_differences";

/// Help texts for every metric, shown on /metrics.
pub fn describe() {
    metrics::describe_counter!(BATCHES_SENT, "Batches sent whole to the target.");
    metrics::describe_counter!(CHANGES_SENT, "Row changes sent to the target.");
    metrics::describe_gauge!(APPLIED_BATCH, "Newest batch the target reported applied.");
    metrics::describe_gauge!(
        ACKED_BATCH,
        "Newest batch the target reported on disk (acknowledged: deleted here)."
    );
    metrics::describe_gauge!(
        DELAY,
        metrics::Unit::Seconds,
        "Seconds since the oldest batch the target has not acknowledged was cut (0: none waits)."
    );
    metrics::describe_gauge!(
        BATCHES_UNACKED,
        "Batches cut and not yet acknowledged by the target."
    );
    metrics::describe_counter!(
        SESSION_ERRORS,
        "Sessions with the target that ended in an error."
    );
    metrics::describe_gauge!(
        TABLES_DIVERGED,
        "Tables whose copy on the target misses changes (capture found switched off, or set aside) until add-table copies them again."
    );
    metrics::describe_gauge!(
        VERIFY_DIFFERENCES,
        "Rows that differed on the target at the table's last verify (left after repair)."
    );
}

/// A pipeline to `target` started: its counters are exported from 0, so
/// that an alert on their increase sees the first one.
pub fn target_started(target: &str) {
    for counter in [BATCHES_SENT, CHANGES_SENT, SESSION_ERRORS] {
        metrics::counter!(counter, "target" => target.to_owned()).increment(0);
    }
}

/// A batch went out whole.
pub fn batch_sent(target: &str, changes: u64) {
    metrics::counter!(BATCHES_SENT, "target" => target.to_owned()).increment(1);
    metrics::counter!(CHANGES_SENT, "target" => target.to_owned()).increment(changes);
}

/// The target applied `batch_id`.
pub fn batch_applied(target: &str, batch_id: u64) {
    metrics::gauge!(APPLIED_BATCH, "target" => target.to_owned()).set(batch_id as f64);
}

/// The target has `batch_id` and every batch before it on disk.
pub fn batch_acked(target: &str, batch_id: u64) {
    metrics::gauge!(ACKED_BATCH, "target" => target.to_owned()).set(batch_id as f64);
}

/// A session ended in an error.
pub fn session_failed(target: &str) {
    metrics::counter!(SESSION_ERRORS, "target" => target.to_owned()).increment(1);
}

/// The delay and divergence as last read (see [`DELAY`], [`TABLES_DIVERGED`]).
pub fn delay(target: &str, seconds: f64, unacked: i64, diverged: i64) {
    metrics::gauge!(DELAY, "target" => target.to_owned()).set(seconds);
    metrics::gauge!(BATCHES_UNACKED, "target" => target.to_owned()).set(unacked as f64);
    metrics::gauge!(TABLES_DIVERGED, "target" => target.to_owned()).set(diverged as f64);
}

/// A table's last verify on `target` found `differences` rows differing.
pub fn verified(target: &str, table: &str, differences: i64) {
    metrics::gauge!(VERIFY_DIFFERENCES, "target" => target.to_owned(), "table" => table.to_owned())
        .set(differences as f64);
}
