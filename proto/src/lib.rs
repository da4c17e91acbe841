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
pub const PROTOCOL_VERSION: u32 = 7;

/// The gRPC health service name both agents report under, besides "".
pub const SERVICE_NAME: &str = "pgferry.v1.Replication";
