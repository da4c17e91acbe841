//! How a batch that failed on a constraint is applied when it comes again,
//! remembered per source across its streams.

use std::collections::HashMap;

/// How a batch that failed once on a constraint is applied when it comes
/// again. Net changes and set-based runs save work, but a constraint can
/// see their order: a unique value swapped through a temporary one, a
/// foreign key between tables, a key someone wrote behind the guard's back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The batch's plain inserts become upserts: one met a key already on
    /// the target, a row the source never wrote there.
    pub upserts: bool,
    /// Every change is applied by a statement of its own, in the source's
    /// order, none dropped as overwritten: the order the source's own
    /// constraints passed in.
    pub in_order: bool,
}

/// The batch, per source, to apply otherwise when it comes again (see
/// [`Retry`]), shared by a source's streams. Such a batch fails once
/// (rolled back whole) for each way it is retried.
#[derive(Debug, Default)]
pub struct Retries(std::sync::Mutex<HashMap<String, (u64, Retry)>>);

impl Retries {
    /// The way `batch_id` is applied now.
    pub(super) fn of(&self, source_id: &str, batch_id: u64) -> Retry {
        match self.lock().get(source_id) {
            Some(&(batch, retry)) if batch == batch_id => retry,
            _ => Retry::default(),
        }
    }

    pub(super) fn mark(&self, source_id: &str, batch_id: u64, retry: Retry) {
        self.lock().insert(source_id.to_string(), (batch_id, retry));
    }

    pub(super) fn clear(&self, source_id: &str) {
        self.lock().remove(source_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Retry)>> {
        // The map stays consistent whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
