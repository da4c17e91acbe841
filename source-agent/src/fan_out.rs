//! Fan-out: a stream per target, each with its own batches, progress and
//! back-off, so a slow, down or refusing target holds back only itself,
//! and one cutter and one acknowledging session for them all (`cutter.rs`,
//! `ack.rs`); targets added or removed
//! while the agent runs are followed within a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

use crate::channel::Target;
use crate::cutter::{self, Joining};
use crate::error::{Error, Result};
use crate::settings::RunSettings;
use crate::targets::{self, Recorded};
use crate::{ack, links, stream};

/// How often the target list is read again.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Streams to `first` (what `run` checked at start) and, unless `--target`
/// fixed the one target, to every target recorded later, until `cancel` or
/// an error neither a pipeline nor the cutter may retry (then everything
/// stops and that error is returned).
pub async fn run(
    settings: Arc<RunSettings>,
    db_config: Config,
    first: Vec<(Recorded, Target)>,
    cancel: CancellationToken,
) -> Result<()> {
    let follow = settings.flags_target.is_none();
    // The cutter and the acknowledging session, shared by the pipelines.
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
    let mut pipelines = Pipelines {
        running: HashMap::new(),
        set: JoinSet::new(),
        cutter: joins,
        acks,
        settings,
        db_config: db_config.clone(),
        cancel: cancel.clone(),
    };
    for (recorded, link) in first {
        pipelines.start(recorded, link);
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
            Some(ended) = pipelines.set.join_next() => {
                let (id, ended) = ended.map_err(|join| Error::Io {
                    context: "a target's pipeline",
                    source: std::io::Error::other(join),
                })?;
                pipelines.running.remove(&id);
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
                pipelines.running.retain(|id, stop| {
                    let kept = recorded.iter().any(|r| r.id == *id);
                    if !kept {
                        tracing::info!(target_id = id, "target removed; its pipeline stops");
                        stop.cancel();
                    }
                    kept
                });
                for r in recorded {
                    if pipelines.running.contains_key(&r.id) {
                        continue;
                    }
                    let Some(link) = r.target.clone() else { continue };
                    tracing::info!(target = %r.name, address = %link.address, "target added; streaming to it");
                    pipelines.start(r, link);
                }
            }
        }
    }
    while let Some(ended) = pipelines.set.join_next().await {
        if let Ok((_, Err(err))) = ended
            && result.is_ok()
        {
            result = Err(err);
        }
    }
    drop(pipelines);
    while let Some(ended) = shared.join_next().await {
        if let Ok(Err(err)) = ended
            && result.is_ok()
        {
            result = Err(err);
        }
    }
    result
}

/// The running pipelines, by target id, each with its own stop.
struct Pipelines {
    running: HashMap<i32, CancellationToken>,
    set: JoinSet<(i32, Result<()>)>,
    /// Where a pipeline's target joins the cutter.
    cutter: mpsc::Sender<Joining>,
    /// Where the pipelines' streams send their acknowledgements.
    acks: ack::Acks,
    settings: Arc<RunSettings>,
    db_config: Config,
    cancel: CancellationToken,
}

impl Pipelines {
    fn start(&mut self, recorded: Recorded, link: Target) {
        let stop = self.cancel.child_token();
        self.running.insert(recorded.id, stop.clone());
        let (settings, db_config) = (self.settings.clone(), self.db_config.clone());
        let (cutter, acks) = (self.cutter.clone(), self.acks.clone());
        self.set.spawn(async move {
            let id = recorded.id;
            let ends = (cutter, acks);
            (
                id,
                pipeline(&settings, db_config, recorded, link, ends, stop).await,
            )
        });
    }
}

/// One target's stream, its target cut by the cutter meanwhile and its
/// acknowledgements sent to the acknowledging session; the stream stopping
/// lets the cutter drop the target.
async fn pipeline(
    settings: &RunSettings,
    db_config: Config,
    recorded: Recorded,
    link: Target,
    (cutter, acks): (mpsc::Sender<Joining>, ack::Acks),
    cancel: CancellationToken,
) -> Result<()> {
    let source_id = &settings.source_id;
    let settings = stream::Settings::new(&settings.streams, &recorded, &link)?;
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
    tracing::info!(target = %recorded.name, address = %link.address, source_id = %source_id, "streaming to target");
    let streamed = stream::run(settings, db_config, stream_ends, acks, cancel.child_token()).await;
    stop.cancel();
    streamed
}
