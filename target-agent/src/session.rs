//! One source's stream: admission (its tables checked and guarded, its
//! progress read, made durable and sent as Ready), then one loop that
//! applies chunks in order and reports each committed batch, shutdown first.

use std::sync::Arc;
use std::time::Duration;

use pgferry_proto::wire;
use pgferry_runtime::db;
use tokio::sync::{mpsc, watch};
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Status, Streaming};

use crate::apply::{Applier, Committed, Retries};
use crate::error::{Error, Result};
use crate::metrics;
use crate::{durable, frame};

/// What every source's session shares.
pub struct Sessions {
    /// How the applier sessions connect.
    pub db_config: Config,
    /// Stops every stream at shutdown, between chunks.
    pub cancel: CancellationToken,
    /// Batches to apply otherwise when resent, shared by all streams.
    pub retries: Arc<Retries>,
    /// Bytes of a batch held back to drop overwritten changes.
    pub compact_window: usize,
    /// How long an open batch may wait for its next chunk (see
    /// `--batch-idle-timeout`).
    pub batch_idle_timeout: Duration,
    /// Every stream's tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// Admits the source of `hello` and starts its session on the sessions'
/// task tracker; returns the stream of what goes back to the source.
pub async fn open(
    shared: &Sessions,
    hello: wire::Hello,
    inbound: Streaming<wire::SourceMessage>,
    peer: Option<std::net::SocketAddr>,
) -> Result<mpsc::Receiver<Result<wire::TargetMessage, Status>>> {
    if hello.inquiry {
        return answer_inquiry(shared, &hello.source_id).await;
    }
    let client = db::connect(&shared.db_config)
        .await
        .map_err(Error::Connect)?;
    let applier = match Applier::start(
        client,
        &hello,
        Arc::clone(&shared.retries),
        shared.compact_window,
    )
    .await
    {
        Ok(applier) => applier,
        Err(err) => {
            tracing::warn!(source_id = %hello.source_id, error = %err, "refused a source");
            if let Error::EpochBehind { .. } = err {
                return refuse_superseded(shared, &hello.source_id, err).await;
            }
            return Err(err);
        }
    };
    let flusher = durable::Flusher::connect(&shared.db_config, &hello.source_id).await?;
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
            epoch: applier.epoch(),
            can_take_over: applier.can_take_over(),
        })),
    };
    out.send(Ok(ready)).await.ok();
    let (applied_tx, applied_rx) = watch::channel(applier.last_applied());
    shared
        .tasks
        .spawn(durable::report(flusher, applied_rx, out.clone()));
    shared.tasks.spawn(serve_stream(
        applier,
        inbound,
        out,
        applied_tx,
        (shared.cancel.clone(), shared.batch_idle_timeout),
        hello.source_id,
    ));
    Ok(out_rx)
}

/// Answers a source that only asks where this target stands for it (see
/// `Hello.inquiry`): a Ready with the epoch, last batch and cut recorded,
/// made durable first, and the end of the stream. Nothing is admitted.
async fn answer_inquiry(
    shared: &Sessions,
    source_id: &str,
) -> Result<mpsc::Receiver<Result<wire::TargetMessage, Status>>> {
    let client = db::connect(&shared.db_config)
        .await
        .map_err(Error::Connect)?;
    if !pgferry_runtime::install::is_current(&client, &crate::SCHEMA).await? {
        return Err(Error::NotInstalled);
    }
    let ready = crate::apply::recorded(&client, source_id)
        .await?
        .unwrap_or_default();
    tracing::info!(
        source_id,
        epoch = ready.epoch,
        last_applied = ready.last_applied_batch,
        "answered where this target stands"
    );
    answer_and_end(shared, source_id, ready, None).await
}

/// Sends `ready`, once the progress it reports is on disk (the source
/// deletes what Ready reports applied), then `end` if any, and ends the
/// stream.
async fn answer_and_end(
    shared: &Sessions,
    source_id: &str,
    ready: wire::Ready,
    end: Option<Error>,
) -> Result<mpsc::Receiver<Result<wire::TargetMessage, Status>>> {
    durable::Flusher::connect(&shared.db_config, source_id)
        .await?
        .flush()
        .await?;
    let (out, out_rx) = mpsc::channel(2);
    out.send(Ok(wire::TargetMessage {
        kind: Some(wire::target_message::Kind::Ready(ready)),
    }))
    .await
    .ok();
    if let Some(end) = end {
        out.send(Err(end.into())).await.ok();
    }
    Ok(out_rx)
}

/// Refuses a source below the epoch recorded for it with `err`, after a
/// Ready that tells it where it ends: the last batch applied from it, on
/// disk, which is its switchover's final batch if this database took over
/// from it (it acknowledges that batch then, and its switchover is done).
async fn refuse_superseded(
    shared: &Sessions,
    source_id: &str,
    err: Error,
) -> Result<mpsc::Receiver<Result<wire::TargetMessage, Status>>> {
    let Error::EpochBehind {
        recorded,
        last_batch,
        last_cut,
        ..
    } = &err
    else {
        return Err(err);
    };
    let ready = wire::Ready {
        last_applied_batch: *last_batch,
        last_applied_cut: last_cut.clone(),
        epoch: *recorded,
        can_take_over: false,
    };
    answer_and_end(shared, source_id, ready, Some(err)).await
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
        let chunk = match message.map(|message| message.map(frame::chunk)) {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(err))) => {
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
            Ok(Some(Committed { batch_id, checked })) => {
                if let Some(checked) = checked {
                    let checked = wire::TargetMessage {
                        kind: Some(wire::target_message::Kind::Checked(checked)),
                    };
                    if out.send(Ok(checked)).await.is_err() {
                        break;
                    }
                }
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
