//! The target agent's metrics.

/// Batches committed.
pub const BATCHES_APPLIED: &str = "pgferry_batches_applied_total";
/// Changes applied.
pub const CHANGES_APPLIED: &str = "pgferry_changes_applied_total";
/// Rows never applied because a later change of the same row in the same
/// batch overwrote them.
pub const CHANGES_COMPACTED: &str = "pgferry_changes_compacted_total";
/// Batches a reconnecting source sent again that were applied before
/// (skipped, not applied twice).
pub const BATCHES_SKIPPED: &str = "pgferry_batches_skipped_total";
/// Newest batch committed.
pub const APPLIED_BATCH: &str = "pgferry_applied_batch";
/// Newest batch known to be on disk (reported durable to the source).
pub const DURABLE_BATCH: &str = "pgferry_durable_batch";
/// Streams that ended in an error (the batch was rolled back).
pub const APPLY_ERRORS: &str = "pgferry_apply_errors_total";
/// Histogram: seconds from a batch's first message to its commit.
pub const BATCH_APPLY_SECONDS: &str = "pgferry_batch_apply_seconds";
/// Histogram: changes per batch applied.
pub const BATCH_CHANGES: &str = "pgferry_batch_changes";
/// Histogram: seconds from a batch's cut on the source (its changes had
/// all committed there by then) to its commit here; the two hosts' clocks
/// must agree.
pub const BATCH_DELAY_SECONDS: &str = "pgferry_batch_delay_seconds";

/// Peers refused before anything was applied, by reason: `token`,
/// `tls` (the TLS handshake failed), `certificate` (a replication stream
/// without a client certificate, with one --tls-client-ca did not sign, or
/// one that names no source id) or `source_id` (the hello's source
/// id is not one the certificate names).
pub const REFUSED_PEERS: &str = "pgferry_refused_peers_total";

/// Why a peer may be refused (see [`REFUSED_PEERS`]).
pub const REFUSED_REASONS: [&str; 4] = ["token", "tls", "certificate", "source_id"];

/// Help texts for every metric, shown on /metrics, and every counter
/// exported from 0, so that an alert on its increase sees the first one.
pub fn describe() {
    for counter in [
        BATCHES_APPLIED,
        CHANGES_APPLIED,
        CHANGES_COMPACTED,
        BATCHES_SKIPPED,
        APPLY_ERRORS,
    ] {
        metrics::counter!(counter).increment(0);
    }
    for reason in REFUSED_REASONS {
        metrics::counter!(REFUSED_PEERS, "reason" => reason).increment(0);
    }
    metrics::describe_counter!(BATCHES_APPLIED, "Batches committed.");
    metrics::describe_counter!(CHANGES_APPLIED, "Row changes applied.");
    metrics::describe_counter!(
        CHANGES_COMPACTED,
        "Row changes not applied: a later change of the same row in the batch overwrote them."
    );
    metrics::describe_counter!(
        BATCHES_SKIPPED,
        "Batches a reconnecting source sent again that were applied before (skipped)."
    );
    metrics::describe_gauge!(APPLIED_BATCH, "Newest batch committed.");
    metrics::describe_gauge!(
        DURABLE_BATCH,
        "Newest batch on disk, reported durable to the source."
    );
    metrics::describe_counter!(
        APPLY_ERRORS,
        "Streams that ended in an error (the open batch rolled back)."
    );
    metrics::describe_counter!(
        REFUSED_PEERS,
        "Peers refused before anything was applied, by reason."
    );
    metrics::describe_histogram!(
        BATCH_APPLY_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from a batch's first message to its commit."
    );
    metrics::describe_histogram!(
        BATCH_CHANGES,
        metrics::Unit::Count,
        "Row changes per batch applied."
    );
    metrics::describe_histogram!(
        BATCH_DELAY_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from a batch's cut on the source to its commit here (the hosts' clocks must agree)."
    );
}

/// A batch committed: it took `took` from its first message, held
/// `changes` row changes, and was cut on the source at `cut_at`.
pub fn batch_applied(
    batch_id: u64,
    took: std::time::Duration,
    changes: u64,
    cut_at: Option<std::time::SystemTime>,
) {
    metrics::counter!(BATCHES_APPLIED).increment(1);
    metrics::gauge!(APPLIED_BATCH).set(batch_id as f64);
    metrics::histogram!(BATCH_APPLY_SECONDS).record(took.as_secs_f64());
    metrics::histogram!(BATCH_CHANGES).record(changes as f64);
    if let Some(delay) = cut_at.and_then(|at| std::time::SystemTime::now().duration_since(at).ok())
    {
        metrics::histogram!(BATCH_DELAY_SECONDS).record(delay.as_secs_f64());
    }
}

/// A batch applied before came again and was skipped.
pub fn batch_skipped() {
    metrics::counter!(BATCHES_SKIPPED).increment(1);
}

/// Every batch up to `batch_id` is on disk.
pub fn batch_durable(batch_id: u64) {
    metrics::gauge!(DURABLE_BATCH).set(batch_id as f64);
}

/// Changes went in (their batch may still roll back).
pub fn changes_applied(count: usize) {
    metrics::counter!(CHANGES_APPLIED).increment(count as u64);
}

/// Rows dropped as overwritten later in their batch.
pub fn changes_compacted(count: usize) {
    if count > 0 {
        metrics::counter!(CHANGES_COMPACTED).increment(count as u64);
    }
}

/// A stream ended in an error.
pub fn apply_failed() {
    metrics::counter!(APPLY_ERRORS).increment(1);
}

/// A peer was refused for `reason` (see [`REFUSED_PEERS`]).
pub fn peer_refused(reason: &'static str) {
    metrics::counter!(REFUSED_PEERS, "reason" => reason).increment(1);
}
