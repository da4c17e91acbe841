//! The gRPC service: one `Replicate` stream per source. The hello is checked
//! before the call is answered, so a bad source gets its error as the call's
//! status; then chunks are applied in order and each committed batch acked.

use std::sync::Arc;
use std::time::Duration;

use pgferry_proto::PROTOCOL_VERSION;
use pgferry_proto::wire::{self, replication_server::Replication};
use pgferry_runtime::db;
use tokio::sync::{mpsc, watch};
use tokio_postgres::Config;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::apply::{Applier, InsertConflicts};
use crate::auth::Gate;
use crate::durable;
use crate::error::Error;
use crate::metrics;

/// The replication service.
pub struct ReplicationService {
    /// How the applier sessions connect.
    pub db_config: Config,
    /// Stops every stream at shutdown, between chunks.
    pub cancel: CancellationToken,
    /// What a peer must show before its hello is read.
    pub gate: Gate,
    /// Batches to apply with upserts when resent, shared by all streams.
    pub conflicts: Arc<InsertConflicts>,
    /// Bytes of a batch held back to drop overwritten changes.
    pub compact_window: usize,
    /// How long an open batch may wait for its next chunk (see
    /// `--batch-idle-timeout`).
    pub batch_idle_timeout: Duration,
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    type ReplicateStream = ReceiverStream<Result<wire::TargetMessage, Status>>;

    async fn replicate(
        &self,
        request: Request<Streaming<wire::SourceMessage>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        let admitted = self.gate.admit(&request)?;
        let peer = admitted.peer;
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(wire::SourceMessage {
                kind: Some(wire::source_message::Kind::Hello(hello)),
            }) => hello,
            _ => return Err(Error::Protocol("the first message must be hello".into()).into()),
        };
        admitted.check_source_id(&hello.source_id)?;
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(Error::ProtocolVersion {
                got: hello.protocol_version,
                speaks: PROTOCOL_VERSION,
            }
            .into());
        }
        let client = db::connect(&self.db_config).await.map_err(Error::Connect)?;
        let applier = Applier::start(
            client,
            &hello,
            Arc::clone(&self.conflicts),
            self.compact_window,
        )
        .await
        .inspect_err(|err| {
            tracing::warn!(source_id = %hello.source_id, error = %err, "refused a source");
        })?;
        let flusher = durable::Flusher::connect(&self.db_config, &hello.source_id).await?;
        // The source deletes what Ready reports applied: the progress just
        // read may be an asynchronous commit still on its way to disk.
        flusher.flush().await?;
        tracing::info!(
            source_id = %hello.source_id,
            peer = ?peer,
            tables = hello.tables.len(),
            last_applied = applier.last_applied(),
            "source connected"
        );
        let (out, out_rx) = mpsc::channel(16);
        let ready = wire::TargetMessage {
            kind: Some(wire::target_message::Kind::Ready(wire::Ready {
                last_applied_batch: applier.last_applied(),
                last_applied_cut: applier.last_cut().to_owned(),
            })),
        };
        out.send(Ok(ready)).await.ok();
        let (applied_tx, applied_rx) = watch::channel(applier.last_applied());
        tokio::spawn(durable::report(flusher, applied_rx, out.clone()));
        tokio::spawn(serve_stream(
            applier,
            inbound,
            out,
            applied_tx,
            (self.cancel.clone(), self.batch_idle_timeout),
            hello.source_id,
        ));
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}

/// Applies chunks until the source closes the stream, an error, or shutdown,
/// reporting each batch applied on `out` and on `applied_tx` (for `durable`).
/// A batch left open longer than `idle_timeout` without a chunk is rolled
/// back and the stream ended: its transaction holds the locks of the rows it
/// wrote, which every other source's batches touching them would wait on.
async fn serve_stream(
    mut applier: Applier,
    mut inbound: Streaming<wire::SourceMessage>,
    out: mpsc::Sender<Result<wire::TargetMessage, Status>>,
    applied_tx: watch::Sender<u64>,
    (cancel, idle_timeout): (CancellationToken, Duration),
    source_id: String,
) {
    loop {
        let open = applier.open_batch();
        let idle = async move {
            match open {
                Some(batch_id) => {
                    tokio::time::sleep(idle_timeout).await;
                    batch_id
                }
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            batch_id = idle => {
                metrics::apply_failed();
                let err = Error::BatchIdle { batch_id, waited: idle_timeout };
                tracing::warn!(source_id = %source_id, error = %err, "batch rolled back");
                out.send(Err(err.into())).await.ok();
                break;
            }
            message = inbound.message() => message,
        };
        let chunk = match message {
            Ok(Some(wire::SourceMessage {
                kind: Some(wire::source_message::Kind::Chunk(chunk)),
            })) => chunk,
            Ok(Some(_)) => {
                let err = Error::Protocol("expected a batch chunk".into());
                out.send(Err(err.into())).await.ok();
                break;
            }
            Ok(None) => break,
            Err(status) => {
                // Oversized or undecodable messages land here too: tell the
                // source why (if it is still there) rather than just hang up.
                tracing::warn!(source_id = %source_id, code = ?status.code(), message = status.message(), "source stream failed");
                metrics::apply_failed();
                out.send(Err(status)).await.ok();
                break;
            }
        };
        if chunk.batch_id <= applier.last_applied() {
            // Sent ahead of Ready by a source that had not yet heard this
            // batch was applied (see the proto's stream description).
            if chunk.last {
                metrics::batch_skipped();
                tracing::debug!(source_id = %source_id, batch_id = chunk.batch_id, "skipped a batch applied before");
            }
            continue;
        }
        match applier.apply_chunk(chunk).await {
            Ok(Some(batch_id)) => {
                let applied = wire::TargetMessage {
                    kind: Some(wire::target_message::Kind::Applied(wire::Applied {
                        batch_id,
                    })),
                };
                if out.send(Ok(applied)).await.is_err() {
                    break;
                }
                // Only now: a durable report must never overtake its batch's
                // applied report on the stream.
                applied_tx.send_replace(batch_id);
            }
            Ok(None) => {}
            Err(err) => {
                metrics::apply_failed();
                tracing::warn!(source_id = %source_id, error = %err, "batch failed; rolled back");
                out.send(Err(err.into())).await.ok();
                break;
            }
        }
    }
    applier.abort().await;
}
