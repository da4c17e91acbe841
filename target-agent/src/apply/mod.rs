//! Applying batches: each batch in one transaction that also moves the
//! source's progress record, so a batch is applied exactly once whatever
//! crashes when. Changes are applied set-based: a run of consecutive changes
//! of one kind to one table becomes one statement, runs in source order.
//! Here: the applier and a batch's transaction (begin, changes, sequences,
//! progress, commit or roll back); admission, pipelining, the initial copy
//! and schema drift have a module each below.

use std::collections::HashMap;
use std::sync::Arc;

use pgferry_proto::change::{Change, ChangeKind, Joiner};
use pgferry_proto::wire;
use pgferry_runtime::sql::literal;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::compact::Compactor;
use crate::error::{Error, Result};
use crate::schema::TablePlan;
use crate::step;
use crate::{frame, metrics};
use drift::Shapes;
use pipeline::{InFlight, Pipeline, send};

mod admit;
mod check;
mod copy;
mod ddl;
mod drift;
mod pipeline;

/// How a batch that failed once on a constraint is applied when it comes
/// again. Net changes and set-based runs save work, but a constraint can
/// see their order: a unique value swapped through a temporary one, a
/// foreign key between tables, a key someone wrote behind the guard's back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The batch's plain inserts become upserts: one met a key already on
    /// the target, a row the source never wrote there.
    pub upserts: bool,
    /// Every change is applied by a statement of its own, in the source's
    /// order, none dropped as overwritten: the order the source's own
    /// constraints passed in.
    pub in_order: bool,
}

/// The batch, per source, to apply otherwise when it comes again (see
/// [`Retry`]), shared by a source's streams. Such a batch fails once
/// (rolled back whole) for each way it is retried.
#[derive(Debug, Default)]
pub struct Retries(std::sync::Mutex<HashMap<String, (u64, Retry)>>);

impl Retries {
    /// The way `batch_id` is applied now.
    fn of(&self, source_id: &str, batch_id: u64) -> Retry {
        match self.lock().get(source_id) {
            Some(&(batch, retry)) if batch == batch_id => retry,
            _ => Retry::default(),
        }
    }

    fn mark(&self, source_id: &str, batch_id: u64, retry: Retry) {
        self.lock().insert(source_id.to_string(), (batch_id, retry));
    }

    fn clear(&self, source_id: &str) {
        self.lock().remove(source_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Retry)>> {
        // The map stays consistent whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A batch committed.
pub struct Committed {
    /// The batch.
    pub batch_id: u64,
    /// The answers to its checks, if it asked any or a repair failed.
    pub checked: Option<wire::Checked>,
}

/// The applier: the one session that writes a source's tables on the target.
pub struct Applier {
    /// The applier's own session; the guard lets only its role write.
    client: Arc<Client>,
    /// The source whose progress this applier moves.
    source_id: String,
    /// Checked tables by the source's table id.
    plans: HashMap<u32, TablePlan>,
    /// The tables as the stream announced them, and their columns sorted.
    announced: HashMap<u32, (wire::TableSchema, Vec<String>)>,
    /// Other column lists rows carried since the stream began (see
    /// [`drift`]).
    shapes: Shapes,
    /// Whether the server has MERGE (PostgreSQL 15 or newer).
    merge: bool,
    /// Target sequences (regclass oids) by the source's sequence id.
    sequences: HashMap<u32, u32>,
    /// The COPY in progress (an initial copy or a repair).
    copying: Option<copy::Copying>,
    /// The open batch's repairs that failed (see `copy`).
    repair_errors: Vec<String>,
    /// The batch whose transaction is open, if any.
    open_batch: Option<u64>,
    /// Requests sent and not answered yet, and the prepared statements
    /// (see [`pipeline`]).
    pipeline: Pipeline,
    /// Batches to apply otherwise when they come again, shared by streams.
    retries: Arc<Retries>,
    /// How the open batch is applied.
    retry: Retry,
    /// The open batch's changes not yet sent, net of those overwritten.
    window: Compactor,
    /// A row arriving in pieces (one larger than a message), joined across
    /// the batch's chunks.
    joiner: Joiner,
    /// The last batch committed for this source.
    last_applied: u64,
    /// Its cut, as the source sent it (`BatchChunk.cut`; empty if unknown).
    last_cut: String,
    /// When the open batch's first message came, and its changes so far.
    open_since: Option<(std::time::Instant, u64)>,
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

    /// The batch whose transaction is open, if any.
    pub fn open_batch(&self) -> Option<u64> {
        self.open_batch
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
        // Dropping the sink aborts the COPY; answers to dropped requests
        // are read and discarded by the connection.
        self.copying = None;
        self.repair_errors.clear();
        self.pipeline.clear();
        self.window.clear();
        self.joiner.clear();
        if let Some(batch_id) = self.open_batch.take()
            && let Err(error) = self.client.batch_execute("rollback").await
        {
            tracing::debug!(batch_id, error = %error, "rollback failed; the session is gone anyway");
        }
    }

    async fn apply_chunk_inner(&mut self, chunk: wire::BatchChunk) -> Result<Option<Committed>> {
        let batch_id = chunk.batch_id;
        frame::check_chunk(
            self.open_batch,
            self.copying.as_ref().map(|copying| copying.table_id),
            &chunk,
        )?;
        if self.open_batch.is_none() {
            self.begin(batch_id).await?;
        }
        if let Some(copy) = chunk.copy {
            if copy.begin {
                // What came before the copy is applied before it.
                self.send_held(batch_id).await?;
            }
            self.apply_copy(batch_id, copy).await?;
        }
        let mut whole = Vec::with_capacity(chunk.changes.len());
        for change in chunk.changes {
            let joined = self
                .joiner
                .push(change)
                .map_err(|source| Error::Wire { batch_id, source })?;
            whole.extend(joined);
        }
        if chunk.last && self.joiner.pending() {
            return Err(Error::Protocol(format!(
                "batch {batch_id} ended inside a row sent in pieces"
            )));
        }
        let changes = whole
            .into_iter()
            .map(Change::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| Error::Wire { batch_id, source })?;
        let count = changes.iter().map(|c| c.rows() as usize).sum();
        if let Some(change) = changes
            .iter()
            .find(|c| !self.plans.contains_key(&c.table_id))
        {
            return Err(Error::UnknownTableId {
                batch_id,
                seq: change.seq,
                table_id: change.table_id,
            });
        }
        for change in changes {
            if let ChangeKind::Schema { change: text } = &change.kind {
                // Rows before it in the old shape, rows after it in the new.
                self.send_held(batch_id).await?;
                self.settle(batch_id).await?;
                self.apply_schema_change(batch_id, change.seq, change.table_id, text)
                    .await?;
                continue;
            }
            // Checked here, not before the loop: a schema change before it
            // in the batch may have renamed a key column.
            let old_key = match &change.kind {
                ChangeKind::Delete { old_key } => Some((old_key, change.statement_rows)),
                ChangeKind::Update {
                    old_key: Some(old_key),
                    ..
                } => Some((old_key, 0)),
                _ => None,
            };
            let key_columns = &self.announced[&change.table_id].0.key_columns;
            if let Some(problem) =
                old_key.and_then(|(key, rows)| frame::key_problem(key, rows, key_columns))
            {
                return Err(Error::BadKey {
                    batch_id,
                    seq: change.seq,
                    table: self.plans[&change.table_id].name.clone(),
                    problem,
                });
            }
            let shape = self.shape(batch_id, &change).await?;
            let key_columns = self.plans[&change.table_id]
                .compact_key
                .as_deref()
                .filter(|_| !self.retry.in_order);
            for step in step::steps(change, key_columns.is_some(), shape) {
                self.window.push(step, key_columns);
            }
        }
        if chunk.last {
            self.send_held(batch_id).await?;
        } else {
            let overflow = self.window.overflow();
            self.send_steps(batch_id, overflow).await?;
        }
        metrics::changes_compacted(self.window.take_dropped());
        metrics::changes_applied(count);
        if let Some((_, changes)) = &mut self.open_since {
            *changes += count as u64;
        }
        if !chunk.last {
            return Ok(None);
        }
        self.settle(batch_id).await?;
        for value in chunk.sequences {
            self.raise_sequence(batch_id, value).await?;
        }
        if let Some(check) = chunk
            .checks
            .iter()
            .find(|c| !self.plans.contains_key(&c.table_id))
        {
            return Err(Error::UnknownTableId {
                batch_id,
                seq: 0,
                table_id: check.table_id,
            });
        }
        let checked = self.answer_checks(batch_id, &chunk.checks).await?;
        // Progress and commit in one round trip: this runs for every batch.
        self.client
            .batch_execute(&format!(
                "update pgferry.progress
                    set last_batch = {batch_id}, applied_at = now(), last_cut = {}
                  where source_id = {};
                 commit",
                literal(&chunk.cut),
                literal(&self.source_id)
            ))
            .await
            .map_err(Error::db("recording progress and committing a batch"))?;
        self.open_batch = None;
        self.last_applied = batch_id;
        self.last_cut = chunk.cut;
        if self.retry != Retry::default() {
            self.retries.clear(&self.source_id);
        }
        if let Some((since, changes)) = self.open_since.take() {
            metrics::batch_applied(
                batch_id,
                since.elapsed(),
                changes,
                pgferry_proto::cut_time(&self.last_cut),
            );
        }
        tracing::debug!(source_id = %self.source_id, batch_id, "applied batch");
        Ok(Some(Committed { batch_id, checked }))
    }

    /// Opens the batch's transaction and sends, without waiting, the check
    /// that it is the next one, made under the progress row's lock (which
    /// also keeps a second stream of the same source from applying anything
    /// concurrently). [`Applier::settle`] reads the answer before the commit.
    async fn begin(&mut self, batch_id: u64) -> Result<()> {
        // Set first: whatever fails below, abort() rolls back.
        self.open_batch = Some(batch_id);
        self.open_since = Some((std::time::Instant::now(), 0));
        self.retry = self.retries.of(&self.source_id, batch_id);
        if self.retry != Retry::default() {
            tracing::info!(
                source_id = %self.source_id,
                batch_id,
                upserts = self.retry.upserts,
                in_order = self.retry.in_order,
                "applying a batch again after a constraint failed"
            );
        }
        let client = Arc::clone(&self.client);
        let sql = format!(
            "begin; select last_batch from pgferry.progress where source_id = {} for update",
            literal(&self.source_id)
        );
        let mut check: InFlight<Vec<SimpleQueryMessage>> =
            Box::pin(async move { client.simple_query(&sql).await });
        if let Some(Err(source)) = send(&mut check).await {
            return Err(Error::db("starting a batch")(source));
        }
        self.pipeline.begin_check = Some(check);
        Ok(())
    }

    /// Raises a target sequence to at least the source's value, never lowers it.
    async fn raise_sequence(&mut self, batch_id: u64, value: wire::SequenceValue) -> Result<()> {
        let oid = *self.sequences.get(&value.seq_id).ok_or_else(|| {
            Error::Protocol(format!(
                "batch {batch_id}: unknown sequence id {}",
                value.seq_id
            ))
        })?;
        self.client
            .execute(
                "select setval(c, $2) from (select $1::oid::regclass as c) s
                 where coalesce(pg_sequence_last_value(c) < $2, true)",
                &[&oid, &value.last_value],
            )
            .await
            .map_err(Error::db("raising a sequence"))?;
        Ok(())
    }
}
