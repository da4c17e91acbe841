//! pgferry's target agent: serves source agents over gRPC and applies each
//! batch in one transaction together with the source's progress record, as
//! the only session the guard lets write the replicated tables.

pub mod apply;
pub mod auth;
pub mod cli;
pub mod durable;
pub mod error;
pub mod frame;
pub mod guard;
pub mod metrics;
pub mod promote;
pub mod schema;
pub mod server;
pub mod session;
pub mod take_over;
pub mod tls;

use pgferry_proto::SERVICE_NAME;
use pgferry_proto::wire::replication_server::ReplicationServer;
use pgferry_runtime::{db, health};
use tokio_util::task::TaskTracker;
use tonic::codec::CompressionEncoding;

use crate::cli::{Command, Common, RunArgs};
use crate::error::{Error, Result};

/// Name the agent's database sessions carry.
pub const APPLICATION_NAME: &str = "pgferry-target-agent";

/// How long shutdown waits for the streams to stop (each rolls back its
/// open batch) before the agent exits anyway, saying so.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Migrations in order; `install` runs those newer than the database's.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../sql/migrations/001_schema.sql")),
    (2, include_str!("../sql/migrations/002_flushes.sql")),
    (3, include_str!("../sql/migrations/003_batch_cuts.sql")),
    (4, include_str!("../sql/migrations/004_applied_view.sql")),
    (5, include_str!("../sql/migrations/005_text_form.sql")),
    (6, include_str!("../sql/migrations/006_epochs.sql")),
];

/// The target schema: the migrations, the guard function and the text-form
/// rule both sides share.
pub const SCHEMA: pgferry_runtime::install::Schema = pgferry_runtime::install::Schema {
    side: pgferry_runtime::install::Side::Target,
    migrations: MIGRATIONS,
    functions: &[
        include_str!("../sql/functions/guard.sql"),
        pgferry_runtime::TEXT_FORM_SQL,
    ],
    after_change: "",
};

/// Runs one command to completion.
pub async fn execute(command: Command) -> Result<()> {
    match command {
        Command::Install { common } => {
            let config = database(&common)?;
            let mut client = db::connect(&config).await.map_err(Error::Connect)?;
            let (before, after) = pgferry_runtime::install::install(&mut client, &SCHEMA).await?;
            if before == after {
                println!("pgferry target schema is current (version {after})");
            } else {
                println!("pgferry target schema installed: version {before} -> {after}");
            }
            Ok(())
        }
        Command::Promote {
            common,
            source_id,
            reverse,
        } => {
            let config = database(&common)?;
            let mut client = db::connect(&config).await.map_err(Error::Connect)?;
            let files = reverse.files().map(Option::unwrap_or_default);
            let reverse_address = &reverse.reverse_address;
            let reverse = take_over::Reverse {
                address: reverse_address,
                files: [&files[0], &files[1], &files[2], &files[3]],
            };
            let promoted = promote::promote(&mut client, source_id.as_deref(), &reverse).await?;
            println!(
                "promoted: this database is the source of {} tables of {} at epoch {}, as of batch {} (cut {})",
                promoted.tables,
                promoted.source_id,
                promoted.epoch,
                promoted.last_batch,
                promoted.last_cut
            );
            println!(
                "next: run `source-agent run` here (it streams to target {} at {reverse_address} once that database rejoins: `source-agent rejoin` there)",
                promoted.source_id
            );
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

/// The target database's settings: its CONNINFO, and the TLS of every
/// session this process opens to it.
fn database(common: &Common) -> Result<tokio_postgres::Config> {
    let mut config = db::parse_conninfo("target-db", &common.target_db, APPLICATION_NAME)?;
    let files = db::DatabaseTls {
        settings: ["target-db-ca", "target-db-cert", "target-db-key"],
        ca: common.target_db_ca.as_deref(),
        cert: common.target_db_cert.as_deref(),
        key: common.target_db_key.as_deref(),
    };
    db::trust(files, &mut config)?;
    Ok(config)
}

/// `run`: serve source agents until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<()> {
    let db_config = database(&args.common)?;
    let client_ca = args
        .tls_client_ca
        .as_deref()
        .map(tls::client_verifier)
        .transpose()?;
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key, client_ca.clone())?),
        _ => None,
    };
    let gate = auth::Gate {
        token: pgferry_runtime::config::read_optional_secret(
            "auth-token-file",
            args.auth_token_file.as_deref(),
        )?,
        client_ca,
    };
    check_exposure(&args, &gate)?;
    let cancel = pgferry_runtime::shutdown::on_signal().map_err(|source| Error::Io {
        context: "installing signal handlers",
        source,
    })?;
    if let Some(addr) = args.metrics_listen {
        pgferry_runtime::metrics::serve(addr)?;
        metrics::describe();
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Io {
            context: "binding listen",
            source,
        })?;
    let tasks = TaskTracker::new();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    tasks.spawn(health::follow_database(
        reporter,
        db_config.clone(),
        &SCHEMA,
        cancel.child_token(),
    ));
    if let Some(addr) = args.health_listen {
        let serve = health::serve_plain(addr, health_service.clone(), cancel.child_token())
            .await
            .map_err(|source| Error::Io {
                context: "binding health-listen",
                source,
            })?;
        tasks.spawn(serve);
    }
    let service = server::ReplicationService {
        gate,
        sessions: session::Sessions {
            db_config,
            cancel: cancel.child_token(),
            retries: Default::default(),
            compact_window: args.compact_window_bytes,
            batch_idle_timeout: args.batch_idle_timeout,
            tasks: tasks.clone(),
        },
    };
    tracing::info!(
        listen = %args.listen,
        tls = args.tls_cert.is_some(),
        client_certificates = args.tls_client_ca.is_some(),
        token = args.auth_token_file.is_some(),
        "target agent running"
    );
    let window = args.receive_window_bytes;
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(window)
        .initial_connection_window_size(2 * window)
        .add_service(health_service)
        .add_service(
            ReplicationServer::new(service)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(args.max_message_bytes)
                .max_encoding_message_size(args.max_message_bytes),
        );
    let router = pgferry_proto::reflection::serve(router);
    let shutdown = cancel.clone().cancelled_owned();
    let served = match acceptor {
        Some(acceptor) => {
            let incoming = tls::incoming(listener, acceptor, &tasks, cancel.child_token());
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    cancel.cancel();
    tasks.close();
    // Streams stop between chunks and roll back an open batch; a statement
    // the server is still running holds that up.
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            tasks = tasks.len(),
            "shutdown overran its grace; stopping with streams still running (their open batches roll back)"
        );
    }
    served.map_err(|err| Error::Io {
        context: "serving",
        source: std::io::Error::other(err),
    })
}

/// Refuses to serve unauthenticated peers beyond loopback: through the
/// applier, whoever reaches --listen as a source writes the replicated
/// tables. `--allow-unauthenticated` overrides it, with a warning.
fn check_exposure(args: &RunArgs, gate: &auth::Gate) -> Result<()> {
    let authenticated = gate.token.is_some() || gate.client_ca.is_some();
    if authenticated || args.listen.ip().is_loopback() {
        return Ok(());
    }
    if args.allow_unauthenticated {
        tracing::warn!(
            listen = %args.listen,
            "serving unauthenticated peers beyond loopback (--allow-unauthenticated): anyone who reaches this address can write the replicated tables"
        );
        return Ok(());
    }
    Err(pgferry_runtime::config::ConfigError::Invalid {
        setting: "listen",
        reason: format!(
            "{} is not a loopback address and neither --auth-token-file nor --tls-client-ca is set: \
             any peer that reaches it could write the replicated tables. Set one of them \
             (or --allow-unauthenticated on a network nothing else reaches)",
            args.listen
        ),
    }
    .into())
}
