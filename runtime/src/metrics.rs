//! Prometheus exposition for both agents (`--metrics-listen`). Metric names
//! start with `pgferry_`; each agent defines its own in its `metrics` module.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

use crate::config::ConfigError;

/// Serves `/metrics` on `addr` (the `metrics-listen` setting) from a
/// background task.
pub fn serve(addr: SocketAddr) -> Result<(), ConfigError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|err| ConfigError::Invalid {
            setting: "metrics-listen",
            reason: err.to_string(),
        })
}
