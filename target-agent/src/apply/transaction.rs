//! The open batch's transaction on the applier's session: begun with the
//! check that the batch is the next one, its changes held in a window that
//! drops those a later change overwrites, sent as set-based statements
//! pipelined a few at a time, and committed together with the source's
//! progress. While answers are unread nothing else may use the session
//! (the connection hands answers out in the order sent): the session is
//! reached only through [`Transaction::settled`], which reads them all
//! first.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgferry_runtime::sql::literal;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage, Statement};

use super::compact::Compactor;
use super::retry::{Retries, Retry};
use super::step::{self, Run, RunKind, Step};
use super::tables::Tables;
use crate::error::{Error, Result};
use crate::metrics;

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

/// The batch whose transaction is open.
struct Open {
    batch_id: u64,
    /// When its first message came.
    since: Instant,
    /// Its changes so far.
    changes: u64,
}

/// A batch just committed, for its metrics.
pub(super) struct Closed {
    /// How long its transaction was open.
    pub(super) took: Duration,
    /// Its changes.
    pub(super) changes: u64,
}

/// The applier's session and the batch open on it.
pub(super) struct Transaction {
    /// The applier's own session; the guard lets only its role write.
    client: Arc<Client>,
    /// The source whose progress the transaction moves.
    source_id: String,
    /// Its epoch as this stream knows it: a batch finding another one
    /// recorded (this database was promoted meanwhile) is refused.
    pub(super) epoch: u64,
    open: Option<Open>,
    /// The open batch's progress check, sent with its first statements and
    /// read before any other answer.
    begin_check: Option<InFlight<Vec<SimpleQueryMessage>>>,
    /// Statements sent and not answered yet, oldest first, with the table
    /// each writes (and the key of a change applied alone, see
    /// `send_run`), as its error names them: the server works on one while
    /// the next chunk arrives.
    in_flight: VecDeque<(String, RunKind, InFlight<u64>)>,
    /// Prepared apply statements, per table, run kind and shape.
    statements: HashMap<(u32, RunKind, u32), Statement>,
    /// Batches to apply otherwise when they come again, shared by streams.
    retries: Arc<Retries>,
    /// How the open batch is applied.
    retry: Retry,
    /// The open batch's changes not yet sent, net of those overwritten.
    compactor: Compactor,
}

impl Transaction {
    /// The session `client` of source `source_id`'s applier, with a window
    /// of `compact_window` bytes (see [`Compactor`]).
    pub(super) fn new(
        client: Client,
        (source_id, epoch): (String, u64),
        retries: Arc<Retries>,
        compact_window: usize,
    ) -> Transaction {
        Transaction {
            client: Arc::new(client),
            source_id,
            epoch,
            open: None,
            begin_check: None,
            in_flight: VecDeque::new(),
            statements: HashMap::new(),
            retries,
            retry: Retry::default(),
            compactor: Compactor::new(compact_window),
        }
    }

    /// The batch whose transaction is open, if any.
    pub(super) fn open_batch(&self) -> Option<u64> {
        self.open.as_ref().map(|open| open.batch_id)
    }

    /// Whether the open batch is applied change by change, in the source's
    /// order (see [`Retry::in_order`]).
    pub(super) fn in_order(&self) -> bool {
        self.retry.in_order
    }

    /// Opens the batch's transaction and sends, without waiting, the check
    /// that it is the next one, made under the progress row's lock (which
    /// also keeps a second stream of the same source from applying anything
    /// concurrently); its answer is read first of all.
    pub(super) async fn begin(&mut self, batch_id: u64) -> Result<()> {
        // Set first: whatever fails below, abort() rolls back.
        self.open = Some(Open {
            batch_id,
            since: Instant::now(),
            changes: 0,
        });
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
            "begin; select last_batch, epoch from pgferry.progress where source_id = {} for update",
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

    /// Counts `changes` more changes of the open batch.
    pub(super) fn count(&mut self, changes: u64) {
        if let Some(open) = &mut self.open {
            open.changes += changes;
        }
        metrics::changes_applied(changes as usize);
        metrics::changes_compacted(self.compactor.take_dropped());
    }

    /// Holds a step in the window; `key_columns` (a compacted table's key)
    /// lets a later change of the same row drop it.
    pub(super) fn hold(&mut self, step: Step, key_columns: Option<&[String]>) {
        self.compactor.push(step, key_columns);
    }

    /// Sends the statements of what the window cannot hold any longer.
    pub(super) async fn send_overflow(&mut self, batch_id: u64, tables: &Tables) -> Result<()> {
        let overflow = self.compactor.overflow();
        self.send_steps(batch_id, overflow, tables).await
    }

    /// Sends the statements of every change the window holds, in order.
    pub(super) async fn send_held(&mut self, batch_id: u64, tables: &Tables) -> Result<()> {
        loop {
            let steps = self.compactor.drain(step::RUN_ROWS);
            if steps.is_empty() {
                return Ok(());
            }
            self.send_steps(batch_id, steps, tables).await?;
        }
    }

    /// The session, once every answer of the open batch is read, in order;
    /// the first failure is the batch's error.
    pub(super) async fn settled(&mut self, batch_id: u64) -> Result<&Client> {
        while self.wait_oldest(batch_id).await? {}
        Ok(&self.client)
    }

    /// Forgets a table's prepared statements: its schema changed.
    pub(super) fn forget(&mut self, table_id: u32) {
        self.statements
            .retain(|(table, _, _), _| *table != table_id);
    }

    /// Records the batch as the source's last, with its cut and the
    /// source's epoch (a switchover's final batch raises it), and commits,
    /// in one round trip (this runs for every batch).
    pub(super) async fn commit(&mut self, batch_id: u64, cut: &str, epoch: u64) -> Result<Closed> {
        let sql = format!(
            "update pgferry.progress
                set last_batch = {batch_id}, applied_at = now(), last_cut = {}, epoch = {epoch}
              where source_id = {};
             commit",
            literal(cut),
            literal(&self.source_id)
        );
        self.settled(batch_id)
            .await?
            .batch_execute(&sql)
            .await
            .map_err(Error::db("recording progress and committing a batch"))?;
        if self.retry != Retry::default() {
            self.retries.clear(&self.source_id);
        }
        let open = self.open.take().expect("a batch is open while it commits");
        Ok(Closed {
            took: open.since.elapsed(),
            changes: open.changes,
        })
    }

    /// Rolls back the open batch, if any.
    pub(super) async fn abort(&mut self) {
        // Answers to dropped requests are read and discarded by the
        // connection; prepared statements stay.
        self.begin_check = None;
        self.in_flight.clear();
        self.compactor.clear();
        if let Some(open) = self.open.take()
            && let Err(error) = self.client.batch_execute("rollback").await
        {
            tracing::debug!(batch_id = open.batch_id, error = %error, "rollback failed; the session is gone anyway");
        }
    }

    /// Waits for the oldest unanswered request: the progress check, then
    /// statements in the order sent. Returns false when none was left.
    async fn wait_oldest(&mut self, batch_id: u64) -> Result<bool> {
        if let Some(check) = self.begin_check.take() {
            let messages = check.await.map_err(Error::db("starting a batch"))?;
            let (last, epoch): (u64, u64) = messages
                .iter()
                .find_map(|message| match message {
                    SimpleQueryMessage::Row(row) => {
                        Some((row.get(0)?.parse().ok()?, row.get(1)?.parse().ok()?))
                    }
                    _ => None,
                })
                .ok_or_else(|| {
                    Error::Protocol(format!("no progress row for source {}", self.source_id))
                })?;
            if epoch != self.epoch {
                return Err(Error::EpochBehind {
                    source_id: self.source_id.clone(),
                    source_epoch: self.epoch,
                    recorded: epoch,
                    last_batch: last,
                    last_cut: String::new(),
                });
            }
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
    /// the target marks the batch to be applied with upserts when resent;
    /// another constraint, change by change in the source's order.
    fn run_failed(
        &self,
        batch_id: u64,
        table: String,
        kind: RunKind,
        source: tokio_postgres::Error,
    ) -> Error {
        let mut retry = self.retry;
        if kind == RunKind::Insert && source.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            retry.upserts = true;
        } else if source
            .code()
            .is_some_and(|code| code.code().starts_with("23"))
        {
            retry.in_order = true;
        }
        if retry != self.retry {
            self.retries.mark(&self.source_id, batch_id, retry);
            return Error::ConstraintRetry {
                batch_id,
                table,
                in_order: retry.in_order,
                source,
            };
        }
        Error::Apply {
            batch_id,
            table,
            source,
        }
    }

    /// Sends the statements of `steps`' runs, in order.
    async fn send_steps(&mut self, batch_id: u64, steps: Vec<Step>, tables: &Tables) -> Result<()> {
        let runs = if self.retry.in_order {
            step::runs_in_order(steps)
        } else {
            step::runs(steps)
        };
        for run in runs {
            self.send_run(batch_id, run, tables).await?;
        }
        Ok(())
    }

    /// Sends a run's statement without waiting for its answer, unless
    /// [`MAX_IN_FLIGHT`] are unanswered: then it waits for the oldest.
    async fn send_run(&mut self, batch_id: u64, run: Run, tables: &Tables) -> Result<()> {
        if !run.also.is_empty() {
            return self.truncate_together(batch_id, &run, tables).await;
        }
        let kind = match run.kind {
            RunKind::Insert if self.retry.upserts => RunKind::Upsert,
            kind => kind,
        };
        let key = (run.table_id, kind, run.shape);
        if !self.statements.contains_key(&key) {
            let plan = tables.plan(run.table_id, run.shape);
            let sql = match kind {
                RunKind::Insert => &plan.insert,
                RunKind::Upsert => &plan.upsert,
                RunKind::Delete => &plan.delete,
                RunKind::Truncate => &plan.truncate,
            };
            let statement = self
                .settled(batch_id)
                .await?
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
        let mut table = tables.plan(run.table_id, 0).name.clone();
        // A change applied alone (the batch's retry in the source's order)
        // names its key if it fails, for the operator it will need.
        if self.retry.in_order
            && let [row] = run.rows.as_slice()
            && run.count == 1
            && let Some(key) = pgferry_proto::change::key_of(row, tables.key_columns(run.table_id))
        {
            table.push_str(&format!(", key {key}"));
        }
        let client = Arc::clone(&self.client);
        let params: Vec<String> = match run.kind {
            RunKind::Truncate => Vec::new(),
            _ => vec![json_array(run.rows)],
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

    /// Empties a truncate run's tables in one statement (rare: it is not
    /// prepared).
    async fn truncate_together(&mut self, batch_id: u64, run: &Run, tables: &Tables) -> Result<()> {
        let plans: Vec<_> = std::iter::once(&run.table_id)
            .chain(&run.also)
            .map(|table_id| tables.plan(*table_id, 0))
            .collect();
        // Each as its FROM item: `only` before an ordinary table.
        let relations: Vec<&str> = plans
            .iter()
            .map(|plan| plan.digest.relation.as_str())
            .collect();
        let names: Vec<&str> = plans.iter().map(|plan| plan.name.as_str()).collect();
        self.settled(batch_id)
            .await?
            .batch_execute(&format!("truncate {} cascade", relations.join(", ")))
            .await
            .map_err(|source| Error::Apply {
                batch_id,
                table: names.join(", "),
                source,
            })
    }
}

/// A run's rows as one JSON array. A run of one row (the only kind a row
/// of hundreds of MB makes) is bracketed in place, not copied.
fn json_array(mut rows: Vec<String>) -> String {
    if rows.len() == 1 {
        let mut row = rows.pop().expect("one row");
        row.reserve_exact(2);
        row.insert(0, '[');
        row.push(']');
        return row;
    }
    format!("[{}]", rows.join(","))
}
