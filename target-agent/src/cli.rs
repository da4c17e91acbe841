//! The command line. Every flag can also come from `PGFERRY_<FLAG>` or from
//! `--config FILE.toml` (see `pgferry_runtime::config`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// pgferry target agent: applies batches from source agents, each in one
/// transaction with its progress record, as the only writer of the
/// replicated tables.
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
    /// Target database: libpq key=value string or postgres:// URL. Its role
    /// is the applier, the only one allowed to write replicated tables.
    #[arg(long, env = "PGFERRY_TARGET_DB")]
    pub target_db: String,
    /// PEM file of the CA (or the certificate itself) the target database's
    /// TLS certificate must come from: TLS is then required and the
    /// certificate must name the CONNINFO's host (libpq's verify-full).
    /// Without it, sslmode=prefer or require encrypt unchecked, as libpq.
    #[arg(long, env = "PGFERRY_TARGET_DB_CA")]
    pub target_db_ca: Option<PathBuf>,
    /// PEM client certificate (chain) presented to the target database, for
    /// its `cert` authentication or `clientcert=verify-full` (libpq's
    /// sslcert); TLS is then required. With --target-db-key.
    #[arg(long, env = "PGFERRY_TARGET_DB_CERT", requires = "target_db_key")]
    pub target_db_cert: Option<PathBuf>,
    /// PEM private key of --target-db-cert (libpq's sslkey).
    #[arg(long, env = "PGFERRY_TARGET_DB_KEY", requires = "target_db_cert")]
    pub target_db_key: Option<PathBuf>,
    /// TOML file with settings (keys are the flag names).
    #[arg(long, env = "PGFERRY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// What the target agent can do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or upgrade pgferry's schema in the target database.
    Install {
        /// Target database and config file.
        #[command(flatten)]
        common: Common,
    },
    /// Make this database the source of a lost source's tables (failover),
    /// as of the last batch applied from it, at a new epoch that refuses the
    /// old source from then on; a target for the old source is recorded at
    /// --reverse-address, for `source-agent rejoin` there.
    Promote {
        /// Target database and config file.
        #[command(flatten)]
        common: Common,
        /// The source taken over from (may be left out while one replicates
        /// here).
        #[arg(long)]
        source_id: Option<String>,
        /// Where the old source's target agent will listen once it
        /// rejoins, and what this host's source agent reaches it with.
        #[command(flatten)]
        reverse: pgferry_runtime::reverse::ReverseLink,
    },
    /// Serve source agents until SIGTERM or SIGINT.
    Run(Box<RunArgs>),
}

/// Settings of `run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Target database and config file.
    #[command(flatten)]
    pub common: Common,
    /// Address to serve replication and grpc.health.v1 on.
    #[arg(long, env = "PGFERRY_LISTEN")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics on this address (default: off).
    #[arg(long, env = "PGFERRY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve grpc.health.v1 (and reflection), in plain gRPC without
    /// TLS or token, on this address (default: off): for probes that speak
    /// no TLS, such as Kubernetes' gRPC probes. Health says nothing a
    /// stranger could use; replication stays on --listen alone.
    #[arg(long, env = "PGFERRY_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Largest message accepted from a source agent, in bytes.
    #[arg(long, env = "PGFERRY_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Bytes of each source's batch held back to drop changes a later
    /// change of the same row in the same batch overwrites (0: apply every
    /// change). Only tables whose rows nothing ties to other rows are
    /// compacted: no foreign key, no other unique index, no trigger.
    #[arg(long, env = "PGFERRY_COMPACT_WINDOW_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub compact_window_bytes: usize,
    /// HTTP/2 flow-control window of each source's stream, in bytes: at
    /// most this much received and not yet applied is held, and a link
    /// carries at most this much per round trip (16 MiB: 160 MiB/s at a
    /// 100 ms round trip). With --compact-window-bytes it bounds memory.
    #[arg(
        long,
        env = "PGFERRY_RECEIVE_WINDOW_BYTES",
        default_value_t = pgferry_runtime::HTTP2_WINDOW,
        // HTTP/2's least window, and the most whose connection window
        // (twice it) HTTP/2 can still express.
        value_parser = clap::value_parser!(u32).range(65_535..=1 << 30),
    )]
    pub receive_window_bytes: u32,
    /// How long a batch may stay open without a chunk before it is rolled
    /// back and its stream ended: an open batch holds the locks of the rows
    /// it wrote, which other sources' batches would wait on.
    #[arg(long, env = "PGFERRY_BATCH_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub batch_idle_timeout: std::time::Duration,
    /// File with a token every source agent must present. Without it, or
    /// --tls-client-ca, any peer that reaches --listen could write the
    /// replicated tables, so the agent then listens on loopback only
    /// (unless --allow-unauthenticated).
    #[arg(long, env = "PGFERRY_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Serve peers that present neither a token nor a client certificate on
    /// an address other than loopback: anyone who reaches --listen can then
    /// write the replicated tables. Only for a network nothing else reaches.
    #[arg(long, env = "PGFERRY_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// PEM certificate (chain) this agent presents: with --tls-key, --listen
    /// speaks TLS, and source agents reach it at https:// with --tls-ca.
    #[arg(long, env = "PGFERRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PGFERRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate(s) of the authority that signs the source agents'
    /// client certificates (mutual TLS, with --tls-cert): a peer without
    /// one it signed is refused at the handshake, and each source may use
    /// only a source id its certificate names (its DNS subject alternative
    /// names, or its common name when it has none).
    #[arg(long, env = "PGFERRY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_window_http2_cannot_express_is_refused_by_name() {
        let window = |bytes: &str| {
            Cli::try_parse_from([
                "target-agent",
                "run",
                "--target-db",
                "x",
                "--listen",
                "127.0.0.1:1",
                "--receive-window-bytes",
                bytes,
            ])
            .map_err(|error| error.to_string())
        };
        assert!(window("4194304").is_ok());
        for bytes in ["1000", "2147483647"] {
            let error = window(bytes).expect_err("refused");
            assert!(error.contains("--receive-window-bytes"), "{error}");
        }
    }
}
