//! The target's answers to a batch's checks: the running agent records
//! them in `pgferry.check_results` as they come on the stream; `verify`
//! and `repair`, separate processes, wait for them there.

use std::time::Duration;

use pgferry_proto::wire;
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, Config, Statement};

use crate::error::{Error, Result};

/// A batch's answers, as recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answers {
    /// One per check, in their order.
    pub answers: Vec<Answer>,
    /// The batch's repairs that failed, each naming its table.
    pub repair_errors: Vec<String>,
}

/// One check's answer (see `wire::CheckAnswer`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    /// Rows in the range.
    pub rows: u64,
    /// Their digest.
    pub digest: String,
    /// Each row's key and hash, when asked.
    pub each_row: Vec<(String, String)>,
    /// Why the target could not answer; empty when it did.
    pub error: String,
}

impl From<wire::Checked> for Answers {
    fn from(checked: wire::Checked) -> Answers {
        Answers {
            answers: checked
                .answers
                .into_iter()
                .map(|a| Answer {
                    rows: a.rows,
                    digest: a.digest,
                    each_row: a.each_row.into_iter().map(|r| (r.key, r.hash)).collect(),
                    error: a.error,
                })
                .collect(),
            repair_errors: checked.repair_errors,
        }
    }
}

/// Records the answers a stream receives, on a session of its own opened
/// at the first (most streams never carry one).
pub struct Recorder {
    config: Config,
    client: Option<Client>,
}

impl Recorder {
    /// A recorder for the source database of `config`.
    pub fn new(config: &Config) -> Recorder {
        Recorder {
            config: config.clone(),
            client: None,
        }
    }

    /// Records target `target_id`'s answers of a batch. A failure is
    /// logged, not raised: the stream goes on, and the command that asked
    /// asks again at another batch.
    pub async fn record(&mut self, target_id: i32, checked: wire::Checked) {
        let batch_id = checked.batch_id;
        if let Err(err) = self.try_record(target_id, checked).await {
            self.client = None;
            tracing::warn!(batch_id, error = %err, "could not record a batch's check answers");
        }
    }

    async fn try_record(&mut self, target_id: i32, checked: wire::Checked) -> Result<()> {
        let batch_id = checked.batch_id as i64;
        let answers = serde_json::to_string(&Answers::from(checked))
            .map_err(|err| Error::Protocol(format!("check answers: {err}")))?;
        if self.client.is_none() {
            let client = pgferry_runtime::db::connect(&self.config)
                .await
                .map_err(Error::Connect)?;
            self.client = Some(client);
        }
        let client = self.client.as_ref().expect("connected above");
        // Answers no command took within the hour (it was killed) go.
        client
            .execute(
                "with stale as (delete from pgferry.check_results
                                where received_at < now() - interval '1 hour')
                 insert into pgferry.check_results (target_id, batch_id, answers)
                 values ($1, $2, $3::text::jsonb)
                 on conflict (target_id, batch_id) do update set answers = excluded.answers",
                &[&target_id, &batch_id, &answers],
            )
            .await
            .map_err(Error::db("recording check answers"))?;
        Ok(())
    }
}

/// How often a waiting command looks for its answers.
const POLL: Duration = Duration::from_millis(5);

/// How long a command waits for the answers of a batch its target already
/// acknowledged before it takes them as lost (an agent restarted between
/// the target's commit and the answers' record) and asks again.
const LOST_AFTER: Duration = Duration::from_secs(3);

/// Prepares on `client` the look [`wait`] repeats: take a batch's
/// answers, and say whether its target acknowledged the batch.
pub async fn prepare(client: &Client) -> Result<Statement> {
    client
        .prepare(
            "with taken as (delete from pgferry.check_results
                            where target_id = $1 and batch_id = $2 returning answers::text)
             select (select answers from taken),
                    (select acked_batch >= $2::bigint from pgferry.targets where target_id = $1)",
        )
        .await
        .map_err(Error::db("preparing the look for check answers"))
}

/// Waits for, and takes, target `target_id`'s answers to batch `batch_id`;
/// `None` when they were lost (see [`LOST_AFTER`]). After `timeout` without
/// them, says the agents may not be running.
pub async fn wait(
    (client, take): (&Client, &Statement),
    (target_id, target): (i32, &str),
    batch_id: u64,
    timeout: Duration,
) -> Result<Option<Answers>> {
    let started = tokio::time::Instant::now();
    let mut acked_since = None;
    let mut poll = POLL;
    loop {
        let row = client
            .query_one(take, &[&target_id, &(batch_id as i64)])
            .await
            .map_err(Error::db("reading check answers"))?;
        if let Some(text) = row.get::<_, Option<&str>>(0) {
            let answers = serde_json::from_str(text)
                .map_err(|err| Error::Protocol(format!("recorded check answers: {err}")))?;
            return Ok(Some(answers));
        }
        if row.get::<_, Option<bool>>(1).unwrap_or(false) {
            let since = *acked_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= LOST_AFTER {
                return Ok(None);
            }
        }
        if started.elapsed() >= timeout {
            return Err(Error::NoAnswer {
                target: target.to_string(),
                batch_id,
                waited: timeout,
            });
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(Duration::from_millis(10));
    }
}
