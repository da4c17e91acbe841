//! gRPC server reflection (grpc.reflection.v1 and v1alpha) for both agents:
//! `grpcurl list` and similar tools find pgferry's service and the health
//! service without a copy of the .proto files.

use tonic::transport::server::Router;

/// The encoded descriptors of `proto/pgferry.proto` (see `build.rs`).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pgferry_descriptor.bin"));

/// Adds the reflection services to `router`, describing pgferry's service
/// and grpc.health.v1.
pub fn serve(router: Router) -> Router {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // The descriptors are built into the binary: a failure is a build bug.
    router
        .add_service(builder().build_v1().expect("built-in descriptors decode"))
        .add_service(
            builder()
                .build_v1alpha()
                .expect("built-in descriptors decode"),
        )
}
