//! The numbers that must not be mixed up: batch ids, table ids, target ids
//! and change counts each have a type of their own.

/// A batch's place in the source's sequence of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct BatchId(pub u64);

/// How many row changes a batch carried (a statement's array counts each
/// of its rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ChangeCount(pub u64);

/// A registered table's id: `pgferry.tables.table_id` (an `int` there) and
/// `table_id` on the wire (a `uint32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(u32);

impl TableId {
    /// The id as the database stores it.
    pub fn from_sql(id: i32) -> TableId {
        TableId(id as u32)
    }

    /// The id as the wire carries it.
    pub fn from_wire(id: u32) -> TableId {
        TableId(id)
    }

    /// For a query parameter.
    pub fn sql(self) -> i32 {
        self.0 as i32
    }

    /// For a message.
    pub fn wire(self) -> u32 {
        self.0
    }
}

/// A target a source streams to: `pgferry.targets.target_id`, which its
/// batches, tables and sequences carry, and its name for logs, metrics and
/// status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetId {
    /// Its id.
    pub id: i32,
    /// Its name.
    pub name: String,
}
