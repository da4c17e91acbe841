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

/// Peers refused before anything was applied, by reason: `token`,
/// `tls` (the TLS handshake failed), `certificate` (a replication stream
/// without a client certificate, with one --tls-client-ca did not sign, or
/// one that names no source id) or `source_id` (the hello's source
/// id is not one the certificate names).
pub const REFUSED_PEERS: &str = "pgferry_refused_peers_total";

/// A batch committed.
pub fn batch_applied(batch_id: u64) {
    metrics::counter!(BATCHES_APPLIED).increment(1);
    metrics::gauge!(APPLIED_BATCH).set(batch_id as f64);
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
