//! The target agent's one error type, and the one place that turns it into a
//! gRPC status for the source agent.

use pgferry_runtime::recovery::Recovery;
use tonic::{Code, Status};

/// Everything that can go wrong on the target side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or invalid.
    #[error(transparent)]
    Config(#[from] pgferry_runtime::config::ConfigError),
    /// The CONNINFO does not parse.
    #[error(transparent)]
    Conninfo(#[from] pgferry_runtime::db::BadConninfo),
    /// The target database did not accept the connection.
    #[error("cannot connect to the target database: {}", pgferry_runtime::db::describe(.0))]
    Connect(#[source] tokio_postgres::Error),
    /// A statement failed on the target database.
    #[error("target database, {context}: {}", pgferry_runtime::db::describe(.source))]
    Db {
        /// What the agent was doing.
        context: &'static str,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// `install` has not been run on the target database.
    #[error("pgferry is not installed in the target database: run `target-agent install` first")]
    NotInstalled,
    /// `install` failed; nothing was changed.
    #[error("install: {0}")]
    Install(#[from] pgferry_runtime::install::InstallError),
    /// The source speaks another protocol version.
    #[error(
        "source speaks protocol version {got}; this target-agent speaks {speaks}: run matching versions"
    )]
    ProtocolVersion {
        /// The source's version.
        got: u32,
        /// Ours.
        speaks: u32,
    },
    /// The peer did not present the token set by --auth-token-file.
    #[error("missing or wrong token: give the source agent the target's --auth-token-file")]
    Unauthenticated,
    /// The peer's client certificate does not allow what it asked for.
    #[error("client certificate: {0}")]
    Certificate(String),
    /// The source broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A table the source replicates is missing on the target.
    #[error("target table {table} (replicating source table {source_table}) does not exist")]
    UnknownTable {
        /// The target table.
        table: String,
        /// The source table.
        source_table: String,
    },
    /// `--create-target` could not create the table.
    #[error("could not create target table {table}: {}", pgferry_runtime::db::describe(.source))]
    Create {
        /// The target table.
        table: String,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A sequence the source replicates is missing on the target.
    #[error(
        "target sequence {sequence} (replicating source sequence {source_sequence}) does not exist"
    )]
    UnknownSequence {
        /// The target sequence.
        sequence: String,
        /// The source sequence.
        source_sequence: String,
    },
    /// The target table's columns do not match the source's.
    #[error("target table {table} does not match source table {source_table}: {mismatch}")]
    ColumnMismatch {
        /// The target table.
        table: String,
        /// The source table.
        source_table: String,
        /// Which columns differ and how.
        mismatch: String,
    },
    /// The target table has no unique index on the source's key.
    #[error(
        "target table {table} has no unique index on ({columns}), the key of source table {source_table}"
    )]
    NoUniqueKey {
        /// The target table.
        table: String,
        /// The source table.
        source_table: String,
        /// The key columns.
        columns: String,
    },
    /// Row-level security applies to the applier on the target table: its
    /// policies could hide rows from its updates and deletes, which would
    /// then change nothing, silently.
    #[error(
        "target table {table} has row-level security that applies to the applier (policies: {policies}): rows it hides would silently escape updates and deletes; ALTER TABLE ... NO FORCE ROW LEVEL SECURITY, or give the applier role BYPASSRLS"
    )]
    RowSecurity {
        /// The target table.
        table: String,
        /// The table's policies.
        policies: String,
    },
    /// A source below the epoch recorded for it: this database took over
    /// from it in a switchover (or it was restored from before one).
    #[error(
        "source {source_id} is at epoch {source_epoch}, and this target recorded epoch {recorded} for it: this database took the source role from it in a switchover at batch {last_batch} (or the source was restored from before one); refusing it for good: make that database this one's target"
    )]
    EpochBehind {
        /// The source.
        source_id: String,
        /// Its epoch.
        source_epoch: u64,
        /// The epoch recorded here.
        recorded: u64,
        /// The last batch applied from it.
        last_batch: u64,
        /// That batch's cut.
        last_cut: String,
    },
    /// A batch after a switchover's final batch on the same stream.
    #[error(
        "source {source_id}: batch {batch_id} after the switchover's final batch; this database is the source now"
    )]
    AfterSwitchover {
        /// The source.
        source_id: String,
        /// The batch received.
        batch_id: u64,
    },
    /// A take-over (switchover, promote) where pgferry's source schema is
    /// missing.
    #[error(
        "this database has no pgferry source schema (or an older one) to take the source role with: run `source-agent install` on it"
    )]
    NoSourceSchema,
    /// `promote` cannot be done: nothing was changed.
    #[error("promote refused, nothing changed: {0}")]
    Promote(String),
    /// A batch out of sequence.
    #[error("source {source_id}: got batch {got}, expected batch {expected}")]
    OutOfSequence {
        /// The source.
        source_id: String,
        /// The batch received.
        got: u64,
        /// The batch expected.
        expected: u64,
    },
    /// A change failed to apply; the whole batch is rolled back.
    #[error("batch {batch_id}, table {table}: {}", pgferry_runtime::db::describe_with_key(.source))]
    Apply {
        /// The batch.
        batch_id: u64,
        /// The target table (with the key of a change applied alone).
        table: String,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A constraint failed on the batch as applied (see
    /// [`crate::apply::Retry`]): rolled back; the resent batch is applied
    /// otherwise.
    #[error(
        "batch {batch_id}, table {table}: {}; the batch is retried {}: {}",
        if *.in_order { "a constraint failed on the batch's net changes" } else { "an inserted key is already on the target (a row not written by pgferry)" },
        if *.in_order { "change by change in the source's order" } else { "with upserts" },
        pgferry_runtime::db::describe(.source)
    )]
    ConstraintRetry {
        /// The batch.
        batch_id: u64,
        /// The target table.
        table: String,
        /// Whether it is retried in the source's order (else with upserts).
        in_order: bool,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A change breaks the wire contract.
    #[error("batch {batch_id}: {source}")]
    Wire {
        /// The batch.
        batch_id: u64,
        /// What is wrong with the change.
        #[source]
        source: pgferry_proto::change::WireError,
    },
    /// A schema change that failed on the target: the batch is rolled back
    /// and retried, so it applies once its cause is gone.
    #[error(
        "batch {batch_id}, table {table}: schema change {seq} ({command}) failed on the target: {}; remove the cause (it is retried), or make the change on the target by hand and run `source-agent ddl-done --target NAME {seq}`",
        with_detail(.source)
    )]
    SchemaChange {
        /// The batch.
        batch_id: u64,
        /// The schema change's queue seq, its id.
        seq: u64,
        /// The target table.
        table: String,
        /// The command the source ran.
        command: String,
        /// The target's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A schema change that waits for the operator (`--ddl pause`).
    #[error(
        "batch {batch_id}, table {table}: schema change {seq} waits for the operator (the target takes schema changes with --ddl pause): make it on the target ({command}), then run `source-agent ddl-done --target NAME {seq}`"
    )]
    SchemaPaused {
        /// The batch.
        batch_id: u64,
        /// The schema change's queue seq, its id.
        seq: u64,
        /// The target table.
        table: String,
        /// The command the source ran.
        command: String,
    },
    /// A schema change that is not what the source sends.
    #[error("batch {batch_id}: schema change {seq} is malformed: {problem}")]
    BadSchemaChange {
        /// The batch.
        batch_id: u64,
        /// The change's seq.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
    /// A batch waited too long for its next chunk and was rolled back.
    #[error("batch {batch_id}: no chunk came for {waited:?} (--batch-idle-timeout); rolled back")]
    BatchIdle {
        /// The batch.
        batch_id: u64,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// A change's key cannot find its row.
    #[error("batch {batch_id}: change {seq} for table {table}: {problem}")]
    BadKey {
        /// The batch.
        batch_id: u64,
        /// The change.
        seq: u64,
        /// The target table.
        table: String,
        /// What is wrong (which column; never the values).
        problem: String,
    },
    /// A change for a table the hello did not announce.
    #[error(
        "batch {batch_id}: change {seq} is for table id {table_id}, which the source did not announce"
    )]
    UnknownTableId {
        /// The batch.
        batch_id: u64,
        /// The change.
        seq: u64,
        /// The unknown id.
        table_id: u32,
    },
    /// A local I/O failure (listening socket, signals).
    #[error("{context}: {source}")]
    Io {
        /// What the agent was doing.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a database error with what the agent was doing.
    pub fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |source| Error::Db { context, source }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let code = match &err {
            Error::Connect(_) => Code::Unavailable,
            Error::Db { source, .. }
            | Error::Apply { source, .. }
            | Error::Create { source, .. } => match pgferry_runtime::db::recovery(source) {
                Recovery::Retry => Code::Unavailable,
                Recovery::Operator | Recovery::Stop => Code::FailedPrecondition,
            },
            Error::NotInstalled
            | Error::Install(_)
            | Error::ProtocolVersion { .. }
            | Error::UnknownTable { .. }
            | Error::UnknownSequence { .. }
            | Error::ColumnMismatch { .. }
            | Error::NoUniqueKey { .. }
            | Error::RowSecurity { .. }
            | Error::SchemaChange { .. }
            | Error::SchemaPaused { .. }
            | Error::EpochBehind { .. }
            | Error::AfterSwitchover { .. }
            | Error::NoSourceSchema
            | Error::Promote(_) => Code::FailedPrecondition,
            Error::OutOfSequence { .. } | Error::ConstraintRetry { .. } => Code::Aborted,
            Error::BatchIdle { .. } => Code::DeadlineExceeded,
            Error::Unauthenticated => Code::Unauthenticated,
            Error::Certificate(_) => Code::PermissionDenied,
            Error::Protocol(_)
            | Error::Wire { .. }
            | Error::BadKey { .. }
            | Error::BadSchemaChange { .. }
            | Error::UnknownTableId { .. } => Code::InvalidArgument,
            Error::Config(_) | Error::Conninfo(_) | Error::Io { .. } => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}

/// Result with the target agent's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A DDL statement's error with its DETAIL, which names what stands in the
/// way (the view that depends on a column) and, unlike a row statement's,
/// holds no row values.
fn with_detail(err: &tokio_postgres::Error) -> String {
    match err.as_db_error().and_then(|db| db.detail()) {
        Some(detail) => format!("{}: {detail}", pgferry_runtime::db::describe(err)),
        None => pgferry_runtime::db::describe(err),
    }
}
