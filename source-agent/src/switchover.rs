//! Switchover (docs/architecture.md, "Switchover"): a target takes the
//! source role for its tables with nothing lost and nothing copied. Here,
//! on the old source: the checks that refuse one, the fence (every write to
//! the tables refused from its commit), the wait for the final batch the
//! cutter cuts at the fence and for its acknowledgement, and what the stream
//! carries of it. The take-over itself runs on the target, in the final
//! batch's transaction (`take_over.sql`).

use std::time::{Duration, Instant};

use pgferry_proto::wire;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::error::{Error, Result};

/// How often the wait for the final batch looks at its progress.
const POLL: Duration = Duration::from_millis(10);

/// What `switchover` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The target that becomes the source (`--target`).
    pub target: String,
    /// Where this database's target agent will listen (`--reverse-address`).
    pub reverse_address: String,
    /// How long to wait for the transactions writing the tables (`--timeout`).
    pub timeout: Duration,
    /// The TLS CA, certificate, key and token file the new source's agent
    /// reaches this database's target agent with: paths on its host.
    pub reverse_files: [Option<String>; 4],
}

/// A switchover done.
#[derive(Debug)]
pub struct Done {
    /// The new epoch.
    pub epoch: u64,
    /// The final batch.
    pub final_batch: u64,
    /// How long the fence waited for the tables' writers.
    pub fenced_in: Duration,
    /// From the start of the fence to the final batch on the target's disk.
    pub took: Duration,
}

/// The switchover a final batch closes, as recorded by the fence.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The new epoch.
    pub epoch: u64,
    /// Where this database will listen as the new source's target.
    pub reverse_address: String,
    /// The TLS CA, certificate, key and token file the new source's agent
    /// presents there (paths on its host; null for none).
    pub files: Vec<Option<String>>,
}

impl Fence {
    /// The final batch's Switchover message: the fence and the names of
    /// target `target_id`'s tables here, which the new source replicates
    /// them back to.
    pub async fn message(&self, client: &Client, target_id: i32) -> Result<wire::Switchover> {
        let rows = client
            .query(
                "select table_id, source_schema, source_name from pgferry.tables
                 where target_id = $1 and not removed order by table_id",
                &[&target_id],
            )
            .await
            .map_err(Error::db("reading the switched tables"))?;
        let file = |i: usize| self.files.get(i).cloned().flatten().unwrap_or_default();
        Ok(wire::Switchover {
            epoch: self.epoch,
            reverse_address: self.reverse_address.clone(),
            tls_ca: file(0),
            tls_cert: file(1),
            tls_key: file(2),
            auth_token_file: file(3),
            tables: rows
                .iter()
                .map(|row| wire::SwitchedTable {
                    table_id: row.get::<_, i32>(0) as u32,
                    source_schema: row.get(1),
                    source_table: row.get(2),
                })
                .collect(),
        })
    }
}

/// Fences target `options.target`'s tables and waits until the target has
/// taken the source role (its final batch on disk). Refuses, changing
/// nothing, a target that takes part of a table, is not streamed to, or
/// whose database cannot take over. Other targets of the same tables
/// follow the new source through this database: its capture of them stays
/// for them, and takes the new source's stream as it is applied here. Run
/// again after an interruption, it goes on waiting for the switchover
/// under way.
pub async fn run(client: &mut Client, options: &Options) -> Result<Done> {
    crate::capture::ensure_installed(client).await?;
    let started = Instant::now();
    // Not `targets::resolve`: a target switched over to is still found,
    // so that a run again after an interruption reports it done.
    let target_id: i32 = client
        .query_opt(
            "select target_id from pgferry.targets where name = $1",
            &[&options.target],
        )
        .await
        .map_err(Error::db("reading the targets"))?
        .ok_or_else(|| Error::UnknownTarget(options.target.clone()))?
        .get(0);
    let under_way: Option<i64> = client
        .query_opt(
            "select epoch from pgferry.switchovers where target_id = $1",
            &[&target_id],
        )
        .await
        .map_err(Error::db("reading the switchover"))?
        .map(|row| row.get(0));
    let (epoch, fenced_in) = match under_way {
        Some(epoch) => {
            tracing::info!(target = %options.target, epoch, "a switchover is under way: waiting for it");
            (epoch as u64, Duration::ZERO)
        }
        None => {
            check(client, target_id, options).await?;
            let epoch = fence(client, target_id, options).await?;
            (epoch, started.elapsed())
        }
    };
    println!(
        "fenced the tables of target {} in {} ms; waiting for the final batch",
        options.target,
        fenced_in.as_millis()
    );
    let final_batch = wait_final(client, target_id).await?;
    Ok(Done {
        epoch,
        final_batch,
        fenced_in,
        took: started.elapsed(),
    })
}

/// Refuses a switchover that cannot be done, changing nothing.
async fn check(client: &Client, target_id: i32, options: &Options) -> Result<()> {
    let refuse = |reason: String| Error::SwitchoverRefused {
        target: options.target.clone(),
        reason,
    };
    let row = client
        .query_one(
            "select (select string_agg(t.source_schema || '.' || t.source_name, ', ' order by t.table_id)
                     from pgferry.tables t
                     where t.target_id = $1 and not t.removed
                       and (t.columns is not null or t.row_filter is not null)),
                    (select string_agg(t.source_schema || '.' || t.source_name, ', ' order by t.table_id)
                     from pgferry.tables t
                     where t.target_id = $1 and not t.removed and t.state <> 'replicating'),
                    exists (select from pgferry.tables where target_id = $1 and not removed),
                    g.can_take_over,
                    case when g.ready_at is null then 'it has not connected since this version'
                         when g.last_error_at > g.ready_at then 'it failed since it was last ready: ' || g.last_error
                    end
             from pgferry.targets g where g.target_id = $1",
            &[&target_id],
        )
        .await
        .map_err(Error::db("checking the switchover"))?;
    if let Some(partial) = row.get::<_, Option<String>>(0) {
        return Err(refuse(format!(
            "it takes {partial} with --columns or --where; only a target that takes whole tables can become their source"
        )));
    }
    if !row.get::<_, bool>(2) {
        return Err(refuse("it has no tables".into()));
    }
    if !crate::cut::cutter::streamed_to(client, target_id).await? {
        return Err(refuse(
            "no source-agent run streams to it; start it, the final batch goes through it".into(),
        ));
    }
    if let Some(why) = row.get::<_, Option<String>>(4) {
        return Err(refuse(format!("its stream is not connected: {why}")));
    }
    if !row.get::<_, bool>(3) {
        return Err(refuse(
            "its database has no pgferry source schema, or its agent has not connected since (run `source-agent install` on it)".into(),
        ));
    }
    if let Some(copying) = row.get::<_, Option<String>>(1) {
        return Err(refuse(format!(
            "{copying} not yet copied there; wait for the copy (status)"
        )));
    }
    Ok(())
}

/// How long one attempt at the fence waits for a table's lock. Writers
/// that come meanwhile queue behind the fence, and one that holds another
/// of the tables and waits for ours is a deadlock PostgreSQL finds only
/// after `deadlock_timeout` (1 s): past this, the attempt gives way and
/// starts again.
const FENCE_ATTEMPT: Duration = Duration::from_millis(50);

/// The fence: in one transaction, retried until every table's lock is
/// taken (each attempt waits at most [`FENCE_ATTEMPT`] for the transactions
/// writing the tables) or `options.timeout` has passed; returns the new
/// epoch. Timed out, nothing was fenced.
async fn fence(client: &mut Client, target_id: i32, options: &Options) -> Result<u64> {
    let deadline = Instant::now() + options.timeout;
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(FENCE_ATTEMPT);
        let tx = client.transaction().await.map_err(Error::db("fencing"))?;
        let epoch: i64 = tx
            .query_one("select epoch + 1 from pgferry.epoch", &[])
            .await
            .map_err(Error::db("reading the epoch"))?
            .get(0);
        let fenced = async {
            tx.batch_execute(&format!(
                "set local lock_timeout = {}",
                left.as_millis().max(1)
            ))
            .await?;
            tx.execute(
                "select pgferry.fence($1, $2, $3, $4)",
                &[
                    &target_id,
                    &epoch,
                    &options.reverse_address,
                    &options.reverse_files.as_slice(),
                ],
            )
            .await?;
            tx.commit().await
        }
        .await;
        match fenced {
            Ok(()) => return Ok(epoch as u64),
            Err(err)
                if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
                    || err.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                if Instant::now() >= deadline {
                    return Err(Error::FenceTimeout {
                        target: options.target.clone(),
                        waited: options.timeout,
                    });
                }
                tracing::debug!("a writer held a table past the attempt; fencing again");
            }
            Err(err) => return Err(Error::db("fencing the tables")(err)),
        }
    }
}

/// Waits until the target has its final batch on disk; returns the batch.
async fn wait_final(client: &Client, target_id: i32) -> Result<u64> {
    let mut announced = false;
    let mut last_error = None;
    loop {
        let row = client
            .query_one(
                "select s.final_batch, s.done_at is not null, g.last_error
                 from pgferry.switchovers s join pgferry.targets g using (target_id)
                 where s.target_id = $1",
                &[&target_id],
            )
            .await
            .map_err(Error::db("waiting for the final batch"))?;
        let final_batch: Option<i64> = row.get(0);
        if row.get::<_, bool>(1) {
            return Ok(final_batch.unwrap_or_default() as u64);
        }
        if let Some(batch) = final_batch.filter(|_| !announced) {
            announced = true;
            println!("final batch {batch} cut; waiting until the target has it on disk");
        }
        let error: Option<String> = row.get(2);
        if error.is_some() && error != last_error {
            tracing::warn!(error, "the target's stream is failing; still waiting");
        }
        last_error = error;
        tokio::time::sleep(POLL).await;
    }
}

/// This database's epoch as a source, which every hello carries.
pub async fn epoch(client: &Client) -> Result<u64> {
    let epoch: i64 = client
        .query_one("select epoch from pgferry.epoch", &[])
        .await
        .map_err(Error::db("reading the epoch"))?
        .get(0);
    Ok(epoch as u64)
}

/// The final batch of target `target_id`'s switchover to `epoch`, if it
/// has one.
pub async fn final_batch(client: &Client, target_id: i32, epoch: u64) -> Result<Option<u64>> {
    Ok(client
        .query_opt(
            "select final_batch from pgferry.switchovers where target_id = $1 and epoch = $2",
            &[&target_id, &(epoch as i64)],
        )
        .await
        .map_err(Error::db("reading the switchover"))?
        .and_then(|row| row.get::<_, Option<i64>>(0))
        .map(|batch| batch as u64))
}
