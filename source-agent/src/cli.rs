//! The command line: subcommands and their settings. Every flag can also come
//! from `PGFERRY_<FLAG>` or from `--config FILE.toml` (see `pgferry_runtime::config`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// pgferry source agent: captures changes of chosen tables and streams them,
/// in commit order and exactly once, to a target agent.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// The action.
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Source database: libpq key=value string or postgres:// URL.
    #[arg(long, env = "PGFERRY_SOURCE_DB")]
    pub source_db: String,
    /// PEM file of the CA (or the certificate itself) the source database's
    /// TLS certificate must come from: TLS is then required and the
    /// certificate must name the CONNINFO's host (libpq's verify-full).
    /// Without it, sslmode=prefer or require encrypt unchecked, as libpq.
    #[arg(long, env = "PGFERRY_SOURCE_DB_CA")]
    pub source_db_ca: Option<PathBuf>,
    /// PEM client certificate (chain) presented to the source database, for
    /// its `cert` authentication or `clientcert=verify-full` (libpq's
    /// sslcert); TLS is then required. With --source-db-key.
    #[arg(long, env = "PGFERRY_SOURCE_DB_CERT", requires = "source_db_key")]
    pub source_db_cert: Option<PathBuf>,
    /// PEM private key of --source-db-cert (libpq's sslkey).
    #[arg(long, env = "PGFERRY_SOURCE_DB_KEY", requires = "source_db_cert")]
    pub source_db_key: Option<PathBuf>,
    /// TOML file with settings (keys are the flag names).
    #[arg(long, env = "PGFERRY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// What the source agent can do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or upgrade pgferry's schema in the source database.
    Install {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// Which capture functions the triggers call: the compiled ones of
        /// the pgferry_capture extension, PL/pgSQL, or the compiled ones
        /// when the server has the extension and this role may create it.
        #[arg(long, value_enum, default_value_t = CaptureChoice::Auto)]
        capture: CaptureChoice,
    },
    /// Start replicating a table (or every table of a schema) to a target:
    /// its rows are copied there, then its changes stream. A table can go
    /// to several targets, each with its own --as, --columns and --where.
    AddTable {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The source table, SCHEMA.TABLE.
        #[arg(required_unless_present = "schema", conflicts_with = "schema")]
        table: Option<String>,
        /// The target (`add-target`'s name) it goes to; may be left out
        /// while the source has one target.
        #[arg(long)]
        target: Option<String>,
        /// The target table, SCHEMA.TABLE (default: the same name).
        #[arg(long = "as", conflicts_with = "schema")]
        target_table: Option<String>,
        /// Replicate only these columns (they must include the key).
        #[arg(long, value_delimiter = ',', conflicts_with = "schema")]
        columns: Vec<String>,
        /// Replicate only rows matching this SQL predicate.
        #[arg(long = "where", conflicts_with = "schema")]
        row_filter: Option<String>,
        /// Have the target agent create the target table if it is missing.
        #[arg(long)]
        create_target: bool,
        /// Add every table with a key (and every sequence) of this schema.
        #[arg(long)]
        schema: Option<String>,
        /// With --schema: skip tables and sequences whose name matches this
        /// SQL LIKE pattern (repeatable).
        #[arg(long, requires = "schema")]
        exclude: Vec<String>,
        /// With --schema: also add each table created in the schema later,
        /// in the CREATE's own transaction, copied in stream order (needs
        /// the DDL watch: an install by a superuser).
        #[arg(long, requires = "schema")]
        follow: bool,
        /// Show the initial copy's progress and return once the table
        /// replicates (exit 1 if the copy fails in a way that needs an
        /// operator); `source-agent run` must be running to copy it.
        #[arg(long)]
        wait: bool,
    },
    /// Keep a target sequence at or above a source sequence.
    AddSequence {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The source sequence, SCHEMA.SEQUENCE.
        sequence: String,
        /// The target (`add-target`'s name) it goes to (default: every
        /// target).
        #[arg(long)]
        target: Option<String>,
        /// The target sequence, SCHEMA.SEQUENCE (default: the same name).
        #[arg(long = "as")]
        target_sequence: Option<String>,
        /// Have the target agent create the sequence if it is missing.
        #[arg(long)]
        create_target: bool,
    },
    /// Stop replicating a table at once: batches its target has not
    /// acknowledged no longer carry its changes, and the target agent lifts
    /// its guard.
    RemoveTable {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The source table, SCHEMA.TABLE.
        table: String,
        /// Stop it going to this target only (default: to every target).
        #[arg(long)]
        target: Option<String>,
    },
    /// Set a table aside: it stays registered, but its changes no longer
    /// go to the target (even those in batches already cut and not
    /// acknowledged), so a table the target cannot apply stops holding back
    /// the others; `status` shows it diverged until `add-table` copies it
    /// again.
    SetAside {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The source table, SCHEMA.TABLE.
        table: String,
        /// For this target only (default: every target).
        #[arg(long)]
        target: Option<String>,
    },
    /// Compare each target's tables with its view of the source while
    /// writers run: each range of keys at a batch of its own, both sides
    /// read at that batch, so equal copies always compare equal. Exit 0
    /// when equal, 1 when rows differ, 2 on an error. `source-agent run`
    /// must be running: the target's side comes through its stream.
    Verify(CheckArgs),
    /// Find the rows that differ as `verify` does and rewrite exactly those
    /// on the target, through the stream, while writers run; ends with a
    /// clean verify of each range (exit 0) or says what is left (exit 1). A
    /// table set aside is copied again, then compared.
    Repair(CheckArgs),
    /// Record a target agent `run` streams to: its address and the paths of
    /// its TLS and token files (the agent reads them when it connects; no
    /// secret is stored). A running agent starts streaming to it within a
    /// second; add its tables with `add-table --target NAME`.
    AddTarget {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The target's name.
        name: String,
        /// http://HOST:PORT, or https://HOST:PORT with --tls-ca.
        #[arg(long)]
        address: String,
        /// PEM certificate of the authority that signed the target agent's
        /// certificate (or that certificate itself).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// PEM client certificate (chain) to present to the target agent.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// File holding the token the target agent wants.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
        /// What the target does with a replicated table's schema change
        /// (ALTER TABLE on the source): makes it at its place in the
        /// stream, or stops there until the operator has made it and runs
        /// `ddl-done`.
        #[arg(long, value_enum, default_value_t = DdlMode::Apply)]
        ddl: DdlMode,
    },
    /// Run DDL on the source (ALTER TABLE ... of replicated tables) and
    /// record in the same transaction the schema changes it makes, for
    /// their targets to make at their place. For an install without a
    /// superuser, which has no DDL watch: a replicated table altered
    /// otherwise is set aside until `repair` copies it again.
    Ddl {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The SQL to run.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        sql: Option<String>,
        /// A file of SQL to run.
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
    },
    /// Tell pgferry that a schema change a target stopped at (`status`
    /// names it and its ID) was made on the target by hand: the target
    /// takes the table's new shape without making the change.
    DdlDone {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The target (may be left out when the source has one).
        #[arg(long)]
        target: Option<String>,
        /// The schema change's ID, as `status` shows it.
        id: i64,
    },
    /// Forget a target `add-target` recorded, with its tables: the queued
    /// changes only it still needed are deleted at once.
    RemoveTarget {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The target's name.
        name: String,
    },
    /// Make a target the source of its tables, and this database its
    /// target, with nothing lost and nothing copied: fences the tables
    /// here (every write refused), has the running agent ship a final
    /// batch, and waits until the target has taken over with it. The
    /// target must take whole tables, be streamed to, and have pgferry's
    /// source schema installed (`source-agent install` there).
    Switchover {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The target that becomes the source.
        #[arg(long)]
        target: String,
        /// Where this database's target agent will listen, and what the
        /// new source's agent reaches it with.
        #[command(flatten)]
        reverse: pgferry_runtime::reverse::ReverseLink,
        /// How long the fence may wait for the transactions writing the
        /// tables; after that it is lifted and nothing has changed.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        timeout: std::time::Duration,
    },
    /// After a failover (`target-agent promote` on a target): make this
    /// database that target's target. Fences the tables it took over,
    /// writes the transactions committed here that it never applied to
    /// --lost-file (JSON lines, one transaction each, in commit order), and
    /// ends their capture here; `repair` from the new source then makes
    /// this database exact.
    Rejoin {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// The promoted target (asked, at its recorded address, which of
        /// this database's batches it applied last).
        #[arg(long)]
        target: String,
        /// This source's id there (`run --source-id`).
        #[arg(long, env = "PGFERRY_SOURCE_ID")]
        source_id: String,
        /// Where the transactions it never applied go.
        #[arg(long)]
        lost_file: std::path::PathBuf,
    },
    /// Show tables, pending changes, progress and the last error.
    Status {
        /// Source database and config file.
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Follow the initial copies under way and each target's backlog
        /// until interrupted: live progress bars on a terminal, plain lines
        /// otherwise.
        #[arg(long)]
        watch: bool,
    },
    /// Cut batches and stream them to every target until SIGTERM or SIGINT.
    Run(RunArgs),
}

/// Settings of `verify` and `repair`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Source database and config file.
    #[command(flatten)]
    pub common: Common,
    /// Source tables to compare, SCHEMA.TABLE (default: every replicated
    /// table).
    pub tables: Vec<String>,
    /// Only this target's tables (default: every target's).
    #[arg(long)]
    pub target: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keys of differing rows listed per table at most (all are counted).
    #[arg(long, default_value_t = 100)]
    pub max_differences: usize,
    /// Rows per range of keys: each range is compared at a batch of its
    /// own, so no snapshot or lock is held for longer than a range takes.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk_rows: u32,
    /// How long to wait for a target's answers before giving up.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub timeout: Duration,
    /// The share of its time, in percent, the command's reads may take
    /// while other sessions run statements on the source: it pauses after
    /// each range to keep to it, leaving the CPU to the writers; an idle
    /// source is read at full speed (100: never pause).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub source_share: u8,
}

/// Settings of `run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Source database and config file.
    #[command(flatten)]
    pub common: Common,
    /// The target agent's address: http://HOST:PORT, or https://HOST:PORT
    /// for a target agent with a TLS certificate (then --tls-ca is needed),
    /// for a source with one target. Without it, every target `add-target`
    /// recorded (with its TLS and token files).
    #[arg(long, env = "PGFERRY_TARGET")]
    pub target: Option<String>,
    /// PEM certificate of the authority that signed the target agent's
    /// certificate (or that certificate itself): the link's TLS trusts it
    /// alone, and the certificate must name the host of --target.
    #[arg(long, env = "PGFERRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (chain) to present to a target agent that
    /// requires one (its --tls-client-ca): it must name --source-id (as a
    /// DNS subject alternative name, or as its common name when it has none).
    #[arg(long, env = "PGFERRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PGFERRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// This source's name; the target keeps its progress under it.
    #[arg(long, env = "PGFERRY_SOURCE_ID")]
    pub source_id: String,
    /// Serve grpc.health.v1 on this address (default: off).
    #[arg(long, env = "PGFERRY_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Serve Prometheus metrics on this address (default: off).
    #[arg(long, env = "PGFERRY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How often to look for committed changes to cut into a batch while
    /// they come (an applied batch also wakes the cutter). Each look is one
    /// short query.
    #[arg(long, env = "PGFERRY_TICK", default_value = "1ms", value_parser = humantime::parse_duration)]
    pub tick: Duration,
    /// The longest wait between looks: once nothing came for 100 ms, the
    /// wait doubles from --tick after each look that found nothing.
    #[arg(long, env = "PGFERRY_IDLE_TICK", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub idle_tick: Duration,
    /// The longest the cutter lets changes gather under load: after a batch
    /// of n changes it waits n x 500 us (at least --tick, at most this)
    /// before the next cut, so a busy source ships fewer, larger batches
    /// and a quiet one is not slowed down.
    #[arg(long, env = "PGFERRY_MAX_COALESCE", default_value = "25ms", value_parser = humantime::parse_duration)]
    pub max_coalesce: Duration,
    /// Cut batches that may wait to be applied before the cutter holds off
    /// and lets the next batch grow. As many as --window by default: a
    /// change cut while this many wait waits a round trip for the target's
    /// report, which on a link between datacenters takes several batches'
    /// time; under load the coalescing, not this, sets the batches' size.
    #[arg(long, env = "PGFERRY_MAX_UNAPPLIED_BATCHES", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unapplied_batches: u32,
    /// How many batches may be sent and not yet acknowledged.
    #[arg(long, env = "PGFERRY_WINDOW", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
    /// Rows per message on the wire.
    #[arg(long, env = "PGFERRY_CHUNK_ROWS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk_rows: u32,
    /// Bytes of row data per message on the wire (keep well under the
    /// target's --max-message-bytes).
    #[arg(long, env = "PGFERRY_CHUNK_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_bytes: u64,
    /// The longest row text a change may carry (it travels in pieces of
    /// --chunk-bytes); a longer one stops its target, needing an operator.
    /// Each agent holds about two to three times this for such a row.
    /// Default and most: 1 GiB, PostgreSQL's limit on one value.
    #[arg(long, env = "PGFERRY_MAX_ROW_BYTES", default_value_t = pgferry_proto::MAX_ROW_BYTES as u64, value_parser = clap::value_parser!(u64).range(1..=pgferry_proto::MAX_ROW_BYTES as u64))]
    pub max_row_bytes: u64,
    /// Compression of batches on the wire: worth its CPU on a link slower
    /// than the agents and databases; on a fast one it only costs.
    #[arg(long, env = "PGFERRY_COMPRESSION", value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Longest wait between retries after an error.
    #[arg(long, env = "PGFERRY_MAX_BACKOFF", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// File with the token the target agent expects (its --auth-token-file).
    #[arg(long, env = "PGFERRY_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
}

/// `install --capture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureChoice {
    /// Compiled when the extension is available and may be created, else PL/pgSQL.
    Auto,
    /// The pgferry_capture extension; an error without it.
    Compiled,
    /// PL/pgSQL (drops the extension if an earlier install created it).
    Plpgsql,
}

/// `add-target --ddl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DdlMode {
    /// The target agent makes each schema change at its place.
    Apply,
    /// The target stops at each schema change until `ddl-done`.
    Pause,
}

impl DdlMode {
    /// The mode as `pgferry.targets.ddl` records it.
    pub fn as_str(self) -> &'static str {
        match self {
            DdlMode::Apply => "apply",
            DdlMode::Pause => "pause",
        }
    }
}

/// How batches are compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// Zstandard: less CPU than gzip for a like ratio.
    Zstd,
}

impl Compression {
    /// The gRPC encoding, if any.
    pub fn encoding(self) -> Option<tonic::codec::CompressionEncoding> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(tonic::codec::CompressionEncoding::Gzip),
            Compression::Zstd => Some(tonic::codec::CompressionEncoding::Zstd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_dba_writes_them() {
        let tick = |text: &str| {
            Cli::try_parse_from([
                "source-agent",
                "run",
                "--source-db",
                "x",
                "--target",
                "http://t",
                "--source-id",
                "dc1",
                "--tick",
                text,
            ])
            .map_err(|error| error.to_string())
        };
        assert!(tick("250us").is_ok());
        assert!(tick("5s").is_ok());
        let error = tick("5 parsecs").expect_err("refused");
        assert!(error.contains("--tick"), "{error}");
    }
}
