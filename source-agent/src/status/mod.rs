//! `source-agent status`: what is replicated, how much waits, how far the
//! target is, and the last error, read from the source database alone (so it
//! works while the agent or the target is down).

pub mod delay;
pub mod watch;

use pgferry_runtime::recovery::Recovery;
use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// Replication state as `status` prints it.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Which functions the capture triggers call: `compiled` (extension
    /// pgferry_capture) or `plpgsql` (see `install --capture`).
    pub capture: String,
    /// Whether the DDL watch runs (event triggers, which `install` creates
    /// where it runs as a superuser): without it an ALTER TABLE of a table
    /// captured per row needs `add-table` again, and nothing refuses
    /// disabling capture (docs/reference.md, "The DDL watch").
    pub ddl_watch: bool,
    /// Captured changes some target has not acknowledged yet.
    pub pending_changes: i64,
    /// Age in seconds of the oldest of them (0 when none).
    pub oldest_pending_age_secs: f64,
    /// Every target, with its progress.
    pub targets: Vec<TargetStatus>,
    /// Every registered table, a row per target it goes to.
    pub tables: Vec<TableStatus>,
    /// Every replicated sequence, a row per target it goes to.
    pub sequences: Vec<SequenceStatus>,
}

/// One target (a row of the `pgferry.status` view).
#[derive(Debug, Serialize)]
pub struct TargetStatus {
    /// Its name (`default`: the unnamed target `run --target` streams to).
    pub name: String,
    /// Its recorded address (none for `default`).
    pub address: Option<String>,
    /// Changes of its tables it has not acknowledged.
    pub pending_changes: i64,
    /// Age in seconds of the oldest of them (0 when none).
    pub oldest_pending_age_secs: f64,
    /// Its newest batch cut.
    pub newest_batch: i64,
    /// Its newest batch acknowledged.
    pub acked_batch: i64,
    /// When it was.
    pub acked_at: Option<String>,
    /// Seconds since its oldest unacknowledged batch was cut (0 when none).
    pub delay_secs: f64,
    /// The error that last stopped its session, cleared by its next ack.
    pub last_error: Option<String>,
    /// When that error happened.
    pub last_error_at: Option<String>,
    /// Its switchover (`source-agent switchover`): the new epoch, when the
    /// tables were fenced and how far it got.
    pub switchover: Option<String>,
}

/// One table's registration for one target.
#[derive(Debug, Serialize)]
pub struct TableStatus {
    /// The target's name.
    pub target: String,
    /// schema.table on the source.
    pub source: String,
    /// schema.table on the target.
    pub target_table: String,
    /// Key columns the target matches rows on.
    pub key: Vec<String>,
    /// `copy_pending` (waits for its copy batch), `copying` (the copy is
    /// on its way), `replicating`, `diverged` (see `diverged`) or
    /// `removed`.
    pub state: String,
    /// Its changes the target has not acknowledged.
    pub pending_changes: i64,
    /// Replicated columns (absent: all).
    pub columns: Option<Vec<String>>,
    /// Row filter (absent: all rows).
    pub row_filter: Option<String>,
    /// Initial copy progress, while and after it runs.
    pub copy: Option<CopyProgress>,
    /// Why and since when the target's copy misses changes, until
    /// `add-table` (or `repair`) copies it again.
    pub diverged: Option<Divergence>,
    /// Its last `verify` or `repair`.
    pub verify: Option<LastVerify>,
}

/// The last `verify` (or `repair`) of a table on a target.
#[derive(Debug, Serialize)]
pub struct LastVerify {
    /// When it ended.
    pub at: String,
    /// Rows it compared.
    pub rows: i64,
    /// Rows that differed (after the repair, for `repair`).
    pub differences: i64,
    /// When `repair` last ran.
    pub repaired_at: Option<String>,
    /// Rows it rewrote then.
    pub repaired_rows: Option<i64>,
}

/// A table whose target copy misses changes.
#[derive(Debug, Serialize)]
pub struct Divergence {
    /// Since when.
    pub at: String,
    /// Why: its capture was found switched off, or it was set aside.
    pub reason: String,
}

/// How far a table's initial copy got.
#[derive(Debug, Serialize)]
pub struct CopyProgress {
    /// Rows read and sent so far.
    pub rows: i64,
    /// Estimated rows in all (the planner's estimate).
    pub rows_estimate: i64,
    /// Bytes of COPY data sent so far.
    pub bytes: i64,
    /// Estimated bytes in all (the table's size on disk).
    pub bytes_estimate: i64,
    /// The batch that carries the copy.
    pub batch: Option<i64>,
    /// When the target committed it.
    pub copied_at: Option<String>,
}

/// One replicated sequence.
#[derive(Debug, Serialize)]
pub struct SequenceStatus {
    /// The target's name.
    pub target: String,
    /// schema.sequence on the source.
    pub source: String,
    /// schema.sequence on the target (for a table's sequence, the target
    /// keeps instead the one its table's column takes its default from,
    /// if any).
    pub target_sequence: String,
    /// The table whose column takes its default from it, when it came with
    /// that table.
    pub table: Option<String>,
}

/// Reads the status.
pub async fn read(client: &Client) -> Result<Status> {
    crate::capture::ensure_installed(client).await?;
    let queue = client
        .query_one(
            "select coalesce(sum(coalesce(statement_rows, 1)), 0)::bigint,
                    coalesce(extract(epoch from now() - min(captured_at))::float8, 0),
                    case when exists (select from pg_extension where extname = $1)
                         then 'compiled' else 'plpgsql' end
             from pgferry.queue",
            &[&crate::capture::EXTENSION],
        )
        .await
        .map_err(Error::db("reading status"))?;
    let targets = client
        .query(
            "select target, address, pending_changes, oldest_pending_age_secs, newest_batch,
                    acked_batch, acked_at::text, delay_secs, last_error, last_error_at::text,
                    (select format('to epoch %s, fenced at %s: %s', w.epoch, w.fenced_at,
                                   case when w.done_at is not null
                                        then format('done at %s, final batch %s', w.done_at, w.final_batch)
                                        when w.final_batch is not null
                                        then format('final batch %s on its way', w.final_batch)
                                        else 'final batch not cut yet' end)
                     from pgferry.switchovers w join pgferry.targets g using (target_id)
                     where g.name = s.target)
             from pgferry.status s order by target",
            &[],
        )
        .await
        .map_err(Error::db("reading status"))?
        .into_iter()
        .map(|r| TargetStatus {
            name: r.get(0),
            address: r.get(1),
            pending_changes: r.get(2),
            oldest_pending_age_secs: r.get(3),
            newest_batch: r.get(4),
            acked_batch: r.get(5),
            acked_at: r.get(6),
            delay_secs: r.get(7),
            last_error: r.get(8),
            last_error_at: r.get(9),
            switchover: r.get(10),
        })
        .collect();
    let tables = client
        .query(
            "select target, source, target_table, key_columns, state, pending_changes, columns,
                    row_filter, copy_rows, copy_rows_estimate, copy_bytes, copy_bytes_estimate,
                    copy_batch, copied_at::text, diverged_at::text, diverged_reason,
                    verified_at::text, verify_rows, verify_differences, repaired_at::text,
                    repaired_rows
             from pgferry.table_status order by source, target",
            &[],
        )
        .await
        .map_err(Error::db("reading status"))?
        .into_iter()
        .map(|r| TableStatus {
            target: r.get(0),
            source: r.get(1),
            target_table: r.get(2),
            key: r.get(3),
            state: r.get(4),
            pending_changes: r.get(5),
            columns: r.get(6),
            row_filter: r.get(7),
            copy: r.get::<_, Option<i64>>(8).map(|rows| CopyProgress {
                rows,
                rows_estimate: r.get::<_, Option<i64>>(9).unwrap_or(0),
                bytes: r.get::<_, Option<i64>>(10).unwrap_or(0),
                bytes_estimate: r.get::<_, Option<i64>>(11).unwrap_or(0),
                batch: r.get(12),
                copied_at: r.get(13),
            }),
            diverged: r.get::<_, Option<String>>(14).map(|at| Divergence {
                at,
                reason: r.get::<_, Option<String>>(15).unwrap_or_default(),
            }),
            verify: r.get::<_, Option<String>>(16).map(|at| LastVerify {
                at,
                rows: r.get::<_, Option<i64>>(17).unwrap_or(0),
                differences: r.get::<_, Option<i64>>(18).unwrap_or(0),
                repaired_at: r.get(19),
                repaired_rows: r.get(20),
            }),
        })
        .collect();
    let sequences = client
        .query(
            "select g.name, s.source_schema || '.' || s.source_name,
                    s.target_schema || '.' || s.target_name,
                    t.source_schema || '.' || t.source_name
             from pgferry.sequences s join pgferry.targets g using (target_id)
             left join pgferry.tables t on t.table_id = s.table_id
             order by 2, 1",
            &[],
        )
        .await
        .map_err(Error::db("reading status"))?
        .into_iter()
        .map(|r| SequenceStatus {
            target: r.get(0),
            source: r.get(1),
            target_sequence: r.get(2),
            table: r.get(3),
        })
        .collect();
    Ok(Status {
        capture: queue.get(2),
        ddl_watch: crate::capture::watches_ddl(client).await?,
        pending_changes: queue.get(0),
        oldest_pending_age_secs: queue.get(1),
        targets,
        tables,
        sequences,
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "capture:          {}", self.capture)?;
        let watch = if self.ddl_watch {
            "on"
        } else {
            "off (install as a superuser to refuse disabling capture and follow ALTER TABLE)"
        };
        writeln!(f, "ddl watch:        {watch}")?;
        writeln!(f, "pending changes:  {}", self.pending_changes)?;
        writeln!(f, "oldest pending:   {:.1}s", self.oldest_pending_age_secs)?;
        for t in &self.targets {
            writeln!(
                f,
                "target {} ({}):",
                t.name,
                t.address.as_deref().unwrap_or("address from run --target")
            )?;
            writeln!(
                f,
                "  pending {} (oldest {:.1}s), delay {:.1}s",
                t.pending_changes, t.oldest_pending_age_secs, t.delay_secs
            )?;
            writeln!(
                f,
                "  batches: newest cut {}, acked {} ({})",
                t.newest_batch,
                t.acked_batch,
                t.acked_at.as_deref().unwrap_or("never")
            )?;
            match &t.last_error {
                Some(error) => writeln!(
                    f,
                    "  last error: {} ({})",
                    error,
                    t.last_error_at.as_deref().unwrap_or("")
                )?,
                None => writeln!(f, "  last error: none")?,
            }
            if let Some(switchover) = &t.switchover {
                writeln!(f, "  switchover {switchover}")?;
            }
            for table in self.tables.iter().filter(|table| table.target == t.name) {
                write!(
                    f,
                    "  {} -> {}  key ({})  {}  pending {}",
                    table.source,
                    table.target_table,
                    table.key.join(", "),
                    table.state,
                    table.pending_changes
                )?;
                if let Some(c) = &table.copy {
                    write!(
                        f,
                        "  copy {}/{} rows, {}/{} MB",
                        c.rows,
                        c.rows_estimate,
                        c.bytes / 1_000_000,
                        c.bytes_estimate / 1_000_000
                    )?;
                }
                if let Some(d) = &table.diverged {
                    write!(
                        f,
                        "  since {}: {} (repair or add-table brings it back)",
                        d.at, d.reason
                    )?;
                }
                if let Some(v) = &table.verify {
                    write!(
                        f,
                        "  verified {}: {} rows, {} differences",
                        v.at, v.rows, v.differences
                    )?;
                }
                writeln!(f)?;
            }
            for s in self.sequences.iter().filter(|s| s.target == t.name) {
                write!(f, "  sequence {} -> {}", s.source, s.target_sequence)?;
                match &s.table {
                    Some(table) => writeln!(f, " ({table}'s default)")?,
                    None => writeln!(f)?,
                }
            }
        }
        Ok(())
    }
}

/// Records the error that stopped replication to a target, for `status`.
async fn record_error_on(client: &Client, target_id: i32, error: &str) -> Result<()> {
    client
        .execute(
            "update pgferry.targets set last_error = $2, last_error_at = now()
             where target_id = $1",
            &[&target_id, &error],
        )
        .await
        .map_err(Error::db("recording the last error"))?;
    Ok(())
}

/// Records the error that stopped a replication session where `status`
/// shows it, on a session of its own (the failed one may be gone).
pub async fn record_error(db_config: &tokio_postgres::Config, target_id: i32, error: &Error) {
    let text = match error.recovery() {
        Recovery::Operator => format!("needs an operator: {error}"),
        Recovery::Retry | Recovery::Stop => error.to_string(),
    };
    let recorded = match pgferry_runtime::db::connect(db_config).await {
        Ok(client) => record_error_on(&client, target_id, &text).await,
        Err(err) => Err(Error::Connect(err)),
    };
    if let Err(err) = recorded {
        tracing::warn!(error = %err, "could not record the error in the source database");
    }
}
