//! grpc.health.v1 status that follows the agent's database: SERVING while a
//! probe finds the database up with pgferry's schema at this binary's
//! version, NOT_SERVING while it is unreachable, lacks the schema, or has
//! another version of it (every replication stream would fail until then).

use std::time::Duration;

use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use pgferry_proto::SERVICE_NAME;

/// How often the database is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Probes the database until `cancel` and keeps `reporter` in step, for the
/// whole server ("") and for the replication service. `migrations` are the
/// binary's schema scripts, whose newest version the database must have.
pub async fn follow_database(
    reporter: HealthReporter,
    config: Config,
    schema: &'static crate::install::Schema<'static>,
    cancel: CancellationToken,
) {
    let mut client = None;
    let mut last: Option<Result<(), String>> = None;
    loop {
        if client.is_none() {
            client = crate::db::connect(&config).await.ok();
        }
        let now = match &client {
            Some(c) => match crate::install::is_current(c, schema).await {
                Ok(true) => Ok(()),
                Ok(false) => Err("pgferry is not installed: run `install`".to_owned()),
                Err(crate::install::InstallError::Db(_)) => {
                    client = None;
                    Err("the database does not answer".to_owned())
                }
                Err(err) => Err(err.to_string()),
            },
            None => Err("the database does not answer".to_owned()),
        };
        if last.as_ref() != Some(&now) {
            let status = if now.is_ok() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            match &now {
                Ok(()) => tracing::info!(serving = true, "health changed"),
                Err(why) => tracing::warn!(serving = false, reason = %why, "health changed"),
            }
            last = Some(now);
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// Binds `addr` (`--health-listen`) and returns the task that serves
/// `service` (grpc.health.v1) and reflection there, in plain gRPC, until
/// `cancel`: what a Kubernetes gRPC probe (which speaks no TLS) and
/// `grpcurl -plaintext` reach.
pub async fn serve_plain(
    addr: std::net::SocketAddr,
    service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    cancel: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(serve_on(listener, service, cancel))
}

async fn serve_on(
    listener: tokio::net::TcpListener,
    service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    cancel: CancellationToken,
) {
    let router = tonic::transport::Server::builder().add_service(service);
    let served = pgferry_proto::reflection::serve(router)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            cancel.cancelled_owned(),
        )
        .await;
    if let Err(error) = served {
        tracing::error!(error = %error, "health server failed");
    }
}
