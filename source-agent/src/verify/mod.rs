//! `verify` and `repair` (docs/architecture.md, "Verify and repair"):
//! each table is compared range of keys by range of keys, each range at a
//! batch of its own. The command cuts the batch, reads the source in the
//! very snapshot that cut it, and the batch carries the same question to
//! the target, which answers in the batch's transaction after its
//! changes: both sides are then the same moment of the source, so equal
//! copies compare equal whatever the writers do. A range whose digests
//! differ is asked again row by row; `repair` reads the source's rows of
//! the keys that differ in another batch's snapshot and ships them in that
//! batch, applied after its changes.

mod answers;
mod cut;
mod pace;
mod registration;
mod report;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::TryStreamExt;
use pgferry_runtime::digest;
use tokio_postgres::{Client, Config};

use crate::error::{Error, Result};
pub use answers::Recorder;
use answers::{Answer, Answers};
use registration::Registration;
pub use report::Report;
use report::{Kind, TableReport};

/// What `verify` or `repair` put on a batch they cut (`pgferry.batch.checks`),
/// which the stream sends with the batch.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Checks {
    /// Questions for the target, answered after the batch's changes.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Whether the batch carries repairs (`pgferry.repair_rows`).
    #[serde(default)]
    pub repairs: bool,
}

/// One of [`Checks::checks`] (see `wire::Check`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// The registration.
    pub table_id: i32,
    /// The key the range starts after.
    pub after: Option<String>,
    /// The key the range ends with.
    pub upto: Option<String>,
    /// Whether each row's hash is asked.
    pub each_row: bool,
}

/// What to compare, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this target's tables.
    pub target: Option<String>,
    /// Only these source tables (SCHEMA.TABLE; all when empty).
    pub tables: Vec<String>,
    /// Keys listed per table at most.
    pub max_differences: usize,
    /// Rows per range of keys (each range is compared at a batch of its own).
    pub chunk_rows: u32,
    /// How long to wait for a target's answers.
    pub timeout: Duration,
    /// The share of its time, in percent, the reads may take while the
    /// source is busy (see `pace`).
    pub source_share: u8,
    /// Fix what differs.
    pub repair: bool,
}

/// Ranges whose answers are awaited at once: the source's side of the
/// next is read while the target answers the first.
const IN_FLIGHT: usize = 4;

/// How many times a range is asked again whose answers were lost (an
/// agent restarted meanwhile) before the command gives up.
const ATTEMPTS: usize = 3;

/// How many rounds of repair a range gets: a round fixes every difference
/// found; another is needed only if the range was damaged again meanwhile.
const REPAIR_ROUNDS: usize = 3;

/// The most keys one repair batch rewrites: their rows are held in memory
/// and in the batch.
const REPAIR_KEYS: usize = 500;

/// Compares (and with `repair`, fixes) every registration `options`
/// names, and records the outcome where `status` shows it.
pub async fn run(config: &Config, options: &Options) -> Result<Report> {
    let connect = || async {
        pgferry_runtime::db::connect(config)
            .await
            .map_err(Error::Connect)
    };
    let (control, cutter, reader) = tokio::try_join!(connect(), connect(), connect())?;
    crate::capture::ensure_installed(&control).await?;
    control
        .batch_execute(&digest::pinned(false))
        .await
        .map_err(Error::db("pinning the session's settings"))?;
    let registrations =
        registration::list(&control, options.target.as_deref(), &options.tables).await?;
    let take = answers::prepare(&control).await?;
    let mut checker = Checker {
        control,
        take,
        cutter,
        reader,
        timeout: options.timeout,
        pace: pace::Pace::new(options.source_share),
    };
    let mut report = Report {
        repaired: options.repair.then_some(0),
        ..Report::default()
    };
    for registration in &registrations {
        let table = checker.table(registration, options).await?;
        report.differences += table.differences;
        if let (Some(total), Some(repaired)) = (&mut report.repaired, table.repaired) {
            *total += repaired;
        }
        if !table.compared {
            report.not_compared += 1;
        }
        report.tables.push(table);
    }
    Ok(report)
}

/// The command's three sessions: `control` finds ranges, waits for
/// answers and records outcomes; `cutter` cuts; `reader` reads the source
/// in a cut's snapshot.
struct Checker {
    control: Client,
    /// [`answers::prepare`]'s look, on `control`.
    take: tokio_postgres::Statement,
    cutter: Client,
    reader: Client,
    timeout: Duration,
    pace: pace::Pace,
}

/// A range of keys: after the first, up to and including the second (none:
/// open).
type Range = (Option<String>, Option<String>);

impl Checker {
    /// Compares (and repairs) one registration, range by range.
    async fn table(
        &mut self,
        registration: &Registration,
        options: &Options,
    ) -> Result<TableReport> {
        let mut table = TableReport::of(registration);
        if options.repair && registration.set_aside {
            // Its missed changes are no longer queued: only a copy brings
            // it back.
            crate::capture::copy_again(&mut self.control, registration.table_id).await?;
            self.wait_copied(registration).await?;
            table.note = Some("was set aside: copied again, then compared".into());
        } else if registration.state != "replicating" {
            table.note = Some("not compared: its initial copy has not finished".into());
            return Ok(table);
        }
        table.compared = true;
        if options.repair {
            table.repaired = Some(0);
        }
        // Ranges go out IN_FLIGHT at a time: the next ones are cut and read
        // here while the target answers the first.
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut after: Option<String> = None;
        let mut last_cut = false;
        while !last_cut || !pending.is_empty() {
            if !last_cut && pending.len() < IN_FLIGHT {
                let upto = self
                    .boundary(registration, &after, options.chunk_rows)
                    .await?;
                let range = (after.clone(), upto.clone());
                let started = tokio::time::Instant::now();
                if let Some(put) = self.put(registration, range, Question::Digest).await? {
                    pending.push_back(put);
                }
                let busy = self.pace.busy(&self.control).await?;
                tokio::time::sleep(self.pace.pause(started.elapsed(), busy)).await;
                match upto {
                    Some(upto) => after = Some(upto),
                    None => last_cut = true,
                }
                continue;
            }
            let put = pending.pop_front().expect("a range in flight");
            let answered = self.take(registration, &put).await?;
            let (rows, mut found) = match (&put.source, &answered) {
                (SourceSide::Digest(rows, digest), Some(answer))
                    if *rows == answer.rows && *digest == answer.digest =>
                {
                    (*rows, Vec::new())
                }
                // Different, or the answer lost: this range afresh.
                _ => self.compare(registration, &put.range).await?,
            };
            if options.repair {
                let mut round = 0;
                while !found.is_empty() && round < REPAIR_ROUNDS {
                    round += 1;
                    let keys: Vec<String> = found.iter().map(|(_, key)| key.clone()).collect();
                    let equal = self.repair(registration, &keys, &put.range).await?;
                    if let Some(repaired) = &mut table.repaired {
                        *repaired += keys.len() as u64;
                    }
                    found = if equal {
                        Vec::new()
                    } else {
                        self.compare(registration, &put.range).await?.1
                    };
                }
            }
            table.rows += rows;
            table.add(&found, options.max_differences);
        }
        self.record(registration, &table).await?;
        tracing::info!(
            table = %registration.source,
            target = %registration.target,
            rows = table.rows,
            differences = table.differences,
            repaired = table.repaired,
            "compared"
        );
        Ok(table)
    }

    /// Waits until the copy of `registration` is applied, while it moves:
    /// gives up after the command's timeout without a step.
    async fn wait_copied(&self, registration: &Registration) -> Result<()> {
        let mut last = None;
        let mut moved = tokio::time::Instant::now();
        loop {
            let row = self
                .control
                .query_one(
                    "select state, removed, copy_rows from pgferry.tables where table_id = $1",
                    &[&registration.table_id],
                )
                .await
                .map_err(Error::db("waiting for a copy"))?;
            let (state, removed, rows): (String, bool, Option<i64>) =
                (row.get(0), row.get(1), row.get(2));
            if removed {
                return Err(refused(registration, "it was removed".into()));
            }
            if state == "replicating" {
                return Ok(());
            }
            if last != Some((state.clone(), rows)) {
                last = Some((state, rows));
                moved = tokio::time::Instant::now();
            } else if moved.elapsed() >= self.timeout {
                return Err(refused(
                    registration,
                    format!(
                        "its copy did not move for {}: is `source-agent run` running?",
                        humantime::format_duration(self.timeout)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of the range of `rows` keys after `after`; none when fewer
    /// are left.
    async fn boundary(
        &self,
        registration: &Registration,
        after: &Option<String>,
        rows: u32,
    ) -> Result<Option<String>> {
        let row = self
            .control
            .query_opt(
                &registration.rows.boundary_sql(),
                &[after, &i64::from(rows.max(1))],
            )
            .await
            .map_err(check_error(registration))?;
        Ok(row.map(|row| row.get(0)))
    }

    /// The range's rows on the source and how the target differs: by
    /// digest first, row by row only when the digests differ.
    async fn compare(
        &mut self,
        registration: &Registration,
        range: &Range,
    ) -> Result<(u64, Vec<(Kind, String)>)> {
        let asked = self.ask(registration, range, Question::Digest).await?;
        if let Some((SourceSide::Digest(rows, digest), answer)) = &asked
            && *rows == answer.rows
            && *digest == answer.digest
        {
            return Ok((*rows, Vec::new()));
        }
        let Some((SourceSide::Rows(source), answer)) =
            self.ask(registration, range, Question::EachRow).await?
        else {
            unreachable!("asked row by row")
        };
        Ok((source.len() as u64, differences(&source, &answer.each_row)))
    }

    /// Rewrites on the target the rows of `keys` (JSON key objects) of the
    /// range, and says whether the range is then equal.
    async fn repair(
        &mut self,
        registration: &Registration,
        keys: &[String],
        range: &Range,
    ) -> Result<bool> {
        let mut groups: Vec<&[String]> = keys.chunks(REPAIR_KEYS).rev().collect();
        let mut equal = false;
        while let Some(group) = groups.pop() {
            match self
                .ask(registration, range, Question::Repair(group))
                .await?
            {
                Some((SourceSide::Digest(rows, digest), answer)) => {
                    equal = rows == answer.rows && digest == answer.digest;
                }
                Some((SourceSide::Rows(_), _)) => unreachable!("a repair asks for the digest"),
                None => {
                    // Too large for one batch: in halves.
                    let (first, second) = group.split_at(group.len() / 2);
                    groups.push(second);
                    groups.push(first);
                }
            }
        }
        Ok(equal)
    }

    /// Asks one question of a range at a batch cut for it: the source's
    /// side read in the batch's snapshot, the target's answer in the batch.
    /// Asks again at another batch if the answer was lost. None: the
    /// repair's rows are too large for one batch (split the keys).
    async fn ask(
        &mut self,
        registration: &Registration,
        range: &Range,
        question: Question<'_>,
    ) -> Result<Option<(SourceSide, Answer)>> {
        let mut last_batch = 0;
        for _ in 0..ATTEMPTS {
            let Some(put) = self.put(registration, range.clone(), question).await? else {
                return Ok(None);
            };
            last_batch = put.batch_id;
            if let Some(answer) = self.take(registration, &put).await? {
                return Ok(Some((put.source, answer)));
            }
            tracing::info!(batch_id = last_batch, table = %registration.source, "answers lost (an agent restarted); asking again");
        }
        Err(Error::NoAnswer {
            target: registration.target.clone(),
            batch_id: last_batch,
            waited: self.timeout,
        })
    }

    /// Puts a question of a range to a batch cut for it, and reads the
    /// source's side in the batch's snapshot. None: the repair's rows are
    /// too large for one batch (split the keys).
    async fn put(
        &mut self,
        registration: &Registration,
        range: Range,
        question: Question<'_>,
    ) -> Result<Option<Pending>> {
        let failed = check_error(registration);
        let checks = Checks {
            checks: vec![Check {
                table_id: registration.table_id,
                after: range.0.clone(),
                upto: range.1.clone(),
                each_row: matches!(question, Question::EachRow),
            }],
            repairs: matches!(question, Question::Repair(_)),
        };
        let cut = cut::cut(
            &mut self.cutter,
            &mut self.reader,
            registration.target_id,
            &checks,
        )
        .await?;
        let batch_id = cut.batch_id;
        if let Question::Repair(keys) = question {
            let keys = format!("[{}]", keys.join(","));
            let copy = registration.rows.copy_keys_sql(&keys);
            let data = read_copy(&cut.read, &copy).await.map_err(&failed)?;
            if data.len() > REPAIR_BYTES && keys.len() > 1 {
                return Ok(None);
            }
            cut.cut
                .execute(
                    "insert into pgferry.repair_rows (target_id, batch_id, table_id, keys, rows)
                     values ($1, $2, $3, $4, $5)",
                    &[
                        &registration.target_id,
                        &(batch_id as i64),
                        &registration.table_id,
                        &keys,
                        &data,
                    ],
                )
                .await
                .map_err(Error::db("recording a repair's rows"))?;
        }
        cut.cut
            .commit()
            .await
            .map_err(Error::db("cutting a batch to check"))?;
        let source = if matches!(question, Question::EachRow) {
            let each_row = registration.rows.each_row_sql();
            let rows = cut
                .read
                .query(&each_row, &[&range.0, &range.1])
                .await
                .map_err(&failed)?;
            SourceSide::Rows(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        } else {
            let copy = registration
                .rows
                .copy_range_sql(range.0.as_deref(), range.1.as_deref());
            let stream = cut.read.copy_out(copy.as_str()).await.map_err(&failed)?;
            futures::pin_mut!(stream);
            let mut digest = digest::Digest::default();
            while let Some(data) = stream.try_next().await.map_err(&failed)? {
                digest.update(&data);
            }
            let (rows, digest) = digest.finish();
            SourceSide::Digest(rows, digest)
        };
        cut.read
            .commit()
            .await
            .map_err(Error::db("reading the source at a batch's snapshot"))?;
        Ok(Some(Pending {
            batch_id,
            range,
            source,
        }))
    }

    /// The target's answer to a question put; None when it was lost.
    async fn take(&self, registration: &Registration, put: &Pending) -> Result<Option<Answer>> {
        let target = (registration.target_id, registration.target.as_str());
        let Some(Answers {
            answers,
            repair_errors,
        }) = answers::wait(
            (&self.control, &self.take),
            target,
            put.batch_id,
            self.timeout,
        )
        .await?
        else {
            return Ok(None);
        };
        if !repair_errors.is_empty() {
            return Err(refused(registration, repair_errors.join("; ")));
        }
        let answer = answers.into_iter().next().unwrap_or_default();
        if !answer.error.is_empty() {
            return Err(refused(registration, answer.error));
        }
        Ok(Some(answer))
    }

    /// Records the table's outcome where `status` shows it; a repair that
    /// left it equal lifts its divergence if its capture is on again.
    async fn record(&self, registration: &Registration, table: &TableReport) -> Result<()> {
        self.control
            .execute(
                "update pgferry.tables
                    set verified_at = now(), verify_rows = $2::bigint, verify_differences = $3::bigint,
                        repaired_at = case when $4::bigint is null then repaired_at else now() end,
                        repaired_rows = coalesce($4, repaired_rows),
                        diverged_at = case when $4::bigint is not null and $3::bigint = 0
                                                and pgferry.capture_on(relid)
                                           then null else diverged_at end,
                        diverged_reason = case when $4::bigint is not null and $3::bigint = 0
                                                    and pgferry.capture_on(relid)
                                               then null else diverged_reason end
                  where table_id = $1",
                &[
                    &registration.table_id,
                    &(table.rows as i64),
                    &(table.differences as i64),
                    &table.repaired.map(|r| r as i64),
                ],
            )
            .await
            .map_err(Error::db("recording a verify"))?;
        Ok(())
    }
}

/// What is asked of a range.
#[derive(Clone, Copy)]
enum Question<'k> {
    /// Its row count and digest.
    Digest,
    /// Each row's key and hash.
    EachRow,
    /// Rewrite these keys' rows, then the digest.
    Repair(&'k [String]),
}

/// The most bytes of rows one repair batch carries, unless it repairs a
/// single row.
const REPAIR_BYTES: usize = 64 * 1024 * 1024;

/// Reads a COPY ... TO STDOUT whole.
async fn read_copy(
    read: &tokio_postgres::Transaction<'_>,
    copy: &str,
) -> Result<Vec<u8>, tokio_postgres::Error> {
    let stream = read.copy_out(copy).await?;
    futures::pin_mut!(stream);
    let mut data = Vec::new();
    while let Some(bytes) = stream.try_next().await? {
        data.extend_from_slice(&bytes);
    }
    Ok(data)
}

/// A question put to a batch, waiting for the target's answer.
struct Pending {
    /// The batch that carries it.
    batch_id: u64,
    /// The range asked about.
    range: Range,
    /// The source's side.
    source: SourceSide,
}

/// What the source has of a range.
enum SourceSide {
    /// Its rows and digest.
    Digest(u64, String),
    /// Each row's key and hash.
    Rows(Vec<(String, String)>),
}

/// How the target's rows (key, hash) differ from the source's, by key.
fn differences(source: &[(String, String)], target: &[(String, String)]) -> Vec<(Kind, String)> {
    let theirs: HashMap<&str, &str> = target
        .iter()
        .map(|(k, h)| (k.as_str(), h.as_str()))
        .collect();
    let ours: HashMap<&str, &str> = source
        .iter()
        .map(|(k, h)| (k.as_str(), h.as_str()))
        .collect();
    let mut found: Vec<(Kind, String)> = source
        .iter()
        .filter_map(|(key, hash)| match theirs.get(key.as_str()) {
            None => Some((Kind::Missing, key.clone())),
            Some(h) if h != hash => Some((Kind::Different, key.clone())),
            Some(_) => None,
        })
        .chain(
            target
                .iter()
                .filter(|(key, _)| !ours.contains_key(key.as_str()))
                .map(|(key, _)| (Kind::Extra, key.clone())),
        )
        .collect();
    found.sort();
    found
}

/// A database error of a check of `registration`.
fn check_error(registration: &Registration) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
    move |source| refused(registration, pgferry_runtime::db::describe(&source))
}

/// A check of `registration` that failed for `reason`.
fn refused(registration: &Registration, reason: String) -> Error {
    Error::CheckFailed {
        table: registration.source.clone(),
        target: registration.target.clone(),
        reason,
    }
}
