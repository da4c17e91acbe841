//! grpc.health.v1 status that follows the agent's database: SERVING while a
//! probe query answers, NOT_SERVING while it does not.

use std::time::Duration;

use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::SERVICE_NAME;

/// How often the database is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Probes the database until `cancel` and keeps `reporter` in step, for the
/// whole server ("") and for the replication service.
pub async fn follow_database(reporter: HealthReporter, config: Config, cancel: CancellationToken) {
    let mut client = None;
    let mut last = None;
    loop {
        if client.is_none() {
            client = crate::db::connect(&config).await.ok();
        }
        let up = match &client {
            Some(c) => c.simple_query("select 1").await.is_ok(),
            None => false,
        };
        if !up {
            client = None;
        }
        if last != Some(up) {
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(SERVICE_NAME, status).await;
            tracing::info!(serving = up, "health changed");
            last = Some(up);
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}
