//! `source-agent status`: what is replicated, how much waits, how far the
//! target is, and the last error, read from the source database alone (so it
//! works while the agent or the target is down).

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
    /// The target `add-target` recorded, `name (address)`; none when `run`
    /// is given its target by flags.
    pub target: Option<String>,
    /// Every registered table.
    pub tables: Vec<TableStatus>,
    /// Every replicated sequence.
    pub sequences: Vec<SequenceStatus>,
    /// Captured changes not yet acknowledged by the target.
    pub pending_changes: i64,
    /// Age in seconds of the oldest pending change (0 when none).
    pub oldest_pending_age_secs: f64,
    /// Newest batch cut.
    pub newest_batch: i64,
    /// Newest batch the target acknowledged.
    pub acked_batch: i64,
    /// When it did.
    pub acked_at: Option<String>,
    /// The error that last stopped a session, cleared by the next ack.
    pub last_error: Option<String>,
    /// When that error happened.
    pub last_error_at: Option<String>,
}

/// One registered table.
#[derive(Debug, Serialize)]
pub struct TableStatus {
    /// schema.table on the source.
    pub source: String,
    /// schema.table on the target.
    pub target: String,
    /// Key columns the target matches rows on.
    pub key: Vec<String>,
    /// `copy_pending` (waits for its copy batch), `copying` (the copy is
    /// on its way), `replicating`, or `removed` (changes cut before removal
    /// still ship).
    pub state: String,
    /// Its pending changes.
    pub pending_changes: i64,
    /// Replicated columns (absent: all).
    pub columns: Option<Vec<String>>,
    /// Row filter (absent: all rows).
    pub row_filter: Option<String>,
    /// Initial copy progress, while and after it runs.
    pub copy: Option<CopyProgress>,
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
    /// schema.sequence on the source.
    pub source: String,
    /// schema.sequence on the target.
    pub target: String,
}

/// Reads the status.
pub async fn read(client: &Client) -> Result<Status> {
    crate::capture::ensure_installed(client).await?;
    let row = client
        .query_one(
            "select pending_changes, oldest_pending_age_secs, newest_batch, acked_batch,
                    acked_at::text, last_error, last_error_at::text, capture, target
             from pgferry.status",
            &[],
        )
        .await
        .map_err(Error::db("reading status"))?;
    let tables = client
        .query(
            "select source, target, key_columns, state, pending_changes, columns, row_filter,
                    copy_rows, copy_rows_estimate, copy_bytes, copy_bytes_estimate, copy_batch,
                    copied_at::text
             from pgferry.table_status order by source",
            &[],
        )
        .await
        .map_err(Error::db("reading status"))?
        .into_iter()
        .map(|r| TableStatus {
            source: r.get(0),
            target: r.get(1),
            key: r.get(2),
            state: r.get(3),
            pending_changes: r.get(4),
            columns: r.get(5),
            row_filter: r.get(6),
            copy: r.get::<_, Option<i64>>(7).map(|rows| CopyProgress {
                rows,
                rows_estimate: r.get::<_, Option<i64>>(8).unwrap_or(0),
                bytes: r.get::<_, Option<i64>>(9).unwrap_or(0),
                bytes_estimate: r.get::<_, Option<i64>>(10).unwrap_or(0),
                batch: r.get(11),
                copied_at: r.get(12),
            }),
        })
        .collect();
    let sequences = client
        .query(
            "select source_schema || '.' || source_name, target_schema || '.' || target_name
             from pgferry.sequences order by 1",
            &[],
        )
        .await
        .map_err(Error::db("reading status"))?
        .into_iter()
        .map(|r| SequenceStatus {
            source: r.get(0),
            target: r.get(1),
        })
        .collect();
    Ok(Status {
        capture: row.get(7),
        target: row.get(8),
        tables,
        sequences,
        pending_changes: row.get(0),
        oldest_pending_age_secs: row.get(1),
        newest_batch: row.get(2),
        acked_batch: row.get(3),
        acked_at: row.get(4),
        last_error: row.get(5),
        last_error_at: row.get(6),
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "capture:          {}", self.capture)?;
        if let Some(target) = &self.target {
            writeln!(f, "target:           {target}")?;
        }
        writeln!(f, "pending changes:  {}", self.pending_changes)?;
        writeln!(f, "oldest pending:   {:.1}s", self.oldest_pending_age_secs)?;
        writeln!(
            f,
            "batches:          newest cut {}, acked {} ({})",
            self.newest_batch,
            self.acked_batch,
            self.acked_at.as_deref().unwrap_or("never")
        )?;
        match &self.last_error {
            Some(error) => writeln!(
                f,
                "last error:       {} ({})",
                error,
                self.last_error_at.as_deref().unwrap_or("")
            )?,
            None => writeln!(f, "last error:       none")?,
        }
        writeln!(f, "tables:")?;
        for t in &self.tables {
            write!(
                f,
                "  {} -> {}  key ({})  {}  pending {}",
                t.source,
                t.target,
                t.key.join(", "),
                t.state,
                t.pending_changes
            )?;
            if let Some(c) = &t.copy {
                write!(
                    f,
                    "  copy {}/{} rows, {}/{} MB",
                    c.rows,
                    c.rows_estimate,
                    c.bytes / 1_000_000,
                    c.bytes_estimate / 1_000_000
                )?;
            }
            writeln!(f)?;
        }
        for s in &self.sequences {
            writeln!(f, "  sequence {} -> {}", s.source, s.target)?;
        }
        Ok(())
    }
}

/// Records the error that stopped replication, for `status`.
async fn record_error_on(client: &Client, error: &str) -> Result<()> {
    client
        .execute(
            "update pgferry.target set last_error = $1, last_error_at = now()",
            &[&error],
        )
        .await
        .map_err(Error::db("recording the last error"))?;
    Ok(())
}

/// Records the error that stopped a replication session where `status`
/// shows it, on a session of its own (the failed one may be gone).
pub async fn record_error(db_config: &tokio_postgres::Config, error: &Error) {
    let text = match error.recovery() {
        Recovery::Operator => format!("needs an operator: {error}"),
        Recovery::Retry | Recovery::Stop => error.to_string(),
    };
    let recorded = match pgferry_runtime::db::connect(db_config).await {
        Ok(client) => record_error_on(&client, &text).await,
        Err(err) => Err(Error::Connect(err)),
    };
    if let Err(err) = recorded {
        tracing::warn!(error = %err, "could not record the error in the source database");
    }
}
