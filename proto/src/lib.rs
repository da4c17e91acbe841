//! pgferry's wire contract: the gRPC service both agents speak, generated
//! from `proto/pgferry.proto`, the conversions of its messages into the
//! domain's changes, and the descriptors that serve reflection. Anything
//! that only needs to speak to an agent depends on this crate alone.

pub mod change;
pub mod reflection;

/// Types and service stubs generated from `proto/pgferry.proto`.
#[allow(missing_docs)]
pub mod wire {
    tonic::include_proto!("pgferry.v1");
}

/// The protocol version this build speaks. A target refuses a source that
/// speaks another one, before anything is applied.
pub const PROTOCOL_VERSION: u32 = 12;

/// The largest row text a change may carry, in pieces (`Change.continued`):
/// PostgreSQL's own limit on one value, so every row the source can queue
/// travels; a target refuses a longer one before it holds more.
pub const MAX_ROW_BYTES: usize = 1 << 30;

/// The gRPC health service name both agents report under, besides "".
pub const SERVICE_NAME: &str = "pgferry.v1.Replication";

/// When a batch was cut, from its `BatchChunk.cut` (the snapshot, a space,
/// then microseconds since 1970); `None` for a cut of another form.
pub fn cut_time(cut: &str) -> Option<std::time::SystemTime> {
    let micros: u64 = cut.rsplit_once(' ')?.1.parse().ok()?;
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_says_when_it_was_made() {
        let at = cut_time("795:797:795 1764763200123456").expect("a cut time");
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(since.as_micros(), 1_764_763_200_123_456);
        assert_eq!(cut_time(""), None);
        assert_eq!(cut_time("795:797:"), None);
    }
}
