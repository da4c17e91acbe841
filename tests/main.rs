//! End-to-end tests: real PostgreSQL clusters, the real agent binaries, real
//! gRPC over TCP. Build the binaries first: `cargo build --workspace --bins`.

mod kill;
mod order;
mod seed;
