//! Verify and repair of a 1M-row table: its initial copy's rate; pgbench's
//! single-row updates (4 clients) alone and while `verify` runs again and
//! again over the table, in alternating 10 s slices; verify's rate; and a
//! repair of 1 % of its rows, scattered, changed behind the target's guard.
//! The source's side (its cluster, agent, pgbench and the command) runs on
//! one CPU and the target's on the other, as on two hosts: the writers
//! meet only the source's part of the work.

use crate::*;

/// Rows of the verified table.
const ROWS: i64 = 1_000_000;

/// What the verify measure found.
pub(crate) struct Verified {
    /// Rows per second of the table's initial copy.
    pub(crate) copy_rows_per_s: f64,
    /// Rows per second of a verify with nothing else running, per
    /// `--chunk-rows` measured.
    pub(crate) alone: Vec<(&'static str, f64)>,
    /// Per `--source-share` measured: rows per second of each verify while
    /// pgbench ran, and pgbench's TPS without verify and during it (the
    /// means of the slices).
    pub(crate) shares: Vec<(u8, Vec<f64>, (f64, f64))>,
    /// The repair's seconds and the rows it rewrote.
    pub(crate) repair: (f64, u64),
    /// Whether the verify after the repair found the table equal.
    pub(crate) equal_after: bool,
}

/// The `--source-share` values measured beside pgbench: full speed, and
/// the default.
const SHARES: [u8; 2] = [100, 10];

/// The `--chunk-rows` values measured alone (the default, and larger).
const CHUNKS: [&str; 2] = ["10000", "50000"];

impl Bench {
    /// pgbench TPS alone and while verify with `--source-share share` loops
    /// (the means of three 10 s slices each), and each verify's rows/s.
    async fn beside_pgbench(&self, share: u8) -> ((f64, f64), Vec<f64>) {
        let args = ["-c", "4", "-j", "2", "-T", "10"];
        let (mut alone, mut during) = (0.0, 0.0);
        let mut rates = Vec::new();
        for _ in 0..3 {
            alone += self.pgbench(System::Pgferry, &script("t_rep"), &args);
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let source_db = self.source_db();
            let looping = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut rates = Vec::new();
                    let share = share.to_string();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let started = Instant::now();
                        let out =
                            on_source_cpu(&["verify", "--source-share", &share], &source_db).await;
                        assert_eq!(
                            out.status.code(),
                            Some(0),
                            "verify under pgbench: {}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        );
                        rates.push(ROWS as f64 / started.elapsed().as_secs_f64());
                    }
                    rates
                })
            };
            during += tokio::task::block_in_place(|| {
                self.pgbench(System::Pgferry, &script("t_rep"), &args)
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            rates.extend(looping.await.expect("verify loop"));
        }
        ((alone / 3.0, during / 3.0), rates)
    }

    /// Runs `source-agent verify|repair` over `public.big` on the source's
    /// CPU; its exit code, seconds and output.
    async fn check_big(&self, command: &str) -> (Option<i32>, f64, String) {
        let started = Instant::now();
        let out = on_source_cpu(&[command], &self.source_db()).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), started.elapsed().as_secs_f64(), text)
    }

    /// Measure: verify and repair (see the module's comment). Expects the
    /// agents running.
    pub(crate) async fn verify(&mut self) -> Verified {
        self.set_apart(true, &[]);
        let definition = "(id int primary key, a int, b text, c timestamptz)";
        self.ferry_src
            .batch_execute(&format!(
                "create table big {definition};
                 insert into big select g, g % 1000, md5(g::text), now()
                 from generate_series(1, {ROWS}) g"
            ))
            .await
            .expect("big table");
        self.ferry_src
            .batch_execute("vacuum analyze big")
            .await
            .expect("vacuum");
        self.ferry_dst
            .batch_execute(&format!(
                "create table big {definition}; alter table big owner to applier"
            ))
            .await
            .expect("big target table");
        let started = Instant::now();
        let out = run_command(
            "source-agent",
            &[
                "add-table",
                "--source-db",
                &self.source_db(),
                "public.big",
                "--wait",
            ],
        )
        .await;
        expect_success("add-table", &out);
        let copy_rows_per_s = ROWS as f64 / started.elapsed().as_secs_f64();

        let mut alone = Vec::new();
        for chunk in CHUNKS {
            let started = Instant::now();
            let out = on_source_cpu(&["verify", "--chunk-rows", chunk], &self.source_db()).await;
            assert_eq!(out.status.code(), Some(0), "verify alone");
            alone.push((chunk, ROWS as f64 / started.elapsed().as_secs_f64()));
        }
        // Slices: pgbench alone, then while verify loops, three times; at
        // full speed, then sharing the source.
        let mut shares = Vec::new();
        for share in SHARES {
            let (tps, rates) = self.beside_pgbench(share).await;
            shares.push((share, rates, tps));
        }

        // 1 % of the rows changed behind the target's guard, scattered.
        self.ferry_dst
            .batch_execute(
                "begin;
                 alter table big disable trigger pgferry_guard;
                 update big set b = 'tampered' where id % 100 = 7;
                 alter table big enable always trigger pgferry_guard;
                 commit;",
            )
            .await
            .expect("tamper");
        let (code, repair_s, text) = self.check_big("repair").await;
        assert_eq!(code, Some(0), "repair: {text}");
        let repaired = text
            .lines()
            .find_map(|line| {
                let (_, rest) = line.split_once(" left, ")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0);
        let (code, _, _) = self.check_big("verify").await;
        self.set_apart(false, &[]);
        Verified {
            copy_rows_per_s,
            alone,
            shares,
            repair: (repair_s, repaired),
            equal_after: code == Some(0),
        }
    }
}

/// `source-agent COMMAND... --source-db SOURCE_DB public.big`, on the
/// source's CPU.
async fn on_source_cpu(command: &[&str], source_db: &str) -> std::process::Output {
    tokio::process::Command::new("taskset")
        .args(["-c", SOURCE_CPU])
        .arg(support::agent::bin("source-agent"))
        .args(command)
        .args(["--source-db", source_db, "public.big"])
        .output()
        .await
        .expect("source-agent runs")
}
