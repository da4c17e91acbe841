//! Prometheus exposition for both agents (`--metrics-listen`). Metric names
//! start with `pgferry_`; each agent defines its own in its `metrics` module.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::config::ConfigError;

/// Buckets of the histograms in seconds: a millisecond to a minute.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of the histograms of counts (changes per batch): one to a million.
const COUNTS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];

/// Serves `/metrics` on `addr` (the `metrics-listen` setting) from a
/// background task; histograms named `*_seconds` get [`SECONDS`]'s buckets,
/// the others [`COUNTS`]'s.
pub fn serve(addr: SocketAddr) -> Result<(), ConfigError> {
    let invalid = |err: metrics_exporter_prometheus::BuildError| ConfigError::Invalid {
        setting: "metrics-listen",
        reason: err.to_string(),
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(COUNTS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        })
        .map_err(invalid)?
        .install()
        .map_err(invalid)
}
