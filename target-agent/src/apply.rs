//! Applying batches: each batch in one transaction that also moves the
//! source's progress record, so a batch is applied exactly once whatever
//! crashes when. Changes are applied set-based: a run of consecutive changes
//! of one kind to one table becomes one statement, runs in source order.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::SinkExt;

use pgferry_proto::change::{Change, ChangeKind};
use pgferry_proto::sql::literal;
use pgferry_proto::wire;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, CopyInSink, SimpleQueryMessage, Statement};

use crate::compact::{self, Compactor};
use crate::error::{Error, Result};
use crate::schema::TablePlan;
use crate::{frame, guard, metrics, schema};

/// What a run of changes does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// Insert rows the source inserted, by a plain INSERT: their keys are
    /// not on the target, whose only writer is the applier. Should one be
    /// (a row someone wrote by hand), the batch fails once and is applied
    /// again with these runs as upserts (see [`InsertConflicts`]).
    Insert,
    /// Insert or update rows by key.
    Upsert,
    /// Delete rows by key.
    Delete,
    /// Empty the table.
    Truncate,
}

/// Consecutive changes of one kind to one table, applied as one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The source's table id.
    pub table_id: u32,
    /// What the run does.
    pub kind: RunKind,
    /// The columns its rows carry (see [`Step::shape`]).
    pub shape: u32,
    /// Rows (upsert) or keys (delete) as JSON objects, in source order; an
    /// element holds a statement's rows as comma-separated objects, so the
    /// run's JSON array is its elements joined by commas.
    pub rows: Vec<String>,
    /// How many rows the elements hold.
    pub count: u32,
    /// The other tables a truncate run empties in the same statement: the
    /// truncates next to each other in the batch, since PostgreSQL empties
    /// a table a foreign key references only together with the referencing
    /// one (the source may have truncated both in one statement).
    pub also: Vec<u32>,
}

/// One change as a run takes it, in source order: a row or key object, or
/// (for a table that is not compacted) a statement's rows as
/// comma-separated objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The source's table id.
    pub table_id: u32,
    /// What the change does.
    pub kind: RunKind,
    /// The row or key text; empty for a truncate.
    pub rows: String,
    /// How many rows `rows` holds.
    pub count: u32,
    /// The columns the rows carry: 0, those the stream announced; another
    /// number, a column list met since (see [`crate::shape`]). Keys and
    /// truncates are always 0.
    pub shape: u32,
}

/// A change's row text as elements of a JSON array: a statement's array
/// loses its brackets (checked on receipt, see [`Change`]).
fn array_elements(text: String, statement_rows: u32) -> String {
    if statement_rows == 0 {
        return text;
    }
    let inner = text.len() - 1;
    let mut text = text;
    text.truncate(inner);
    text.remove(0);
    text
}

/// The steps a change stands for. For a compacted table (`split`) a
/// statement's array gives one step per row. An update that changed the key
/// deletes the old key first.
pub fn steps(change: Change, split: bool, shape: u32) -> Vec<Step> {
    let table_id = change.table_id;
    let statement_rows = change.statement_rows;
    let mut out = Vec::new();
    let mut add = |kind: RunKind, text: String, statement_rows: u32| {
        let shape = if kind == RunKind::Delete { 0 } else { shape };
        let step = |rows: String, count: u32| Step {
            table_id,
            kind,
            rows,
            count,
            shape,
        };
        let rows = match (split && statement_rows > 0).then(|| compact::elements(&text)) {
            Some(Some(rows)) => rows,
            _ => {
                let count = statement_rows.max(1);
                out.push(step(array_elements(text, statement_rows), count));
                return;
            }
        };
        out.extend(rows.into_iter().map(|row| step(row.to_string(), 1)));
    };
    match change.kind {
        ChangeKind::Insert { new_row } => add(RunKind::Insert, new_row, statement_rows),
        ChangeKind::Update { old_key, new_row } => {
            if let Some(old_key) = old_key {
                add(RunKind::Delete, old_key, 0);
            }
            add(RunKind::Upsert, new_row, statement_rows);
        }
        ChangeKind::Delete { old_key } => add(RunKind::Delete, old_key, statement_rows),
        ChangeKind::Truncate => out.push(Step {
            table_id,
            kind: RunKind::Truncate,
            rows: String::new(),
            count: 1,
            shape: 0,
        }),
    }
    out
}

/// Rows in one apply statement before a run is cut: statements big enough
/// that their fixed cost is small, small enough to bound memory.
const RUN_ROWS: u32 = 1000;

/// Groups steps into runs, keeping their order. Inserts and updates of a
/// table share a run, which is an insert run only while it holds nothing
/// but inserts.
pub fn runs(steps: impl IntoIterator<Item = Step>) -> Vec<Run> {
    use RunKind::{Delete, Insert, Upsert};
    let mut runs: Vec<Run> = Vec::new();
    for step in steps {
        // An empty array adds no element (and no stray comma).
        let row = Some(step.rows).filter(|row| !row.is_empty());
        match runs.last_mut() {
            Some(run)
                if run.table_id == step.table_id
                    && run.shape == step.shape
                    && run.count < RUN_ROWS
                    && matches!(
                        (run.kind, step.kind),
                        (Insert | Upsert, Insert | Upsert) | (Delete, Delete)
                    ) =>
            {
                if step.kind == Upsert {
                    run.kind = Upsert;
                }
                run.rows.extend(row);
                run.count += step.count;
            }
            Some(run) if run.kind == RunKind::Truncate && step.kind == RunKind::Truncate => {
                if run.table_id != step.table_id && !run.also.contains(&step.table_id) {
                    run.also.push(step.table_id);
                }
            }
            _ => runs.push(Run {
                table_id: step.table_id,
                kind: step.kind,
                shape: step.shape,
                rows: row.into_iter().collect(),
                count: step.count,
                also: Vec::new(),
            }),
        }
    }
    runs
}

/// Batches, per source, whose plain inserts met a key already on the
/// target: a row the source never wrote there. Such a batch fails once
/// (rolled back whole) and, sent again, is applied with upserts.
#[derive(Debug, Default)]
pub struct InsertConflicts(std::sync::Mutex<HashMap<String, u64>>);

impl InsertConflicts {
    fn mark(&self, source_id: &str, batch_id: u64) {
        self.lock().insert(source_id.to_string(), batch_id);
    }

    fn marked(&self, source_id: &str, batch_id: u64) -> bool {
        self.lock().get(source_id) == Some(&batch_id)
    }

    fn clear(&self, source_id: &str) {
        self.lock().remove(source_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // The map stays consistent whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request sent to the server whose answer is still to be read.
type InFlight<T> = Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send>>;

/// Statements in flight before the applier waits for the oldest: enough to
/// keep the server busy, few enough to bound memory (each holds a chunk).
const MAX_IN_FLIGHT: usize = 4;

/// Polls a request once, which sends it (tokio-postgres writes a request
/// when first polled and pipelines the ones not yet answered); returns its
/// result if that came at once.
async fn send<T>(request: &mut InFlight<T>) -> Option<Result<T, tokio_postgres::Error>> {
    match futures_util::poll!(request.as_mut()) {
        std::task::Poll::Ready(result) => Some(result),
        std::task::Poll::Pending => None,
    }
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
    /// Other column lists rows carried, by table and sorted columns: their
    /// shape numbers (see [`Step::shape`]) and checked plans.
    shapes: HashMap<(u32, Vec<String>), u32>,
    /// Plans of those shapes, by table and shape.
    shaped: HashMap<(u32, u32), TablePlan>,
    /// Whether the server has MERGE (PostgreSQL 15 or newer).
    merge: bool,
    /// Prepared apply statements, per table, run kind and shape.
    statements: HashMap<(u32, RunKind, u32), Statement>,
    /// Target sequences (regclass oids) by the source's sequence id.
    sequences: HashMap<u32, u32>,
    /// The initial copy in progress: table id and the COPY sink.
    copying: Option<(u32, Pin<Box<CopyInSink<Bytes>>>)>,
    /// The batch whose transaction is open, if any.
    open_batch: Option<u64>,
    /// The open batch's progress check, sent with its first statements and
    /// read before its commit.
    begin_check: Option<InFlight<Vec<SimpleQueryMessage>>>,
    /// Statements sent and not answered yet, oldest first, with the table
    /// each writes: the server works on one while the next chunk arrives.
    in_flight: VecDeque<(String, RunKind, InFlight<u64>)>,
    /// Batches to apply with upserts for their inserts, shared by streams.
    conflicts: Arc<InsertConflicts>,
    /// Whether the open batch is one of them.
    inserts_as_upserts: bool,
    /// The open batch's changes not yet sent, net of those overwritten.
    window: Compactor,
    /// The last batch committed for this source.
    last_applied: u64,
    /// Its cut, as the source sent it (`BatchChunk.cut`; empty if unknown).
    last_cut: String,
}

impl Applier {
    /// Checks every announced table, guards it, and reads the source's
    /// progress. Nothing is written to a replicated table here. Each batch's
    /// changes pass a window of `compact_window` bytes that drops those a
    /// later change of the same row overwrites (see [`crate::compact`]).
    pub async fn start(
        client: Client,
        hello: &wire::Hello,
        conflicts: Arc<InsertConflicts>,
        compact_window: usize,
    ) -> Result<Applier> {
        if !pgferry_proto::install::is_current(&client, crate::MIGRATIONS).await? {
            return Err(Error::NotInstalled);
        }
        let applier: String = client
            .query_one("select session_user::text", &[])
            .await
            .map_err(Error::db("reading the applier role"))?
            .get(0);
        // COPY data arrives in these text forms (see the source's copy).
        // Batches commit asynchronously, as native subscriptions do: the
        // source deletes a batch only once `durable` says it is on disk.
        // Every apply statement finds rows by key: no sequential scan and
        // no hash or merge join, even where statistics from when the table
        // was empty make one look cheap (the batch may have filled the
        // table since).
        client
            .batch_execute(
                "set datestyle = 'ISO, MDY'; set intervalstyle = 'postgres';
                 set synchronous_commit = off; set enable_seqscan = off;
                 set enable_hashjoin = off; set enable_mergejoin = off",
            )
            .await
            .map_err(Error::db("setting up the applier session"))?;
        let merge: bool = client
            .query_one(
                "select current_setting('server_version_num')::int >= 150000",
                &[],
            )
            .await
            .map_err(Error::db("reading the server version"))?
            .get(0);
        let mut plans = HashMap::new();
        for table in &hello.tables {
            let plan = schema::check(&client, table, merge).await?;
            guard::ensure(&client, &plan, &applier).await?;
            plans.insert(table.table_id, plan);
        }
        guard::track(
            &client,
            &hello.source_id,
            &plans.values().collect::<Vec<_>>(),
        )
        .await?;
        let mut sequences = HashMap::new();
        for sequence in &hello.sequences {
            sequences.insert(
                sequence.seq_id,
                schema::check_sequence(&client, sequence).await?,
            );
        }
        client
            .execute(
                "insert into pgferry.progress (source_id) values ($1) on conflict do nothing",
                &[&hello.source_id],
            )
            .await
            .map_err(Error::db("registering the source"))?;
        let progress = client
            .query_one(
                "select last_batch, coalesce(last_cut, '') from pgferry.progress
                 where source_id = $1",
                &[&hello.source_id],
            )
            .await
            .map_err(Error::db("reading progress"))?;
        let (last, last_cut): (i64, String) = (progress.get(0), progress.get(1));
        let announced = hello
            .tables
            .iter()
            .map(|table| {
                let mut columns: Vec<String> =
                    table.columns.iter().map(|c| c.name.clone()).collect();
                columns.sort_unstable();
                (table.table_id, (table.clone(), columns))
            })
            .collect();
        Ok(Applier {
            client: Arc::new(client),
            source_id: hello.source_id.clone(),
            plans,
            announced,
            shapes: HashMap::new(),
            shaped: HashMap::new(),
            merge,
            statements: HashMap::new(),
            sequences,
            copying: None,
            open_batch: None,
            begin_check: None,
            in_flight: VecDeque::new(),
            conflicts,
            inserts_as_upserts: false,
            window: Compactor::new(compact_window),
            last_applied: last as u64,
            last_cut,
        })
    }

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

    /// Applies one chunk; returns the batch id when the chunk closed its
    /// batch and the batch is committed. On error the batch is rolled back.
    pub async fn apply_chunk(&mut self, chunk: wire::BatchChunk) -> Result<Option<u64>> {
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
        self.begin_check = None;
        self.in_flight.clear();
        self.window.clear();
        if let Some(batch_id) = self.open_batch.take()
            && let Err(error) = self.client.batch_execute("rollback").await
        {
            tracing::debug!(batch_id, error = %error, "rollback failed; the session is gone anyway");
        }
    }

    async fn apply_chunk_inner(&mut self, chunk: wire::BatchChunk) -> Result<Option<u64>> {
        let batch_id = chunk.batch_id;
        match self.open_batch {
            Some(open) if open == batch_id => {}
            Some(open) => {
                return Err(Error::Protocol(format!(
                    "batch {batch_id} started before batch {open} ended"
                )));
            }
            None => self.begin(batch_id).await?,
        }
        if let Some(copy) = chunk.copy {
            if copy.begin {
                // What came before the copy is applied before it.
                self.send_held(batch_id).await?;
            }
            self.apply_copy(batch_id, copy).await?;
        }
        if let Some((table_id, _)) = &self.copying
            && !chunk.changes.is_empty()
        {
            // The session is in COPY until the copy ends: a statement sent
            // now would wait behind it for ever, holding the table's lock.
            return Err(Error::Protocol(format!(
                "batch {batch_id}: changes inside the initial copy of table id {table_id}"
            )));
        }
        let changes = chunk
            .changes
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
        for change in &changes {
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
        }
        for change in changes {
            let shape = self.shape(batch_id, &change).await?;
            let key_columns = self.plans[&change.table_id].compact_key.as_deref();
            for step in steps(change, key_columns.is_some(), shape) {
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
        if !chunk.last {
            return Ok(None);
        }
        if let Some((table_id, _)) = &self.copying {
            return Err(Error::Protocol(format!(
                "batch {batch_id} ended inside the initial copy of table id {table_id}"
            )));
        }
        self.settle(batch_id).await?;
        for value in chunk.sequences {
            self.raise_sequence(batch_id, value).await?;
        }
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
        if self.inserts_as_upserts {
            self.conflicts.clear(&self.source_id);
        }
        metrics::batch_applied(batch_id);
        tracing::debug!(source_id = %self.source_id, batch_id, "applied batch");
        Ok(Some(batch_id))
    }

    /// Opens the batch's transaction and sends, without waiting, the check
    /// that it is the next one, made under the progress row's lock (which
    /// also keeps a second stream of the same source from applying anything
    /// concurrently). [`Applier::settle`] reads the answer before the commit.
    async fn begin(&mut self, batch_id: u64) -> Result<()> {
        // Set first: whatever fails below, abort() rolls back.
        self.open_batch = Some(batch_id);
        self.inserts_as_upserts = self.conflicts.marked(&self.source_id, batch_id);
        if self.inserts_as_upserts {
            tracing::info!(source_id = %self.source_id, batch_id, "applying the batch's inserts as upserts");
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
        self.begin_check = Some(check);
        Ok(())
    }

    /// Waits for every answer of the open batch, in order; the first
    /// failure is the batch's error.
    async fn settle(&mut self, batch_id: u64) -> Result<()> {
        while self.wait_oldest(batch_id).await? {}
        Ok(())
    }

    /// Waits for the oldest unanswered request: the progress check, then
    /// statements in the order sent. Answers must be read in that order (the
    /// connection hands them out in order and stops while one is unread).
    /// Returns false when none was left.
    async fn wait_oldest(&mut self, batch_id: u64) -> Result<bool> {
        if let Some(check) = self.begin_check.take() {
            let messages = check.await.map_err(Error::db("starting a batch"))?;
            let last: u64 = messages
                .iter()
                .find_map(|message| match message {
                    SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
                    _ => None,
                })
                .ok_or_else(|| {
                    Error::Protocol(format!("no progress row for source {}", self.source_id))
                })?;
            let expected = last + 1;
            if batch_id != expected {
                return Err(Error::OutOfSequence {
                    source_id: self.source_id.clone(),
                    got: batch_id,
                    expected,
                });
            }
            return Ok(true);
        }
        let Some((table, kind, statement)) = self.in_flight.pop_front() else {
            return Ok(false);
        };
        statement
            .await
            .map_err(|source| self.run_failed(batch_id, table, kind, source))?;
        Ok(true)
    }

    /// The error of a run's statement. A plain insert that met its key on
    /// the target marks the batch to be applied with upserts when resent.
    fn run_failed(
        &self,
        batch_id: u64,
        table: String,
        kind: RunKind,
        source: tokio_postgres::Error,
    ) -> Error {
        if kind == RunKind::Insert && source.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            self.conflicts.mark(&self.source_id, batch_id);
            return Error::InsertConflict {
                batch_id,
                table,
                source,
            };
        }
        Error::Apply {
            batch_id,
            table,
            source,
        }
    }

    /// A piece of a table's initial copy: `begin` empties the table and
    /// starts COPY, data goes straight to the server, `end` finishes it.
    async fn apply_copy(&mut self, batch_id: u64, copy: wire::CopyData) -> Result<()> {
        if copy.begin {
            // COPY is not pipelined: start it on a settled session.
            self.settle(batch_id).await?;
        }
        let plan = self
            .plans
            .get(&copy.table_id)
            .ok_or(Error::UnknownTableId {
                batch_id,
                seq: 0,
                table_id: copy.table_id,
            })?;
        let copy_error = |source| Error::Apply {
            batch_id,
            table: plan.name.clone(),
            source,
        };
        if copy.begin {
            if self.copying.is_some() {
                return Err(Error::Protocol(format!(
                    "batch {batch_id}: a copy began inside another"
                )));
            }
            self.client
                .batch_execute(&plan.clear)
                .await
                .map_err(copy_error)?;
            let sink = self
                .client
                .copy_in::<_, Bytes>(plan.copy_in.as_str())
                .await
                .map_err(copy_error)?;
            tracing::info!(table = %plan.name, batch_id, "initial copy started");
            self.copying = Some((copy.table_id, Box::pin(sink)));
        }
        let Some((table_id, sink)) = self.copying.as_mut() else {
            return Err(Error::Protocol(format!(
                "batch {batch_id}: copy data without a copy"
            )));
        };
        if *table_id != copy.table_id {
            return Err(Error::Protocol(format!(
                "batch {batch_id}: copy data for another table"
            )));
        }
        if !copy.data.is_empty() {
            sink.send(Bytes::from(copy.data))
                .await
                .map_err(copy_error)?;
        }
        if copy.end {
            let (_, mut sink) = self.copying.take().expect("copy in progress");
            let rows = sink.as_mut().finish().await.map_err(copy_error)?;
            tracing::info!(table = %plan.name, batch_id, rows, "initial copy loaded");
        }
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

    /// Sends the statements of every change the window holds, in order.
    async fn send_held(&mut self, batch_id: u64) -> Result<()> {
        loop {
            let steps = self.window.drain(RUN_ROWS);
            if steps.is_empty() {
                return Ok(());
            }
            self.send_steps(batch_id, steps).await?;
        }
    }

    /// Sends the statements of `steps`' runs, in order.
    async fn send_steps(&mut self, batch_id: u64, steps: Vec<Step>) -> Result<()> {
        for run in runs(steps) {
            self.apply_run(batch_id, run).await?;
        }
        Ok(())
    }

    /// Sends a run's statement without waiting for its answer, unless
    /// [`MAX_IN_FLIGHT`] are unanswered: then it waits for the oldest.
    async fn apply_run(&mut self, batch_id: u64, run: Run) -> Result<()> {
        if !run.also.is_empty() {
            return self.truncate_together(batch_id, &run).await;
        }
        let kind = match run.kind {
            RunKind::Insert if self.inserts_as_upserts => RunKind::Upsert,
            kind => kind,
        };
        let key = (run.table_id, kind, run.shape);
        if !self.statements.contains_key(&key) {
            // Answers are read in order: settle before waiting on a prepare.
            self.settle(batch_id).await?;
            let plan = self.plan(run.table_id, run.shape);
            let sql = match kind {
                RunKind::Insert => &plan.insert,
                RunKind::Upsert => &plan.upsert,
                RunKind::Delete => &plan.delete,
                RunKind::Truncate => &plan.truncate,
            };
            let statement = self
                .client
                .prepare(sql)
                .await
                .map_err(|source| Error::Apply {
                    batch_id,
                    table: plan.name.clone(),
                    source,
                })?;
            self.statements.insert(key, statement);
        }
        let statement = self.statements[&key].clone();
        let table = self.plans[&run.table_id].name.clone();
        let client = Arc::clone(&self.client);
        let params: Vec<String> = match run.kind {
            RunKind::Truncate => Vec::new(),
            _ => vec![format!("[{}]", run.rows.join(","))],
        };
        let mut request: InFlight<u64> =
            Box::pin(async move { client.execute_raw(&statement, params).await });
        if let Some(result) = send(&mut request).await {
            result.map_err(|source| self.run_failed(batch_id, table, kind, source))?;
            return Ok(());
        }
        self.in_flight.push_back((table, kind, request));
        if self.in_flight.len() > MAX_IN_FLIGHT {
            self.wait_oldest(batch_id).await?;
        }
        Ok(())
    }

    /// The plan of a table's rows of shape `shape` (see [`Step::shape`]).
    fn plan(&self, table_id: u32, shape: u32) -> &TablePlan {
        match shape {
            0 => &self.plans[&table_id],
            _ => &self.shaped[&(table_id, shape)],
        }
    }

    /// The shape of a change's rows (see [`Step::shape`]): 0 unless its
    /// rows carry other columns than the stream announced; a column list
    /// met for the first time is checked against the target table, which
    /// must have every column the rows carry.
    async fn shape(&mut self, batch_id: u64, change: &Change) -> Result<u32> {
        let row = match &change.kind {
            ChangeKind::Insert { new_row } | ChangeKind::Update { new_row, .. } => new_row,
            ChangeKind::Delete { .. } | ChangeKind::Truncate => return Ok(0),
        };
        let (table, announced) = &self.announced[&change.table_id];
        let Some(mut columns) = crate::shape::columns(row) else {
            return Ok(0);
        };
        // The target computes those itself (or has no such column).
        columns.retain(|c| !table.generated_columns.contains(c));
        if columns == *announced {
            return Ok(0);
        }
        let key = (change.table_id, columns);
        if let Some(&shape) = self.shapes.get(&key) {
            return Ok(shape);
        }
        let table = table.clone();
        // Answers are read in order: settle before the check's queries.
        self.settle(batch_id).await?;
        let mut shaped = table.clone();
        shaped.create_if_missing = false;
        // Columns the stream announced keep the source's type; for others
        // the target's is taken (the source's is not known here), so the
        // check finds only what the target lacks.
        let target_types =
            schema::column_types(&self.client, &self.plans[&change.table_id]).await?;
        shaped.columns = key
            .1
            .iter()
            .map(|name| {
                table
                    .columns
                    .iter()
                    .find(|c| c.name == *name)
                    .cloned()
                    .unwrap_or_else(|| wire::Column {
                        name: name.clone(),
                        sql_type: target_types.get(name).cloned().unwrap_or_default(),
                        not_null: false,
                    })
            })
            .collect();
        let plan = schema::check(&self.client, &shaped, self.merge).await?;
        let shape = self.shapes.len() as u32 + 1;
        tracing::info!(
            table = %plan.name,
            batch_id,
            columns = %key.1.join(", "),
            "rows carry other columns than announced (the source table changed)"
        );
        self.shapes.insert(key, shape);
        self.shaped.insert((change.table_id, shape), plan);
        Ok(shape)
    }

    /// Empties a truncate run's tables in one statement (rare: it is not
    /// prepared, and runs on a settled session).
    async fn truncate_together(&mut self, batch_id: u64, run: &Run) -> Result<()> {
        self.settle(batch_id).await?;
        let plans: Vec<&TablePlan> = std::iter::once(&run.table_id)
            .chain(&run.also)
            .map(|table_id| &self.plans[table_id])
            .collect();
        let quoted: Vec<&str> = plans.iter().map(|plan| plan.quoted.as_str()).collect();
        let names: Vec<&str> = plans.iter().map(|plan| plan.name.as_str()).collect();
        self.client
            .batch_execute(&format!("truncate only {}", quoted.join(", ")))
            .await
            .map_err(|source| Error::Apply {
                batch_id,
                table: names.join(", "),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn change() -> impl Strategy<Value = Change> {
        let kind = prop_oneof![
            "[a-c]".prop_map(|new_row| ChangeKind::Insert { new_row }),
            (proptest::option::of("[a-c]"), "[a-c]")
                .prop_map(|(old_key, new_row)| ChangeKind::Update { old_key, new_row }),
            "[a-c]".prop_map(|old_key| ChangeKind::Delete { old_key }),
            Just(ChangeKind::Truncate),
        ];
        (any::<u64>(), 0u32..3, kind).prop_map(|(seq, table_id, kind)| Change {
            seq,
            table_id,
            statement_rows: 0,
            kind,
        })
    }

    /// The operations a change stands for, one per row, in order.
    fn operations(changes: &[Change]) -> Vec<(u32, RunKind, Option<String>)> {
        let mut out = Vec::new();
        for c in changes {
            match &c.kind {
                ChangeKind::Insert { new_row } => {
                    out.push((c.table_id, RunKind::Insert, Some(new_row.clone())))
                }
                ChangeKind::Update { old_key, new_row } => {
                    if let Some(k) = old_key {
                        out.push((c.table_id, RunKind::Delete, Some(k.clone())));
                    }
                    out.push((c.table_id, RunKind::Upsert, Some(new_row.clone())));
                }
                ChangeKind::Delete { old_key } => {
                    out.push((c.table_id, RunKind::Delete, Some(old_key.clone())))
                }
                ChangeKind::Truncate => out.push((c.table_id, RunKind::Truncate, None)),
            }
        }
        out
    }

    /// The runs of changes to tables that are not compacted.
    fn runs_of(changes: impl IntoIterator<Item = Change>) -> Vec<Run> {
        runs(changes.into_iter().flat_map(|c| super::steps(c, false, 0)))
    }

    proptest! {
        #[test]
        fn runs_keep_every_step_in_order(changes in proptest::collection::vec(change(), 0..40)) {
            let expected = operations(&changes);
            let grouped = runs_of(changes);
            let flattened: Vec<(u32, RunKind, Option<String>)> = grouped
                .iter()
                .flat_map(|r| -> Vec<(u32, RunKind, Option<String>)> {
                    if r.kind == RunKind::Truncate {
                        std::iter::once(&r.table_id).chain(&r.also).map(|t| (*t, r.kind, None)).collect()
                    } else {
                        r.rows.iter().map(|row| (r.table_id, r.kind, Some(row.clone()))).collect()
                    }
                })
                .collect();
            // Truncates next to each other become one statement over the
            // set of their tables.
            let collapsed = |steps: Vec<(u32, RunKind, Option<String>)>| {
                let mut out: Vec<(Vec<u32>, RunKind, Option<String>)> = Vec::new();
                for (t, k, r) in steps {
                    match out.last_mut() {
                        Some((tables, RunKind::Truncate, _)) if k == RunKind::Truncate => {
                            if !tables.contains(&t) {
                                tables.push(t);
                                tables.sort();
                            }
                        }
                        _ => out.push((vec![t], k, r)),
                    }
                }
                out
            };
            let (flattened, expected) = (collapsed(flattened), collapsed(expected));
            // An insert run holds only inserts; an upsert run may hold both.
            let writes = |kind| if kind == RunKind::Insert { RunKind::Upsert } else { kind };
            for ((_, run_kind, _), (_, step_kind, _)) in flattened.iter().zip(&expected) {
                prop_assert!(*run_kind != RunKind::Insert || *step_kind == RunKind::Insert);
            }
            let normalized = |steps: Vec<(Vec<u32>, RunKind, Option<String>)>| {
                steps.into_iter().map(|(t, k, r)| (t, writes(k), r)).collect::<Vec<_>>()
            };
            prop_assert_eq!(normalized(flattened), normalized(expected));
            for pair in grouped.windows(2) {
                let merged = pair[0].table_id == pair[1].table_id
                    && writes(pair[0].kind) == writes(pair[1].kind);
                prop_assert!(!merged || pair[0].kind == RunKind::Truncate);
            }
        }
    }

    #[test]
    fn a_key_change_deletes_the_old_key_first() {
        let update = Change {
            seq: 1,
            table_id: 7,
            statement_rows: 0,
            kind: ChangeKind::Update {
                old_key: Some("{\"id\":1}".into()),
                new_row: "{\"id\":2}".into(),
            },
        };
        let insert = Change {
            seq: 2,
            table_id: 7,
            statement_rows: 0,
            kind: ChangeKind::Insert {
                new_row: "{\"id\":3}".into(),
            },
        };
        assert_eq!(
            runs_of([update, insert]),
            vec![
                Run {
                    table_id: 7,
                    kind: RunKind::Delete,
                    shape: 0,
                    rows: vec!["{\"id\":1}".into()],
                    count: 1,
                    also: Vec::new(),
                },
                Run {
                    table_id: 7,
                    kind: RunKind::Upsert,
                    shape: 0,
                    rows: vec!["{\"id\":2}".into(), "{\"id\":3}".into()],
                    count: 2,
                    also: Vec::new(),
                },
            ]
        );
    }

    #[test]
    fn a_statements_rows_join_the_run_as_elements_of_its_array() {
        let statement = |seq, new_row: &str, statement_rows| Change {
            seq,
            table_id: 7,
            statement_rows,
            kind: ChangeKind::Insert {
                new_row: new_row.into(),
            },
        };
        let grouped = runs_of([
            statement(1, "{\"id\":1}", 0),
            statement(2, "[{\"id\":2}, \n {\"id\":3}]", 2),
            statement(3, "[]", 1),
            statement(4, "[{\"id\":4}]", 1),
        ]);
        assert_eq!(grouped.len(), 1);
        assert_eq!(
            format!("[{}]", grouped[0].rows.join(",")),
            "[{\"id\":1},{\"id\":2}, \n {\"id\":3},{\"id\":4}]"
        );
    }

    #[test]
    fn a_compacted_tables_statement_gives_a_step_per_row() {
        let delete = Change {
            seq: 1,
            table_id: 7,
            statement_rows: 2,
            kind: ChangeKind::Delete {
                old_key: r#"[{"id" : 1}, {"id" : 2}]"#.into(),
            },
        };
        let got: Vec<_> = super::steps(delete, true, 0)
            .into_iter()
            .map(|step| (step.rows, step.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (r#"{"id" : 1}"#.to_string(), 1),
                (r#"{"id" : 2}"#.to_string(), 1),
            ]
        );
    }
}
