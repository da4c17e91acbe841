//! What both agents run on besides the wire contract: layered
//! configuration, database sessions, schema installation, health
//! reporting, metrics, shutdown signals, log set-up, and the reverse link
//! flags of a switchover or promotion.

pub mod config;
pub mod db;
pub mod digest;
pub mod health;
pub mod install;
pub mod metrics;
pub mod recovery;
pub mod reverse;
pub mod shutdown;
pub mod sql;
pub mod telemetry;

/// HTTP/2 flow-control window of the replication stream: the default of
/// the target's --receive-window-bytes, and the source's (which receives
/// only acknowledgements). A stream carries at most one window per round
/// trip (h2's 64 KiB default caps a 100 ms round trip at 640 KB/s; this
/// one at 160 MiB/s, so a catch-up between datacenters is not held to one
/// window per round trip), and the receiver may hold up to one window of
/// data it has not applied yet.
pub const HTTP2_WINDOW: u32 = 16 * 1024 * 1024;

/// An error with its causes, outermost first: a transport error says only
/// "transport error", the reason (refused, a certificate not trusted) is
/// further down. A cause its wrapper already quotes is not repeated.
pub fn causes(err: &dyn std::error::Error) -> String {
    let mut text = String::new();
    for message in std::iter::successors(Some(err), |err| err.source()).map(ToString::to_string) {
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

/// `pgferry.text_form(type)`: which columns travel in their text form.
/// Both sides install this one body, so they agree on every column.
pub const TEXT_FORM_SQL: &str = include_str!("../sql/text_form.sql");
