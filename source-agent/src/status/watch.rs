//! Progress people can see: `add-table --wait` follows the initial copies
//! it started until their tables replicate, and `status --watch` follows
//! every copy under way and each target's backlog until stopped. On a
//! terminal each copy is a live progress bar (indicatif); otherwise plain
//! lines, one per copy every few seconds and when its state changes.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How often the source database is asked.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How often a plain line repeats an unchanged copy.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// One registration's initial copy, as the source database last showed it.
#[derive(Debug, Clone, PartialEq)]
struct Copy {
    table_id: i32,
    /// `schema.table -> target`.
    name: String,
    /// `copy_pending`, `copying`, `replicating` or `removed`.
    state: String,
    rows: u64,
    rows_estimate: u64,
    bytes: u64,
    bytes_estimate: u64,
    /// The target's last error since the wait began, if any.
    error: Option<String>,
}

/// The copies of `ids`, or with `None` every copy not finished.
async fn copies(client: &Client, ids: Option<&[i32]>, since: &str) -> Result<Vec<Copy>> {
    let rows = client
        .query(
            "select t.table_id, t.source_schema || '.' || t.source_name || ' -> ' || g.name,
                    case when t.removed then 'removed' else t.state end,
                    coalesce(t.copy_rows, 0), coalesce(t.copy_rows_estimate, 0),
                    coalesce(t.copy_bytes, 0), coalesce(t.copy_bytes_estimate, 0),
                    case when g.last_error_at > $2::text::timestamptz then g.last_error end
             from pgferry.tables t join pgferry.targets g using (target_id)
             where case when $1::int[] is null then t.state <> 'replicating' and not t.removed
                        else t.table_id = any ($1) end
             order by t.table_id",
            &[&ids, &since],
        )
        .await
        .map_err(Error::db("reading copy progress"))?;
    Ok(rows
        .into_iter()
        .map(|row| Copy {
            table_id: row.get(0),
            name: row.get(1),
            state: row.get(2),
            rows: row.get::<_, i64>(3).max(0) as u64,
            rows_estimate: row.get::<_, i64>(4).max(0) as u64,
            bytes: row.get::<_, i64>(5).max(0) as u64,
            bytes_estimate: row.get::<_, i64>(6).max(0) as u64,
            error: row.get(7),
        })
        .collect())
}

/// The source database's clock, from which a wait counts errors.
async fn now(client: &Client) -> Result<String> {
    Ok(client
        .query_one("select clock_timestamp()::text", &[])
        .await
        .map_err(Error::db("reading the clock"))?
        .get(0))
}

/// Waits until the tables `ids` replicate, showing their copies; fails if
/// one is removed meanwhile or its target reports an error that needs an
/// operator (one that passes, a target down say, is waited out).
pub async fn wait(client: &Client, ids: &[i32]) -> Result<()> {
    let since = now(client).await?;
    let mut display = Display::new();
    loop {
        let copies = copies(client, Some(ids), &since).await?;
        display.show(&copies);
        if let Some(failed) = copies.iter().find(|c| {
            c.state == "removed"
                || c.state != "replicating"
                    && c.error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("needs an operator"))
        }) {
            display.finish();
            return Err(Error::CopyFailed {
                table: failed.name.clone(),
                reason: failed
                    .error
                    .clone()
                    .unwrap_or_else(|| "it was removed".into()),
            });
        }
        if copies.iter().all(|c| c.state == "replicating") {
            display.finish();
            return Ok(());
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Shows every copy under way, and each target's backlog, until `cancel`.
pub async fn watch(client: &Client, cancel: CancellationToken) -> Result<()> {
    let since = now(client).await?;
    let mut display = Display::new();
    let mut summarized: Option<Instant> = None;
    loop {
        let copies = copies(client, None, &since).await?;
        display.show(&copies);
        // The targets' figures count the queue: every few seconds, not at
        // every look.
        if summarized.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) {
            summarized = Some(Instant::now());
            display.summary(&targets(client).await?);
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                display.finish();
                return Ok(());
            }
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

/// Each target's pending changes, delay and last error, on one line.
async fn targets(client: &Client) -> Result<String> {
    let rows = client
        .query(
            "select target, pending_changes, delay_secs, last_error from pgferry.status
             order by target",
            &[],
        )
        .await
        .map_err(Error::db("reading status"))?;
    let targets: Vec<String> = rows
        .iter()
        .map(|t| {
            let error: Option<String> = t.get(3);
            format!(
                "{}: pending {}, delay {:.1}s{}",
                t.get::<_, String>(0),
                t.get::<_, i64>(1),
                t.get::<_, f64>(2),
                error
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    Ok(targets.join("; "))
}

/// Live bars on a terminal, plain lines otherwise.
enum Display {
    Live {
        bars: MultiProgress,
        copies: HashMap<i32, ProgressBar>,
        summary: Option<ProgressBar>,
    },
    Plain {
        /// Per copy: when first seen with how many rows, what was last
        /// printed and when.
        seen: HashMap<i32, (Instant, u64, String, Instant)>,
        summary: (String, Option<Instant>),
    },
}

impl Display {
    fn new() -> Display {
        if std::io::stderr().is_terminal() {
            Display::Live {
                bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                copies: HashMap::new(),
                summary: None,
            }
        } else {
            Display::Plain {
                seen: HashMap::new(),
                summary: (String::new(), None),
            }
        }
    }

    fn show(&mut self, copies: &[Copy]) {
        match self {
            Display::Live {
                bars,
                copies: shown,
                ..
            } => {
                for copy in copies {
                    let bar = shown.entry(copy.table_id).or_insert_with(|| {
                        let bar = bars.add(ProgressBar::new(copy.rows_estimate.max(1)));
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, {eta} left",
                            )
                            .expect("a valid template")
                            .progress_chars("=> "),
                        );
                        bar
                    });
                    bar.set_length(copy.rows_estimate.max(copy.rows).max(1));
                    bar.set_position(copy.rows);
                    let text = format!(
                        "{} {} ({} of ~{} MB)",
                        copy.name,
                        copy.state,
                        copy.bytes / 1_000_000,
                        copy.bytes_estimate / 1_000_000
                    );
                    if copy.state == "replicating" {
                        bar.finish_with_message(text);
                    } else {
                        bar.set_message(text);
                    }
                }
            }
            Display::Plain { seen, .. } => {
                for copy in copies {
                    let now = Instant::now();
                    let (since, rows_then, printed, at) = seen
                        .entry(copy.table_id)
                        .or_insert_with(|| (now, copy.rows, String::new(), now));
                    let elapsed = since.elapsed().as_secs_f64();
                    let rate = if elapsed > 0.0 {
                        (copy.rows.saturating_sub(*rows_then)) as f64 / elapsed
                    } else {
                        0.0
                    };
                    let left = if rate > 0.0 && copy.state != "replicating" {
                        format!(
                            ", {:.0} s left",
                            copy.rows_estimate.saturating_sub(copy.rows) as f64 / rate
                        )
                    } else {
                        String::new()
                    };
                    let line = format!(
                        "{}: {}, {}/~{} rows, {}/~{} MB, {rate:.0} rows/s{left}",
                        copy.name,
                        copy.state,
                        copy.rows,
                        copy.rows_estimate,
                        copy.bytes / 1_000_000,
                        copy.bytes_estimate / 1_000_000
                    );
                    let state_changed =
                        !printed.starts_with(&format!("{}: {},", copy.name, copy.state));
                    if printed.is_empty() || state_changed || at.elapsed() >= PLAIN_EVERY {
                        println!("{line}");
                        *printed = line;
                        *at = now;
                    }
                }
            }
        }
    }

    fn summary(&mut self, text: &str) {
        match self {
            Display::Live { bars, summary, .. } => {
                let bar = summary.get_or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
                    );
                    bar
                });
                bar.set_message(text.to_owned());
                bar.tick();
            }
            Display::Plain { summary, .. } => {
                let (printed, at) = summary;
                if *printed != text || at.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) {
                    println!("{text}");
                    *printed = text.to_owned();
                    *at = Some(Instant::now());
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Display::Live {
            copies, summary, ..
        } = self
        {
            for bar in copies.values().chain(summary.iter()) {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}
