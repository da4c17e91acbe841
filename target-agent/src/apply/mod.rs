//! Applying batches: each batch in one transaction that also moves the
//! source's progress record, so a batch is applied exactly once whatever
//! crashes when. Changes are applied set-based: a run of consecutive changes
//! of one kind to one table becomes one statement, runs in source order.
//! Here: a chunk's trip through the applier. Its parts each own their
//! state: the open batch's transaction and statement pipeline
//! (`transaction`), the tables' plans and shapes (`tables`, with schema
//! changes in `ddl`), the COPY in progress (`copy`), and the answers to
//! verify's checks (`check`); admission of a stream is `admit`. The pure
//! parts: changes to steps and runs (`step`), the window that drops
//! overwritten changes (`compact`), a row's columns (`shape`), key checks
//! (`key`), and how a failed batch is retried (`retry`).

use pgferry_proto::change::{Change, ChangeKind, Joiner};
use pgferry_proto::wire;

use crate::error::{Error, Result};
use crate::{frame, metrics};
pub use admit::recorded;
use copy::Copier;
pub use retry::{Retries, Retry};
use tables::Tables;
use transaction::Transaction;

mod admit;
mod check;
pub mod compact;
mod copy;
mod ddl;
mod key;
mod retry;
pub mod shape;
pub mod step;
mod tables;
mod transaction;

/// A batch committed.
pub struct Committed {
    /// The batch.
    pub batch_id: u64,
    /// The answers to its checks, if it asked any or a repair failed.
    pub checked: Option<wire::Checked>,
}

/// The applier: the one session that writes a source's tables on the target.
pub struct Applier {
    /// The session and the batch open on it.
    txn: Transaction,
    /// The tables and sequences it writes.
    tables: Tables,
    /// The COPY in progress (an initial copy or a repair).
    copy: Copier,
    /// A row arriving in pieces (one larger than a message), joined across
    /// the batch's chunks.
    joiner: Joiner,
    /// The last batch committed for this source.
    last_applied: u64,
    /// Its cut, as the source sent it (`BatchChunk.cut`; empty if unknown).
    last_cut: String,
    /// The epoch recorded for the source, with its batches.
    epoch: u64,
    /// Whether this database can take the source role (a switchover).
    can_take_over: bool,
    /// The source's switchover's final batch was applied: this database
    /// took the source role, and the stream has nothing more to apply.
    switched: bool,
}

impl Applier {
    /// The last batch committed for this source.
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// The cut of the last batch committed (empty if unknown).
    pub fn last_cut(&self) -> &str {
        &self.last_cut
    }

    /// The epoch recorded for the source.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether this database can take the source role (a switchover).
    pub fn can_take_over(&self) -> bool {
        self.can_take_over
    }

    /// The batch whose transaction is open, if any.
    pub fn open_batch(&self) -> Option<u64> {
        self.txn.open_batch()
    }

    /// Applies one chunk; returns the batch id, with its checks' answers
    /// if it asked any, when the chunk closed its batch and the batch is
    /// committed. On error the batch is rolled back.
    pub async fn apply_chunk(&mut self, chunk: wire::BatchChunk) -> Result<Option<Committed>> {
        let result = self.apply_chunk_inner(chunk).await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Rolls back the open batch, if any (the stream ended mid-batch).
    pub async fn abort(&mut self) {
        self.copy.abort();
        self.joiner.clear();
        self.txn.abort().await;
    }

    async fn apply_chunk_inner(&mut self, chunk: wire::BatchChunk) -> Result<Option<Committed>> {
        let batch_id = chunk.batch_id;
        if self.switched {
            return Err(Error::AfterSwitchover {
                source_id: self.tables.source_id.clone(),
                batch_id,
            });
        }
        frame::check_chunk(self.txn.open_batch(), self.copy.copying(), &chunk)?;
        if self.txn.open_batch().is_none() {
            self.txn.begin(batch_id).await?;
        }
        if let Some(copy) = chunk.copy {
            self.apply_copy(batch_id, copy).await?;
        }
        let changes = self.join(batch_id, chunk.changes, chunk.last)?;
        let count = changes.iter().map(|c| c.rows() as u64).sum();
        for change in changes {
            self.apply_change(batch_id, change).await?;
        }
        if chunk.last {
            self.txn.send_held(batch_id, &self.tables).await?;
        } else {
            self.txn.send_overflow(batch_id, &self.tables).await?;
        }
        self.txn.count(count);
        if !chunk.last {
            return Ok(None);
        }
        if chunk.epoch != self.epoch {
            return Err(Error::Protocol(format!(
                "batch {batch_id} carries epoch {}, and the stream's is {}",
                chunk.epoch, self.epoch
            )));
        }
        let client = self.txn.settled(batch_id).await?;
        for value in chunk.sequences {
            raise_sequence(client, &self.tables, batch_id, value).await?;
        }
        let repair_errors = self.copy.take_repair_errors();
        let checked =
            check::answer_checks(client, &self.tables, batch_id, &chunk.checks, repair_errors)
                .await?;
        let epoch = match &chunk.switchover {
            Some(switchover) => {
                take_over(client, &self.tables, batch_id, switchover).await?;
                switchover.epoch.max(self.epoch)
            }
            None => self.epoch,
        };
        let closed = self.txn.commit(batch_id, &chunk.cut, epoch).await?;
        self.last_applied = batch_id;
        self.last_cut = chunk.cut;
        self.switched = epoch > self.epoch;
        self.epoch = epoch;
        self.txn.epoch = epoch;
        metrics::batch_applied(
            batch_id,
            closed.took,
            closed.changes,
            pgferry_proto::cut_time(&self.last_cut),
        );
        tracing::debug!(source_id = %self.tables.source_id, batch_id, "applied batch");
        Ok(Some(Committed { batch_id, checked }))
    }

    /// The chunk's changes, rows sent in pieces joined, each checked
    /// against the wire's contract and naming a table the stream announced.
    fn join(
        &mut self,
        batch_id: u64,
        changes: Vec<wire::Change>,
        last: bool,
    ) -> Result<Vec<Change>> {
        let mut whole = Vec::with_capacity(changes.len());
        for change in changes {
            let joined = self
                .joiner
                .push(change)
                .map_err(|source| Error::Wire { batch_id, source })?;
            whole.extend(joined);
        }
        if last && self.joiner.pending() {
            return Err(Error::Protocol(format!(
                "batch {batch_id} ended inside a row sent in pieces"
            )));
        }
        let changes = whole
            .into_iter()
            .map(Change::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Wire { batch_id, source })?;
        if let Some(change) = changes.iter().find(|c| !self.tables.knows(c.table_id)) {
            return Err(Error::UnknownTableId {
                batch_id,
                seq: change.seq,
                table_id: change.table_id,
            });
        }
        Ok(changes)
    }

    /// A piece of a COPY. What came before the copy is applied before it;
    /// an initial copy brings its table to the copy's columns first.
    async fn apply_copy(&mut self, batch_id: u64, copy: wire::CopyData) -> Result<()> {
        if copy.begin {
            self.txn.send_held(batch_id, &self.tables).await?;
        }
        let table_id = copy.table_id;
        let client = self.txn.settled(batch_id).await?;
        let mut replanned = false;
        if copy.begin && copy.repair_keys.is_none() && !copy.columns.is_empty() {
            replanned = self
                .tables
                .take_copy_shape(client, batch_id, table_id, &copy.columns)
                .await?;
        }
        self.copy
            .apply(client, &self.tables, batch_id, copy)
            .await?;
        if replanned {
            self.txn.forget(table_id);
        }
        Ok(())
    }

    /// One change: a schema change is made at once, in order; a row change
    /// joins the window as its steps.
    async fn apply_change(&mut self, batch_id: u64, change: Change) -> Result<()> {
        if let ChangeKind::Schema { change: text } = &change.kind {
            // Rows before it in the old shape, rows after it in the new.
            self.txn.send_held(batch_id, &self.tables).await?;
            let client = self.txn.settled(batch_id).await?;
            self.tables
                .apply_schema_change(client, batch_id, change.seq, change.table_id, text)
                .await?;
            self.txn.forget(change.table_id);
            return Ok(());
        }
        self.tables.check_key(batch_id, &change)?;
        let shape = match self.tables.known_shape(&change) {
            Ok(shape) => shape,
            Err(columns) => {
                let client = self.txn.settled(batch_id).await?;
                self.tables
                    .add_shape(client, batch_id, change.table_id, columns)
                    .await?
            }
        };
        let key_columns = self.tables.plans[&change.table_id]
            .compact_key
            .as_deref()
            .filter(|_| !self.txn.in_order());
        for step in step::steps(change, key_columns.is_some(), shape) {
            self.txn.hold(step, key_columns);
        }
        Ok(())
    }
}

/// Raises a target sequence to at least the source's value, never lowers it.
async fn raise_sequence(
    client: &tokio_postgres::Client,
    tables: &Tables,
    batch_id: u64,
    value: wire::SequenceValue,
) -> Result<()> {
    let Some(oid) = tables.sequence(value.seq_id).ok_or_else(|| {
        Error::Protocol(format!(
            "batch {batch_id}: unknown sequence id {}",
            value.seq_id
        ))
    })?
    else {
        return Ok(());
    };
    client
        .execute(
            "select setval(c, $2) from (select $1::oid::regclass as c) s
             where coalesce(pg_sequence_last_value(c) < $2, true)",
            &[&oid, &value.last_value],
        )
        .await
        .map_err(Error::db("raising a sequence"))?;
    Ok(())
}

/// The take-over a switchover's final batch `batch_id` asks for, in its
/// transaction on `client`, of the tables the switchover names.
async fn take_over(
    client: &tokio_postgres::Client,
    tables: &Tables,
    batch_id: u64,
    switchover: &wire::Switchover,
) -> Result<()> {
    let taken = switchover
        .tables
        .iter()
        .map(|table| {
            Ok(crate::take_over::Taken {
                guarded: tables.named(batch_id, table.table_id)?.guarded(),
                key_columns: tables.key_columns(table.table_id),
                source_schema: &table.source_schema,
                source_table: &table.source_table,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let reverse = crate::take_over::Reverse {
        address: &switchover.reverse_address,
        files: [
            &switchover.tls_ca,
            &switchover.tls_cert,
            &switchover.tls_key,
            &switchover.auth_token_file,
        ],
    };
    crate::take_over::take_over(
        client,
        &tables.source_id,
        &reverse,
        switchover.epoch,
        &taken,
    )
    .await
}
