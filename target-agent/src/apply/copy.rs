//! A table's initial copy inside its batch's transaction: the table is
//! emptied, COPY streams the source's rows straight to the server, and the
//! batch's changes follow once it ends.

use bytes::Bytes;
use futures_util::SinkExt;
use pgferry_proto::wire;

use super::Applier;
use crate::error::{Error, Result};

impl Applier {
    /// A piece of a table's initial copy: `begin` empties the table and
    /// starts COPY, data goes straight to the server, `end` finishes it.
    pub(super) async fn apply_copy(&mut self, batch_id: u64, copy: wire::CopyData) -> Result<()> {
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
        let (_, sink) = self
            .copying
            .as_mut()
            .expect("frame::check_chunk lets copy data through only inside its copy");
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
}
