//! Shipping to one target: a gRPC session to its target agent (`stream`)
//! that announces the tables (`catalog`), then sends batches read from the
//! queue (`batch`) with the initial copies and repairs they carry (`copy`).

pub mod batch;
pub mod catalog;
mod copy;
pub mod stream;

pub use batch::{ChunkLimits, KnownTable, SendOutcome, Shipper};
