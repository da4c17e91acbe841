//! What a failure needs before the work can go on, decided once per error
//! type (each agent's `Error::recovery`) and acted on by every loop that
//! retries.

/// What a failure needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// It passes (a database, agent or network coming back, a deadlock):
    /// try again after a back-off.
    Retry,
    /// It stays until a person acts (a constraint a change violates, a
    /// missing grant or table, credentials, databases that diverged): shown
    /// in `status` as needing an operator, and tried again slowly, at
    /// `--max-backoff`, so it resumes on its own once fixed.
    Operator,
    /// The agent cannot go on (a bad setting, another agent holding the
    /// database): stop with the error.
    Stop,
}
