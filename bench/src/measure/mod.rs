//! One module per measure of the benchmark.

mod backlog;
mod bulk;
mod catch_up;
mod ddl;
mod distance;
mod fan_out;
mod lag;
mod large;
mod overhead;
mod queue;
mod recovery;
mod single;
mod switchover;
mod verify;

pub(crate) use backlog::*;
pub(crate) use catch_up::*;
pub(crate) use large::*;
pub(crate) use queue::*;
pub(crate) use switchover::*;
