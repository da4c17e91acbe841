//! End-to-end tests: real PostgreSQL clusters, the real agent binaries, real
//! gRPC over TCP. Build the binaries first: `cargo build --workspace --bins`.

mod bad_input;
mod batch_cut;
mod capture;
mod compact;
mod copy;
mod ddl;
mod deploy;
mod exact;
mod fan_out;
mod faults;
mod guard;
mod hostile;
mod install;
mod kill;
mod manage;
mod modules;
mod order;
mod outage;
mod partitions;
mod progress;
mod queue;
mod random_values;
mod restore;
mod seed;
mod switchover;
mod targets;
mod trust;
mod verify;
