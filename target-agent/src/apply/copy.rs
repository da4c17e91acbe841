//! COPY inside a batch's transaction: a table's initial copy (the table is
//! emptied, COPY streams the source's rows straight to the server, and the
//! batch's changes follow once it ends), and a repair (the rows of some keys
//! deleted and copied again, after the batch's changes, inside a savepoint
//! of their own).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::SinkExt;
use pgferry_proto::wire;
use tokio_postgres::{Client, CopyInSink};

use super::tables::Tables;
use crate::error::{Error, Result};

/// The batch's COPY in progress, and its repairs that failed.
#[derive(Default)]
pub(super) struct Copier {
    copying: Option<Copying>,
    /// Each failed repair's table and reason, for the batch's Checked
    /// report.
    repair_errors: Vec<String>,
}

/// A COPY in progress.
struct Copying {
    /// The source's table id.
    table_id: u32,
    /// The COPY; none for a repair that failed, whose remaining data is
    /// passed over.
    sink: Option<Pin<Box<CopyInSink<Bytes>>>>,
    /// Whether it is a repair (see `CopyData.repair_keys`).
    repair: bool,
}

/// The savepoint a repair runs in: a repair that fails (a unique value
/// only the target has, a foreign key) is rolled back alone and reported,
/// so the batch's changes, and every other table, go on.
const REPAIR_SAVEPOINT: &str = "pgferry_repair";

impl Copier {
    /// The table whose COPY is streaming, if any.
    pub(super) fn copying(&self) -> Option<u32> {
        self.copying.as_ref().map(|copying| copying.table_id)
    }

    /// The failed repairs' reasons, taken for the batch's report.
    pub(super) fn take_repair_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.repair_errors)
    }

    /// Forgets the COPY in progress (its batch is rolled back): dropping
    /// the sink aborts it.
    pub(super) fn abort(&mut self) {
        self.copying = None;
        self.repair_errors.clear();
    }

    /// A piece of a COPY on the applier's settled session `client`:
    /// `begin` empties the table (or deletes the rows a repair names) and
    /// starts COPY, data goes straight to the server, `end` finishes it.
    pub(super) async fn apply(
        &mut self,
        client: &Client,
        tables: &Tables,
        batch_id: u64,
        copy: wire::CopyData,
    ) -> Result<()> {
        let plan = tables.named(batch_id, copy.table_id)?;
        let name = plan.name.clone();
        let copy_error = |source| Error::Apply {
            batch_id,
            table: name.clone(),
            source,
        };
        if copy.begin {
            let sink = match &copy.repair_keys {
                None => {
                    client
                        .batch_execute(&plan.clear)
                        .await
                        .map_err(copy_error)?;
                    tracing::info!(table = %plan.name, batch_id, "initial copy started");
                    Some(
                        start_copy(client, &plan.copy_in)
                            .await
                            .map_err(copy_error)?,
                    )
                }
                Some(keys) => {
                    let started = async {
                        client
                            .batch_execute(&format!("savepoint {REPAIR_SAVEPOINT}"))
                            .await?;
                        client.execute(&plan.delete, &[keys]).await?;
                        start_copy(client, &plan.copy_in).await
                    };
                    match started.await {
                        Ok(sink) => Some(sink),
                        Err(source) => {
                            self.repair_failed(client, &name, batch_id, source).await?;
                            None
                        }
                    }
                }
            };
            self.copying = Some(Copying {
                table_id: copy.table_id,
                sink,
                repair: copy.repair_keys.is_some(),
            });
        }
        let copying = self
            .copying
            .as_mut()
            .expect("frame::check_chunk lets copy data through only inside its copy");
        let repair = copying.repair;
        let mut sent = Ok(());
        if let Some(sink) = &mut copying.sink
            && !copy.data.is_empty()
        {
            sent = sink.send(Bytes::from(copy.data)).await;
        }
        if copy.end {
            let copying = self.copying.take().expect("copy in progress");
            if let (Ok(()), Some(mut sink)) = (&sent, copying.sink) {
                sent = sink.as_mut().finish().await.map(|rows| {
                    let what = if repair { "repair" } else { "initial copy" };
                    tracing::info!(table = %name, batch_id, rows, what, "copy loaded");
                });
                if repair && sent.is_ok() {
                    let release = format!("release savepoint {REPAIR_SAVEPOINT}");
                    sent = client.batch_execute(&release).await;
                }
            }
        }
        match sent {
            Ok(()) => Ok(()),
            Err(source) if repair => {
                if let Some(copying) = &mut self.copying {
                    copying.sink = None;
                }
                self.repair_failed(client, &name, batch_id, source).await
            }
            Err(source) => Err(copy_error(source)),
        }
    }

    /// Rolls a failed repair back to its savepoint and keeps its reason for
    /// the batch's Checked report.
    async fn repair_failed(
        &mut self,
        client: &Client,
        table: &str,
        batch_id: u64,
        source: tokio_postgres::Error,
    ) -> Result<()> {
        let reason = pgferry_runtime::db::describe_with_key(&source);
        tracing::warn!(%table, batch_id, error = %reason, "repair failed; rolled back alone");
        self.repair_errors.push(format!("{table}: {reason}"));
        client
            .batch_execute(&format!("rollback to savepoint {REPAIR_SAVEPOINT}"))
            .await
            .map_err(Error::db("rolling back a failed repair"))
    }
}

/// Starts `copy_in` (a `COPY ... FROM STDIN`) on `client`.
async fn start_copy(
    client: &Client,
    copy_in: &str,
) -> Result<Pin<Box<CopyInSink<Bytes>>>, tokio_postgres::Error> {
    Ok(Box::pin(client.copy_in::<_, Bytes>(copy_in).await?))
}
