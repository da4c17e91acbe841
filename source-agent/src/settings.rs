//! `run`'s settings: clap's checked flags turned, once, into the settings
//! each part of the agent takes (the cutter's pace, a stream's defaults,
//! the target the flags name), so that no module reads the command line.

use std::time::Duration;

use crate::channel::Dial;
use crate::cli::RunArgs;
use crate::cut::cutter::Pace;
use crate::ship::ChunkLimits;
use crate::ship::stream::Defaults;

/// What `run` and its parts take from its flags.
pub struct RunSettings {
    /// `--source-id`.
    pub source_id: String,
    /// The cutter's pace.
    pub pace: Pace,
    /// What every stream shares.
    pub streams: Defaults,
    /// `--max-backoff`, for the acknowledging session.
    pub max_backoff: Duration,
    /// `--target` with its TLS and token flags: the source's only target,
    /// at that address, instead of the recorded targets.
    pub flags_target: Option<Dial>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `--health-listen`.
    pub health_listen: Option<std::net::SocketAddr>,
}

impl RunSettings {
    /// The settings `args` ask for.
    pub fn from_args(args: &RunArgs) -> RunSettings {
        RunSettings {
            source_id: args.source_id.clone(),
            pace: Pace {
                tick: args.tick,
                idle_tick: args.idle_tick,
                max_coalesce: args.max_coalesce,
                max_backoff: args.max_backoff,
                max_unapplied: args.max_unapplied_batches,
            },
            streams: Defaults {
                source_id: args.source_id.clone(),
                batches_in_flight: args.window,
                limits: ChunkLimits {
                    rows: args.chunk_rows,
                    bytes: usize::try_from(args.chunk_bytes).unwrap_or(usize::MAX),
                    row_bytes: usize::try_from(args.max_row_bytes).unwrap_or(usize::MAX),
                },
                compression: args.compression.encoding(),
                max_backoff: args.max_backoff,
            },
            max_backoff: args.max_backoff,
            flags_target: args.target.clone().map(|address| Dial {
                address,
                tls_ca: args.tls_ca.clone(),
                tls_cert: args.tls_cert.clone(),
                tls_key: args.tls_key.clone(),
                auth_token_file: args.auth_token_file.clone(),
            }),
            metrics_listen: args.metrics_listen,
            health_listen: args.health_listen,
        }
    }
}
