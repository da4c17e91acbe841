//! The gRPC side of the source agent: one stream to the target agent per
//! session, several batches in flight, acks driving cleanup; sessions are
//! retried with back-off until shutdown.

use std::collections::HashMap;
use std::time::Duration;

use pgferry_proto::PROTOCOL_VERSION;
use pgferry_proto::wire::{self, replication_client::ReplicationClient};
use pgferry_runtime::db;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, Config};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Endpoint;

use super::batch::{self, ChunkLimits, KnownTable, SendOutcome, Shipper};
use super::catalog;
use crate::backoff::Backoff;
use crate::channel::Dial;
use crate::cut;
use crate::cut::links::StreamEnds;
use crate::error::{Error, Result};
use crate::ids::{BatchId, ChangeCount, TableId, TargetId};
use crate::targets::Recorded;
use crate::{ack, metrics, status};
use pgferry_runtime::recovery::Recovery;

/// Largest message either way; a chunk of `chunk_rows` changes must fit.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long shutdown waits for the target to ack what was sent.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What every replication session takes from `run`'s settings.
pub struct Defaults {
    /// `--source-id`.
    pub source_id: String,
    /// `--window`: batches sent beyond the last one applied.
    pub batches_in_flight: u64,
    /// `--chunk-rows`, `--chunk-bytes` and `--max-row-bytes`.
    pub limits: ChunkLimits,
    /// `--compression`.
    pub compression: Option<CompressionEncoding>,
    /// `--max-backoff`.
    pub max_backoff: Duration,
}

/// What a replication session takes from `run`'s settings and its target,
/// checked by [`Settings::new`].
pub struct Settings {
    /// The target.
    pub target: TargetId,
    /// `--source-id`.
    pub source_id: String,
    /// The target with its TLS settings (see [`crate::channel::endpoint`]).
    pub endpoint: Endpoint,
    /// The target's token, presented as a bearer token.
    pub token: Option<String>,
    /// `--window`: batches sent beyond the last one applied.
    pub batches_in_flight: u64,
    /// `--chunk-rows` and `--chunk-bytes`.
    pub limits: ChunkLimits,
    /// `--compression`.
    pub compression: Option<CompressionEncoding>,
    /// `--max-backoff`.
    pub max_backoff: Duration,
}

impl Settings {
    /// The session's settings from `defaults` and the target it streams
    /// to (`recorded` at the address and with the files of `dial`),
    /// reading the token file and checking the address and TLS files.
    pub fn new(defaults: &Defaults, recorded: &Recorded, dial: &Dial) -> Result<Settings> {
        Ok(Settings {
            target: TargetId {
                id: recorded.id,
                name: recorded.name.clone(),
            },
            source_id: defaults.source_id.clone(),
            endpoint: crate::channel::endpoint(dial)?,
            token: dial.token()?,
            batches_in_flight: defaults.batches_in_flight,
            limits: defaults.limits,
            compression: defaults.compression,
            max_backoff: defaults.max_backoff,
        })
    }
}

/// Runs sessions with the target until `cancel`, recording each failure
/// where `status` shows it and backing off between attempts.
pub async fn run(
    settings: Settings,
    db_config: Config,
    ends: StreamEnds,
    acks: ack::Acks,
    cancel: CancellationToken,
) -> Result<()> {
    let mut backoff = Backoff::new(settings.max_backoff);
    loop {
        let durable_before = *ends.durable.borrow();
        let result = session(&settings, &db_config, &ends, &acks, &cancel).await;
        if cancel.is_cancelled() {
            return result;
        }
        if *ends.durable.borrow() > durable_before {
            backoff.reset();
        }
        let wait = match result {
            Ok(()) => {
                tracing::info!("target closed the stream; reconnecting");
                backoff.failed(false)
            }
            Err(err) => {
                let Some(wait) = backoff.after(&err) else {
                    return Err(err);
                };
                metrics::session_failed(&settings.target.name);
                tracing::warn!(
                    error = %err,
                    needs_operator = err.recovery() == Recovery::Operator,
                    retry_in_ms = wait.as_millis() as u64,
                    "replication session failed"
                );
                status::record_error(&db_config, settings.target.id, &err).await;
                wait
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One stream: hello, ready, then batches out and acks in until an error,
/// the target closing, a change of the table list, or shutdown.
#[tracing::instrument(skip_all, fields(source_id = %settings.source_id, target = %settings.target.name))]
async fn session(
    settings: &Settings,
    db_config: &Config,
    ends: &StreamEnds,
    acks: &ack::Acks,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut newest_cut = ends.newest_cut.clone();
    // The target first: until its HTTP/2 window grants come back (the
    // connection's a round trip after connecting) a new connection carries
    // only 64 KiB, and they travel while the database work below runs.
    let channel = settings.endpoint.connect().await?;
    let connect = || async { db::connect(db_config).await.map_err(Error::Connect) };
    let (reader, copier, checks) = tokio::try_join!(connect(), connect(), connect())?;
    // One round trip: tokio-postgres pipelines requests polled together.
    let target_id = settings.target.id;
    let (version, tables, sequences, read_batch, copy_jobs, copies_possible, acked, epoch) = tokio::try_join!(
        catalog::tables_version(&reader, target_id),
        catalog::table_schemas(&reader, target_id),
        catalog::sequence_schemas(&reader, target_id),
        async {
            reader
                .prepare(batch::READ_BATCH)
                .await
                .map_err(Error::db("preparing the batch read"))
        },
        async {
            reader
                .prepare(batch::COPY_JOBS)
                .await
                .map_err(Error::db("preparing the batch check"))
        },
        async {
            let row = reader
                .query_one(
                    "select exists (select from pgferry.tables
                                    where target_id = $1 and state <> 'replicating')",
                    &[&target_id],
                )
                .await
                .map_err(Error::db("reading the table list"))?;
            Ok(row.get::<_, bool>(0))
        },
        acked_batch(&checks, target_id),
        crate::switchover::epoch(&checks),
    )?;
    let read_sequences = match sequences.is_empty() {
        true => None,
        false => Some(
            reader
                .prepare(batch::READ_SEQUENCES)
                .await
                .map_err(Error::db("preparing the sequences' read"))?,
        ),
    };
    let mut client = ReplicationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    if let Some(encoding) = settings.compression {
        client = client.send_compressed(encoding);
    }
    let (out, out_rx) = mpsc::channel(4);
    let shipper = Shipper {
        target_id,
        reader,
        read_batch,
        copy_jobs,
        copies_possible,
        read_sequences,
        copier,
        limits: settings.limits,
        known_tables: tables
            .iter()
            .map(|t| {
                let known = KnownTable {
                    name: t.source_name.clone(),
                    key_columns: t.key_columns.clone(),
                };
                (TableId::from_wire(t.table_id), known)
            })
            .collect(),
        sequences_sent: HashMap::new(),
        out,
        epoch,
    };
    let hello = wire::Hello {
        protocol_version: PROTOCOL_VERSION,
        source_id: settings.source_id.clone(),
        tables,
        sequences,
        epoch,
        inquiry: false,
    };
    shipper
        .out
        .send(wire::SourceMessage {
            kind: Some(wire::source_message::Kind::Hello(hello)),
        })
        .await
        .map_err(|_| Error::Protocol("stream closed before hello".into()))?;
    let mut request = tonic::Request::new(ReceiverStream::new(out_rx));
    crate::channel::authorize(&mut request, settings.token.as_deref())?;
    // Batches go out right after the hello, from the one after the last
    // acked (the target has that much on disk), without waiting a round
    // trip for Ready; the target skips those it had applied. Not while an
    // initial copy may be due: a copy sent again would record a new
    // snapshot here for a copy the target already holds.
    let speculate = !shipper.copies_possible;
    ends.applied.send_replace(BatchId(acked));
    let send = send_batches(
        settings,
        shipper,
        (&mut newest_cut, &ends.last_sent),
        ends.applied.subscribe(),
        acked + 1,
        version,
        cancel,
    );
    tokio::pin!(send);
    let ready = ready(&mut client, request, &checks, target_id, epoch);
    let (inbound, last_applied) = if speculate {
        tokio::select! {
            biased;
            ready = ready => ready?,
            // Shutdown or a table list change before the target answered.
            sent = &mut send => return sent,
        }
    } else {
        ready.await?
    };
    let mut inbound = match inbound {
        Some(inbound) => inbound,
        None => {
            // The target took the source role at our final batch: it is
            // done here (acknowledging it ends the switchover).
            tracing::info!(
                final_batch = last_applied,
                "the target took over in a switchover; this stream is done"
            );
            let _ = acks
                .send(ack::Ack {
                    target: settings.target.clone(),
                    batch_id: last_applied,
                    fresh: true,
                })
                .await;
            return Ok(());
        }
    };
    tracing::info!(last_applied, "stream ready");
    // Its checks are done; acknowledgements go through the agent's one
    // acknowledging session, so this backend need not idle for the stream.
    drop(checks);

    ends.applied.send_replace(BatchId(last_applied));
    let mut recorder = crate::verify::Recorder::new(db_config);
    let receive = receive_acks(
        &mut inbound,
        (acks, &mut recorder),
        &settings.target,
        ends,
        last_applied,
    );
    tokio::pin!(receive);
    tokio::select! {
        biased;
        received = &mut receive => received.and(Err(Error::TargetClosed)),
        sent = send => {
            // Shutdown or a table list change: sending stopped (the shipper
            // went with it, closing our side); let the target finish what
            // it has, and collect its acks.
            sent?;
            match tokio::time::timeout(DRAIN_GRACE, receive).await {
                Ok(received) => received,
                Err(_) => {
                    tracing::warn!(grace_secs = DRAIN_GRACE.as_secs(), "target did not ack in time");
                    Ok(())
                }
            }
        }
    }
}

/// Opens the stream and waits for the target's Ready; returns the stream
/// and the last batch the target applied, checked against the batches
/// kept here. No stream when the target took over at that batch, this
/// source's switchover's final one (see [`crate::switchover`]); a target
/// at a higher epoch otherwise refuses this source for good.
async fn ready(
    client: &mut ReplicationClient<tonic::transport::Channel>,
    request: tonic::Request<ReceiverStream<wire::SourceMessage>>,
    db: &Client,
    target_id: i32,
    epoch: u64,
) -> Result<(Option<tonic::Streaming<wire::TargetMessage>>, u64)> {
    let mut inbound = client
        .replicate(request)
        .await
        .map_err(Error::Target)?
        .into_inner();
    let ready = match inbound.message().await.map_err(Error::Target)? {
        Some(wire::TargetMessage {
            kind: Some(wire::target_message::Kind::Ready(ready)),
        }) => ready,
        other => return Err(Error::Protocol(format!("expected ready, got {other:?}"))),
    };
    let last_applied = ready.last_applied_batch;
    // First: a source the target took over from has nothing to send,
    // whatever it kept.
    if ready.epoch > epoch {
        if crate::switchover::final_batch(db, target_id, ready.epoch).await? == Some(last_applied) {
            return Ok((None, last_applied));
        }
        return Err(Error::EpochBehind {
            ours: epoch,
            theirs: ready.epoch,
        });
    }
    let (oldest, newest) = cut::kept_range(db, target_id).await?;
    if last_applied > newest {
        return Err(Error::Diverged {
            target: last_applied,
            reason: format!("has cut only up to batch {newest}"),
        });
    }
    if last_applied < oldest {
        return Err(Error::Diverged {
            target: last_applied,
            reason: format!("has already cleaned up every batch before {oldest}"),
        });
    }
    // A batch of that id with another cut is another batch: the source
    // lost the one the target applied (restored from a backup, or failed
    // over to a standby behind it), and the target would skip this one as
    // applied.
    let cut = cut::cut_of(db, target_id, last_applied).await?;
    if !ready.last_applied_cut.is_empty() && cut != ready.last_applied_cut {
        return Err(Error::Diverged {
            target: last_applied,
            reason: format!(
                "cut its batch {last_applied} at another time and snapshot ({cut}) than the one the target applied ({})",
                ready.last_applied_cut
            ),
        });
    }
    db.execute(
        "update pgferry.targets set ready_at = now(), can_take_over = $2 where target_id = $1",
        &[&target_id, &ready.can_take_over],
    )
    .await
    .map_err(Error::db("recording what the target can do"))?;
    Ok((Some(inbound), last_applied))
}

/// The last batch target `target_id` acknowledged as on disk.
async fn acked_batch(client: &Client, target_id: i32) -> Result<u64> {
    let acked: i64 = client
        .query_one(
            "select acked_batch from pgferry.targets where target_id = $1",
            &[&target_id],
        )
        .await
        .map_err(Error::db("reading the acked batch"))?
        .get(0);
    Ok(acked as u64)
}

/// How often a session looks for a changed table list.
const TABLES_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Sends batches from `first` on, in order, at most `batches_in_flight` beyond the last
/// applied one, until shutdown or a change of the table list (returns Ok to
/// end the session, dropping `shipper` and with it the outbound stream).
/// When the last applied batch jumps ahead (the target's Ready), sending
/// resumes after it. Each sent batch's size goes to `sent_tx` (the cutter
/// paces itself by it).
async fn send_batches(
    settings: &Settings,
    mut shipper: Shipper,
    (newest_cut, last_sent): (&mut watch::Receiver<BatchId>, &watch::Sender<ChangeCount>),
    mut applied: watch::Receiver<BatchId>,
    first: u64,
    version: i64,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut next = first;
    // Looked at every TABLES_CHECK_EVERY, busy or idle, not before every
    // batch: a batch that needs a table this stream did not announce says
    // so itself (SendOutcome::TablesChanged).
    let mut next_check = tokio::time::Instant::now();
    loop {
        loop {
            if tokio::time::Instant::now() >= next_check {
                if catalog::tables_version(&shipper.reader, shipper.target_id).await? != version {
                    tracing::info!(
                        batch_id = next,
                        "table list changed; announcing it on a new stream"
                    );
                    return Ok(());
                }
                next_check = tokio::time::Instant::now() + TABLES_CHECK_EVERY;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                cut = newest_cut.wait_for(|newest| newest.0 >= next) => {
                    cut.map_err(|_| Error::Protocol("batch cutter stopped".into()))?;
                    break;
                }
                _ = tokio::time::sleep_until(next_check) => {}
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            moved = applied.wait_for(|applied| next.saturating_sub(applied.0) <= settings.batches_in_flight) => {
                if moved.is_err() { return Ok(()); }
            }
        }
        let resume = applied.borrow().0 + 1;
        if resume > next {
            next = resume;
            continue;
        }
        match shipper.send(next).await? {
            SendOutcome::Sent { changes } => {
                metrics::batch_sent(&settings.target.name, changes);
                last_sent.send_replace(ChangeCount(changes));
            }
            SendOutcome::TablesChanged => {
                tracing::info!(batch_id = next, "table list changed; restarting the stream");
                return Ok(());
            }
            SendOutcome::PeerGone => return Ok(()),
        }
        next += 1;
    }
}

/// Takes the target's reports: each batch applied, in order (this moves the
/// window and the cutter), the answers to a batch's checks before it
/// (recorded for `verify`), and from time to time the batches now durable
/// there, which alone may be deleted here: those go to the acknowledging
/// session (`crate::ack`), which deletes beside the reading: awaited in line,
/// an acknowledgement (a delete and a commit) held back the applied reports
/// queued behind it, and with them the next cut.
async fn receive_acks(
    inbound: &mut tonic::Streaming<wire::TargetMessage>,
    (acks, recorder): (&ack::Acks, &mut crate::verify::Recorder),
    target: &TargetId,
    ends: &StreamEnds,
    last_applied: u64,
) -> Result<()> {
    // What the target reports applied on connecting is durable there. Its
    // cleanup here (a previous session's last acks may not have come) can
    // take a while: it runs while the first batches go out, not before.
    // The acknowledging session ends only after every stream, so a send
    // fails only when it failed for good; then the queue keeps the batches.
    let acknowledge = |batch_id, fresh| {
        acks.send(ack::Ack {
            target: target.clone(),
            batch_id,
            fresh,
        })
    };
    let _ = acknowledge(last_applied, false).await;
    let mut applied = last_applied;
    let mut durable = last_applied;
    while let Some(message) = inbound.message().await.map_err(Error::Target)? {
        match message.kind {
            Some(wire::target_message::Kind::Applied(a)) if a.batch_id == applied + 1 => {
                applied = a.batch_id;
                ends.applied.send_replace(BatchId(applied));
                metrics::batch_applied(&target.name, applied);
            }
            Some(wire::target_message::Kind::Checked(c)) if c.batch_id == applied + 1 => {
                recorder.record(target.id, c).await;
            }
            Some(wire::target_message::Kind::Durable(d))
                if d.batch_id > durable && d.batch_id <= applied =>
            {
                durable = d.batch_id;
                let _ = acknowledge(durable, true).await;
                ends.durable.send_replace(BatchId(durable));
            }
            other => {
                return Err(Error::Protocol(format!(
                    "expected batch {} checked or applied or up to {applied} durable, got {other:?}",
                    applied + 1
                )));
            }
        }
    }
    Ok(())
}
