//! Prometheus exposition for both agents (`--metrics-listen`). Metric names
//! start with `pgferry_`; each agent defines its own in its `metrics` module.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Serves `/metrics` on `addr` from a background task.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|err| format!("setting `metrics-listen`: {err}"))
}
