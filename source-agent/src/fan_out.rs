//! Fan-out: a stream per target, each with its own batches, progress and
//! back-off, so a slow, down or refusing target holds back only itself,
//! and one cutter and one acknowledging session for them all (`cut::cutter`,
//! `ack`); targets added or removed
//! while the agent runs are followed within a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

use crate::ack;
use crate::channel::Dial;
use crate::cut::cutter::{self, Joining};
use crate::cut::links;
use crate::error::{Error, Result};
use crate::settings::RunSettings;
use crate::ship::stream;
use crate::targets::{self, Recorded};

/// How often the target list is read again.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Streams to `first` (what `run` checked at start) and, unless `--target`
/// fixed the one target, to every target recorded later, until `cancel` or
/// an error neither a target's stream nor the cutter may retry (then everything
/// stops and that error is returned).
pub async fn run(
    settings: Arc<RunSettings>,
    db_config: Config,
    first: Vec<(Recorded, Dial)>,
    cancel: CancellationToken,
) -> Result<()> {
    let follow = settings.flags_target.is_none();
    // The cutter and the acknowledging session, shared by the streams.
    let mut shared = JoinSet::new();
    let (joins, joined) = mpsc::channel(cutter::JOINING);
    shared.spawn(cutter::cut_loop(
        db_config.clone(),
        settings.pace,
        joined,
        cancel.child_token(),
    ));
    let (acks, acked) = mpsc::channel(ack::WAITING);
    // Not stopped by `cancel`: the streams' last acknowledgements come
    // after it; it ends once every stream has ended (and with them the
    // senders of `acks`).
    shared.spawn(ack::ack_loop(
        db_config.clone(),
        settings.max_backoff,
        acked,
        cancel.clone(),
    ));
    let mut streams = TargetStreams {
        running: HashMap::new(),
        set: JoinSet::new(),
        cutter: joins,
        acks,
        settings,
        db_config: db_config.clone(),
        cancel: cancel.clone(),
    };
    for (recorded, dial) in first {
        streams.start(recorded, dial);
    }
    let mut client = None;
    let mut result = Ok(());
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            // Either ends early only on an error that stops.
            Some(ended) = shared.join_next() => {
                if let Ok(Err(err)) = ended {
                    result = Err(err);
                }
                cancel.cancel();
                break;
            }
            Some(ended) = streams.set.join_next() => {
                let (id, ended) = ended.map_err(|join| Error::Io {
                    context: "a target's stream",
                    source: std::io::Error::other(join),
                })?;
                streams.running.remove(&id);
                if let Err(err) = ended {
                    result = Err(err);
                    cancel.cancel();
                    break;
                }
            }
            _ = tokio::time::sleep(FOLLOW_EVERY), if follow => {
                if client.is_none() {
                    client = pgferry_runtime::db::connect(&db_config).await.ok();
                }
                let Some(c) = &client else { continue };
                let recorded = match targets::list(c).await {
                    Ok(recorded) => recorded,
                    Err(err) => {
                        tracing::debug!(error = %err, "could not read the target list");
                        client = None;
                        continue;
                    }
                };
                streams.running.retain(|id, stop| {
                    let kept = recorded.iter().any(|r| r.id == *id);
                    if !kept {
                        tracing::info!(target_id = id, "target removed; its stream stops");
                        stop.cancel();
                    }
                    kept
                });
                for r in recorded {
                    if streams.running.contains_key(&r.id) {
                        continue;
                    }
                    let Some(dial) = r.target.clone() else { continue };
                    tracing::info!(target = %r.name, address = %dial.address, "target added; streaming to it");
                    streams.start(r, dial);
                }
            }
        }
    }
    while let Some(ended) = streams.set.join_next().await {
        if let Ok((_, Err(err))) = ended
            && result.is_ok()
        {
            result = Err(err);
        }
    }
    drop(streams);
    while let Some(ended) = shared.join_next().await {
        if let Ok(Err(err)) = ended
            && result.is_ok()
        {
            result = Err(err);
        }
    }
    result
}

/// The running streams, by target id, each with its own stop.
struct TargetStreams {
    running: HashMap<i32, CancellationToken>,
    set: JoinSet<(i32, Result<()>)>,
    /// Where a stream's target joins the cutter.
    cutter: mpsc::Sender<Joining>,
    /// Where the streams send their acknowledgements.
    acks: ack::Acks,
    settings: Arc<RunSettings>,
    db_config: Config,
    cancel: CancellationToken,
}

impl TargetStreams {
    fn start(&mut self, recorded: Recorded, dial: Dial) {
        let stop = self.cancel.child_token();
        self.running.insert(recorded.id, stop.clone());
        let (settings, db_config) = (self.settings.clone(), self.db_config.clone());
        let (cutter, acks) = (self.cutter.clone(), self.acks.clone());
        self.set.spawn(async move {
            let id = recorded.id;
            let ends = (cutter, acks);
            (
                id,
                stream_target(&settings, db_config, recorded, dial, ends, stop).await,
            )
        });
    }
}

/// One target's stream, its target cut by the cutter meanwhile and its
/// acknowledgements sent to the acknowledging session; the stream stopping
/// lets the cutter drop the target.
async fn stream_target(
    settings: &RunSettings,
    db_config: Config,
    recorded: Recorded,
    dial: Dial,
    (cutter, acks): (mpsc::Sender<Joining>, ack::Acks),
    cancel: CancellationToken,
) -> Result<()> {
    let source_id = &settings.source_id;
    let settings = stream::Settings::new(&settings.streams, &recorded, &dial)?;
    crate::metrics::target_started(&recorded.name);
    let (cutter_ends, stream_ends) = links::links();
    let stop = cancel.child_token();
    // The cutter gone (shutdown, or an error fan_out's run returns) drops
    // the receiver; the stream's newest cut then never moves and
    // `cancel` ends it.
    let _ = cutter
        .send(Joining {
            target: settings.target.clone(),
            ends: cutter_ends,
            stop: stop.clone(),
        })
        .await;
    tracing::info!(target = %recorded.name, address = %dial.address, source_id = %source_id, "streaming to target");
    let streamed = stream::run(settings, db_config, stream_ends, acks, cancel.child_token()).await;
    stop.cancel();
    streamed
}
