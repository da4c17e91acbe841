//! The source agent's one error type. Each variant names what it is about
//! (table, batch, setting) and knows what it needs: a retry, an operator or
//! a stop ([`Recovery`]).

use pgferry_runtime::recovery::Recovery;
use tonic::Code;

/// Everything that can go wrong on the source side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or invalid.
    #[error(transparent)]
    Config(#[from] pgferry_runtime::config::ConfigError),
    /// The CONNINFO does not parse.
    #[error(transparent)]
    Conninfo(#[from] pgferry_runtime::db::BadConninfo),
    /// The source database did not accept the connection.
    #[error("cannot connect to the source database: {}", pgferry_runtime::db::describe(.0))]
    Connect(#[source] tokio_postgres::Error),
    /// A statement failed on the source database.
    #[error("source database, {context}: {}", pgferry_runtime::db::describe(.source))]
    Db {
        /// What the agent was doing.
        context: &'static str,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// `install` has not been run on the source database.
    #[error("pgferry is not installed in the source database: run `source-agent install` first")]
    NotInstalled,
    /// `install` failed; nothing was changed.
    #[error("install: {0}")]
    Install(#[from] pgferry_runtime::install::InstallError),
    /// `install --capture compiled` without a usable pgferry_capture extension.
    #[error(
        "setting `capture`: compiled capture needs the pgferry_capture extension, {0} (build and install it with source-agent/capture-extension/build.sh, or install with --capture plpgsql)"
    )]
    CompiledCaptureUnavailable(String),
    /// A table name is not SCHEMA.TABLE.
    #[error("`{0}` is not a table name: write SCHEMA.TABLE")]
    BadTableName(String),
    /// The table does not exist on the source.
    #[error("table {0} does not exist in the source database")]
    UnknownTable(String),
    /// The table is not a plain table.
    #[error("{0} is not a table (only ordinary tables can be replicated)")]
    NotATable(String),
    /// pgferry's tables hold snapshots of transaction ids this database has
    /// not reached: they came from another cluster.
    #[error(
        "the source database's transaction ids (next {current}) are behind its newest batch's snapshot ({newest}): pgferry's schema came from another cluster (a logical dump restored?), where no change would ever be cut; drop schema pgferry cascade, run install and add the tables again (they are copied anew)"
    )]
    TransactionIdsBehind {
        /// The database's next transaction id.
        current: String,
        /// The newest batch's snapshot.
        newest: String,
    },
    /// A partitioned table where no DDL watch follows its partitions.
    #[error(
        "table {0} is partitioned and this database has no DDL watch: partitions created, attached, detached or dropped would go unseen; install pgferry as a superuser (source-agent install), which creates the watch"
    )]
    Partitioned(String),
    /// A table with inheritance children: a statement on it reaches their
    /// rows too, and its statement trigger sees them as its own.
    #[error(
        "table {table} has inheritance children ({children}): a statement on it changes their rows too, which its capture would ship as its own; replicate each child (and the parent's own rows) as tables of their own, or detach the children (ALTER TABLE ... NO INHERIT)"
    )]
    InheritanceParent {
        /// The parent.
        table: String,
        /// Its children.
        children: String,
    },
    /// An UNLOGGED table.
    #[error(
        "table {0} is UNLOGGED: a crash of the source empties it without anything the capture can see, and the target would keep its rows; ALTER TABLE ... SET LOGGED first"
    )]
    Unlogged(String),
    /// No primary key or unique index over NOT NULL columns.
    #[error(
        "table {0} has no primary key or unique index over NOT NULL columns: the target could not match rows; add a primary key"
    )]
    NoKey(String),
    /// A `--columns` list that cannot work.
    #[error("table {table}: {reason}")]
    BadColumns {
        /// The table.
        table: String,
        /// What is wrong with the list.
        reason: String,
    },
    /// A `--where` predicate that cannot work.
    #[error("table {table}: bad row filter: {reason}")]
    BadFilter {
        /// The table.
        table: String,
        /// What is wrong with the predicate.
        reason: String,
    },
    /// `--schema` names a schema without tables or sequences.
    #[error("schema {0} has no tables or sequences")]
    EmptySchema(String),
    /// Not a sequence.
    #[error("{0} is not a sequence")]
    NotASequence(String),
    /// The sequence is already replicated.
    #[error("sequence {0} is already replicated")]
    SequenceAlreadyAdded(String),
    /// The table is already replicated.
    #[error("table {0} is already replicated")]
    AlreadyAdded(String),
    /// The table is not replicated.
    #[error("table {0} is not replicated")]
    NotReplicated(String),
    /// The target address is not a valid URI.
    #[error("setting `target`: `{0}` is not an address like http://host:7300")]
    BadTarget(String),
    /// The token file holds characters a gRPC header cannot carry.
    #[error("setting `auth-token-file`: the token must be printable ASCII")]
    BadToken,
    /// Could not reach the target agent.
    #[error("cannot reach the target agent: {}", pgferry_runtime::causes(.0))]
    Transport(#[from] tonic::transport::Error),
    /// The target agent refused or failed the stream.
    #[error("target agent: {}", status_text(.0))]
    Target(tonic::Status),
    /// The target ended the stream (it is shutting down or restarting).
    #[error("target agent closed the stream")]
    TargetClosed,
    /// The target broke the protocol.
    #[error("target agent broke the protocol: {0}")]
    Protocol(String),
    /// A queued row longer than `--max-row-bytes`: the agents would hold
    /// more than they are allowed to carry it.
    #[error(
        "table {table}, key {key}: a row of {size} bytes is longer than --max-row-bytes ({limit}); raise it (up to 1 GiB), or take the table out (remove-table)"
    )]
    RowTooLarge {
        /// The source table.
        table: String,
        /// The row's key, as JSON (or what the change is, for a
        /// statement's rows).
        key: String,
        /// The row text's length.
        size: usize,
        /// The setting.
        limit: usize,
    },
    /// The target has applied a batch the source has not cut, or lost
    /// batches the source has already cleaned up: the two databases do not
    /// belong together any more.
    #[error(
        "target progress for this source is at batch {target}, but the source {reason}; refusing to send (was a database restored or reinstalled?)"
    )]
    Diverged {
        /// The target's last applied batch.
        target: u64,
        /// What the source has instead.
        reason: String,
    },
    /// `ddl-done` of an ID that is no queued schema change of the target.
    #[error(
        "no schema change {0} is queued for that target (status shows the ID of the one a target stopped at)"
    )]
    UnknownSchemaChange(i64),
    /// `add-target` of a name already recorded.
    #[error("target {0} is already recorded")]
    TargetExists(String),
    /// `add-table --wait`: a copy stopped for good.
    #[error("table {table}: its initial copy failed: {reason}")]
    CopyFailed {
        /// The table and its target.
        table: String,
        /// Why.
        reason: String,
    },
    /// `remove-target` of a name not recorded.
    #[error("setting `target`: no target named {0} is recorded (source-agent add-target)")]
    UnknownTarget(String),
    /// Another `source-agent run` streams to this target from this
    /// database.
    #[error(
        "another source-agent is streaming to target {target} from this source database (stop it first)"
    )]
    AlreadyRunning {
        /// The target's name.
        target: String,
    },
    /// `verify` or `repair` waited in vain for a target's answers.
    #[error(
        "target {target} did not answer the checks of batch {batch_id} within {}: is `source-agent run` running and the target agent connected?",
        humantime::format_duration(*.waited)
    )]
    NoAnswer {
        /// The target's name.
        target: String,
        /// The batch that carried the checks.
        batch_id: u64,
        /// How long the command waited.
        waited: std::time::Duration,
    },
    /// `verify` or `repair` of a table the target cannot answer for.
    #[error("table {table} on target {target}: {reason}")]
    CheckFailed {
        /// The source table.
        table: String,
        /// The target's name.
        target: String,
        /// Why.
        reason: String,
    },
    /// The target recorded a higher epoch for this source: it took the
    /// source role in a switchover (or this database was restored from
    /// before one), and it refuses this source for good.
    #[error(
        "target refuses this source: it is at epoch {theirs} and this source at epoch {ours}; the target took over from this database in a switchover (or this database was restored from before one): make this database its target (docs/reference.md, \"Switchover\")"
    )]
    EpochBehind {
        /// This source's epoch.
        ours: u64,
        /// The epoch the target recorded for it.
        theirs: u64,
    },
    /// `switchover` cannot start: nothing was changed.
    #[error("switchover to target {target} refused, nothing changed: {reason}")]
    SwitchoverRefused {
        /// The target's name.
        target: String,
        /// Why.
        reason: String,
    },
    /// `rejoin` cannot be done: nothing was changed.
    #[error("rejoin of target {target} refused, nothing changed: {reason}")]
    RejoinRefused {
        /// The target's name.
        target: String,
        /// Why.
        reason: String,
    },
    /// `switchover` waited longer than `--timeout` for the transactions
    /// writing the target's tables; the fence was lifted.
    #[error(
        "switchover to target {target}: transactions writing its tables did not finish within {} (setting `timeout`); the fence is lifted and the tables are writable again",
        humantime::format_duration(*.waited)
    )]
    FenceTimeout {
        /// The target's name.
        target: String,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// Every target of `run` was switched over: this database is no
    /// longer their source.
    #[error(
        "every target of this source (at epoch {ours}) was switched over ({targets}): this database is now their target, and this agent has nothing to cut; run `target-agent run` here and `source-agent run` on the new source"
    )]
    SwitchedOver {
        /// This database's epoch.
        ours: i64,
        /// The targets, with the switchovers' epochs.
        targets: String,
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

    /// Whether the target's host refused the connection outright (no
    /// agent listens there: it is down or restarting).
    pub fn is_connection_refused(&self) -> bool {
        std::iter::successors(Some(self as &dyn std::error::Error), |err| err.source()).any(|err| {
            err.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        })
    }
    /// What this failure needs before replication can go on, for every
    /// loop that retries (the session, the cutter). Matched in full, so a
    /// new variant must say.
    pub fn recovery(&self) -> Recovery {
        match self {
            Error::Connect(source) | Error::Db { source, .. } => {
                pgferry_runtime::db::recovery(source)
            }
            Error::Transport(_) | Error::TargetClosed | Error::Protocol(_) => Recovery::Retry,
            Error::Target(status) => target_recovery(status.code()),
            Error::NotInstalled
            | Error::Diverged { .. }
            | Error::RowTooLarge { .. }
            | Error::EpochBehind { .. } => Recovery::Operator,
            Error::Config(_)
            | Error::Conninfo(_)
            | Error::Install(_)
            | Error::CompiledCaptureUnavailable(_)
            | Error::BadTableName(_)
            | Error::UnknownTable(_)
            | Error::NotATable(_)
            | Error::TransactionIdsBehind { .. }
            | Error::Partitioned(_)
            | Error::InheritanceParent { .. }
            | Error::Unlogged(_)
            | Error::NoKey(_)
            | Error::BadColumns { .. }
            | Error::BadFilter { .. }
            | Error::EmptySchema(_)
            | Error::NotASequence(_)
            | Error::SequenceAlreadyAdded(_)
            | Error::AlreadyAdded(_)
            | Error::NotReplicated(_)
            | Error::BadTarget(_)
            | Error::BadToken
            | Error::TargetExists(_)
            | Error::UnknownSchemaChange(_)
            | Error::UnknownTarget(_)
            | Error::CopyFailed { .. }
            | Error::AlreadyRunning { .. }
            | Error::NoAnswer { .. }
            | Error::CheckFailed { .. }
            | Error::SwitchoverRefused { .. }
            | Error::RejoinRefused { .. }
            | Error::FenceTimeout { .. }
            | Error::SwitchedOver { .. }
            | Error::Io { .. } => Recovery::Stop,
        }
    }
}

/// What a status the target agent answered with needs: the target maps its
/// own errors to codes in one place (target-agent/src/error.rs); those that
/// pass are retried, those that stay (a change the target refuses, a table
/// it lacks, credentials) need an operator.
fn target_recovery(code: Code) -> Recovery {
    match code {
        Code::Ok
        | Code::Cancelled
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal
        | Code::Unavailable
        | Code::ResourceExhausted => Recovery::Retry,
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss
        | Code::Unauthenticated => Recovery::Operator,
    }
}

/// Result with the source agent's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A status's code and message, and what caused it on this side (a
/// transport error says why only in its causes: a TLS alert, a reset).
fn status_text(status: &tonic::Status) -> String {
    let text = format!("{}: {}", status.code(), status.message());
    match std::error::Error::source(status) {
        Some(cause) => format!("{text}: {}", pgferry_runtime::causes(cause)),
        None => text,
    }
}
