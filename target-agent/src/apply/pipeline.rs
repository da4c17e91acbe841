//! Statement pipelining: a run's statement is sent without waiting for
//! its answer, up to a few in flight, and the answers are read back in the
//! order sent; the first failure is the batch's.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::{SimpleQueryMessage, Statement};

use super::Applier;
use crate::error::{Error, Result};
use crate::schema::TablePlan;
use crate::step::{self, Run, RunKind, Step};

/// A request sent to the server whose answer is still to be read.
pub(super) type InFlight<T> =
    Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send>>;

/// Statements in flight before the applier waits for the oldest: enough to
/// keep the server busy, few enough to bound memory (each holds a chunk).
const MAX_IN_FLIGHT: usize = 4;

/// Polls a request once, which sends it (tokio-postgres writes a request
/// when first polled and pipelines the ones not yet answered); returns its
/// result if that came at once.
pub(super) async fn send<T>(request: &mut InFlight<T>) -> Option<Result<T, tokio_postgres::Error>> {
    match futures_util::poll!(request.as_mut()) {
        std::task::Poll::Ready(result) => Some(result),
        std::task::Poll::Pending => None,
    }
}

/// What the pipeline holds between requests.
#[derive(Default)]
pub(super) struct Pipeline {
    /// The open batch's progress check, sent with its first statements and
    /// read before its commit.
    pub(super) begin_check: Option<InFlight<Vec<SimpleQueryMessage>>>,
    /// Statements sent and not answered yet, oldest first, with the table
    /// each writes (and the key of a change applied alone, see
    /// `apply_run`), as its error names them: the server works on one while
    /// the next chunk arrives.
    in_flight: VecDeque<(String, RunKind, InFlight<u64>)>,
    /// Prepared apply statements, per table, run kind and shape.
    statements: HashMap<(u32, RunKind, u32), Statement>,
}

impl Pipeline {
    /// Forgets the requests of a batch rolled back (the connection reads
    /// and drops their answers); prepared statements stay.
    pub(super) fn clear(&mut self) {
        self.begin_check = None;
        self.in_flight.clear();
    }

    /// Forgets a table's prepared statements: its schema changed. Shape
    /// numbers are reused once [`super::Shapes::forget`] ran.
    pub(super) fn forget(&mut self, table_id: u32) {
        self.statements
            .retain(|(table, _, _), _| *table != table_id);
    }
}

impl Applier {
    /// Waits for every answer of the open batch, in order; the first
    /// failure is the batch's error.
    pub(super) async fn settle(&mut self, batch_id: u64) -> Result<()> {
        while self.wait_oldest(batch_id).await? {}
        Ok(())
    }

    /// Waits for the oldest unanswered request: the progress check, then
    /// statements in the order sent. Answers must be read in that order (the
    /// connection hands them out in order and stops while one is unread).
    /// Returns false when none was left.
    async fn wait_oldest(&mut self, batch_id: u64) -> Result<bool> {
        if let Some(check) = self.pipeline.begin_check.take() {
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
        let Some((table, kind, statement)) = self.pipeline.in_flight.pop_front() else {
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

    /// Sends the statements of every change the window holds, in order.
    pub(super) async fn send_held(&mut self, batch_id: u64) -> Result<()> {
        loop {
            let steps = self.window.drain(step::RUN_ROWS);
            if steps.is_empty() {
                return Ok(());
            }
            self.send_steps(batch_id, steps).await?;
        }
    }

    /// Sends the statements of `steps`' runs, in order.
    pub(super) async fn send_steps(&mut self, batch_id: u64, steps: Vec<Step>) -> Result<()> {
        let runs = if self.retry.in_order {
            step::runs_in_order(steps)
        } else {
            step::runs(steps)
        };
        for run in runs {
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
            RunKind::Insert if self.retry.upserts => RunKind::Upsert,
            kind => kind,
        };
        let key = (run.table_id, kind, run.shape);
        if !self.pipeline.statements.contains_key(&key) {
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
            self.pipeline.statements.insert(key, statement);
        }
        let statement = self.pipeline.statements[&key].clone();
        let mut table = self.plans[&run.table_id].name.clone();
        // A change applied alone (the batch's retry in the source's order)
        // names its key if it fails, for the operator it will need.
        if self.retry.in_order
            && let [row] = run.rows.as_slice()
            && run.count == 1
            && let Some(key) =
                pgferry_proto::change::key_of(row, &self.announced[&run.table_id].0.key_columns)
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
        self.pipeline.in_flight.push_back((table, kind, request));
        if self.pipeline.in_flight.len() > MAX_IN_FLIGHT {
            self.wait_oldest(batch_id).await?;
        }
        Ok(())
    }

    /// The plan of a table's rows of shape `shape` (see [`Step::shape`]).
    fn plan(&self, table_id: u32, shape: u32) -> &TablePlan {
        match shape {
            0 => &self.plans[&table_id],
            _ => &self.shapes.plans[&(table_id, shape)],
        }
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
            .batch_execute(&format!("truncate only {} cascade", quoted.join(", ")))
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
