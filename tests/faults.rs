//! A randomized fault suite. A bank runs on the source (money moves between
//! accounts in multi-row transactions, accounts open and close, and the
//! total never changes) while a seeded schedule injects faults: `kill -9`
//! of either agent and either PostgreSQL server, SIGSTOP/SIGCONT pauses of
//! each, and a TCP proxy between the agents that drops, resets and stalls
//! connections. A checker samples the target all along: the total must
//! hold in every sample (no torn transaction is ever visible). At the end
//! the target equals the source and its progress moved one batch at a time.
//! The fan-out run does the same with a second target taking the bank too:
//! each fault aimed at a target hits one of the two, drawn from the schedule.
//!
//! `PGFERRY_SEED` replays a schedule (the seed is printed);
//! `PGFERRY_FAULTS` sets how many faults (default 20; the long run is 200).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::Rng;
use proptest::test_runner::TestRng;
use support::proxy::Proxy;
use support::setup::{
    APPLIER, APPLIER_PASSWORD, Writer, assert_progress_moved_one_batch_at_a_time, checksum,
    record_progress_history, serving_source_agent, serving_target_agent, session_or_pause,
    source_agent,
};
use support::{Agent, PgCluster, Replication, wait_until};
use tokio_postgres::Client;

/// Accounts that never close; money moves between them.
const ACCOUNTS: u64 = 50;
/// What each account opens with.
const OPENING: i64 = 1000;
/// The bank's total, in every committed state.
const TOTAL: i64 = ACCOUNTS as i64 * OPENING;

/// What the schedule does to the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillSourceAgent,
    KillTargetAgent,
    KillSourceDatabase,
    KillTargetDatabase,
    PauseSourceAgent,
    PauseTargetAgent,
    PauseSourceDatabase,
    PauseTargetDatabase,
    DropLink,
    ResetLink,
    StallLink,
}

const FAULTS: [Fault; 11] = [
    Fault::KillSourceAgent,
    Fault::KillTargetAgent,
    Fault::KillSourceDatabase,
    Fault::KillTargetDatabase,
    Fault::PauseSourceAgent,
    Fault::PauseTargetAgent,
    Fault::PauseSourceDatabase,
    Fault::PauseTargetDatabase,
    Fault::DropLink,
    Fault::ResetLink,
    Fault::StallLink,
];

/// Writer `k`'s transaction of round `round`: a transfer in two statements,
/// a transfer in one statement of two rows, an account opened with money
/// from another, or an account closed into another.
fn bank_transaction(k: i64, round: i64) -> String {
    let accounts = ACCOUNTS as i64;
    let a = (round * 7919 + k * 31) % accounts + 1;
    let mut b = (round * 104_729 + 3) % accounts + 1;
    if a == b {
        b = a % accounts + 1;
    }
    let x = round % 97 + 1;
    let own = 1_000 + k * 10_000_000;
    match round % 10 {
        3 => format!(
            "begin;
             insert into bank.accounts values ({id}, 0);
             update bank.accounts set balance = balance - {x} where id = {a};
             update bank.accounts set balance = balance + {x} where id = {id};
             commit;",
            id = own + round
        ),
        8 => format!(
            "begin;
             with gone as (
               delete from bank.accounts
               where id = (select min(id) from bank.accounts where id > {own} and id < {next})
               returning balance)
             update bank.accounts set balance = balance + coalesce((select sum(balance) from gone), 0)
             where id = {a};
             commit;",
            next = own + 10_000_000
        ),
        0 | 5 => format!(
            "update bank.accounts set balance = balance + case id when {a} then -{x} else {x} end
             where id in ({a}, {b})"
        ),
        _ => format!(
            "begin;
             update bank.accounts set balance = balance - {x} where id = {a};
             update bank.accounts set balance = balance + {x} where id = {b};
             commit;"
        ),
    }
}

/// Samples the target's bank until stopped; every sample must hold the
/// total (or no row at all, before the initial copy).
struct Checker {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Checker {
    fn start(conninfo: String) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let (flag, counted) = (stop.clone(), samples.clone());
        let task = tokio::spawn(async move {
            let mut anomalies = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let Some(client) = session_or_pause(&conninfo).await else {
                    continue;
                };
                while !flag.load(Ordering::Relaxed) {
                    let Ok(row) = client
                        .query_one(
                            "select count(*), coalesce(sum(balance), 0)::bigint from bank.accounts",
                            &[],
                        )
                        .await
                    else {
                        break;
                    };
                    let (rows, total): (i64, i64) = (row.get(0), row.get(1));
                    if rows > 0 && total != TOTAL {
                        anomalies.push(format!("{rows} accounts hold {total}, not {TOTAL}"));
                    }
                    counted.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            anomalies
        });
        Checker {
            stop,
            samples,
            task,
        }
    }

    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let anomalies = self.task.await.expect("checker task");
        (self.samples.load(Ordering::Relaxed), anomalies)
    }
}

/// A number in `range` from the schedule's generator.
fn pick(rng: &mut TestRng, range: std::ops::Range<u64>) -> u64 {
    range.start + rng.next_u64() % (range.end - range.start)
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The bank's schema and table on a target, owned by the applier.
fn target_bank() -> String {
    format!(
        "create schema bank authorization {APPLIER};
         create table bank.accounts (id bigint primary key, balance bigint not null);
         alter table bank.accounts owner to {APPLIER};"
    )
}

/// A second target of the fan-out run: its cluster, a superuser session on
/// its database, and its agent.
struct Second {
    cluster: PgCluster,
    client: Client,
    agent: Agent,
}

/// Sets up the bank on both sides, replicated through `proxy`; with
/// `fan_out`, also to a second target (not through the proxy), the source
/// agent streaming to both.
async fn bank(fan_out: bool) -> (Replication, Proxy, Option<Second>) {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(&format!(
            "create schema bank;
             create table bank.accounts (id bigint primary key, balance bigint not null);
             insert into bank.accounts select g, {OPENING} from generate_series(1, {ACCOUNTS}) g;"
        ))
        .await
        .unwrap();
    r.dst.batch_execute(&target_bank()).await.unwrap();
    source_agent(&["add-table", "--source-db", &r.source_db, "bank.accounts"]).await;
    r.record_progress_history().await;
    let proxy = Proxy::start(r.target_port).await;
    r.target_url = format!("http://127.0.0.1:{}", proxy.port);
    if !fan_out {
        r.start_agents().await;
        return (r, proxy, None);
    }
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let admin = cluster.connect("postgres").await;
    for sql in [
        "create database digoal".to_owned(),
        format!("create role {APPLIER} login password '{APPLIER_PASSWORD}'"),
        format!("grant create on database digoal to {APPLIER}"),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let client = cluster.connect("digoal").await;
    client.batch_execute(&target_bank()).await.unwrap();
    let target_db = cluster.conninfo("digoal", APPLIER, APPLIER_PASSWORD);
    support::setup::expect_success(
        "target install",
        &support::run_command("target-agent", &["install", "--target-db", &target_db]).await,
    );
    record_progress_history(&client).await;
    let (agent, url) = serving_target_agent(&target_db).await;
    let db = r.source_db.clone();
    for (name, address) in [("main", r.target_url.as_str()), ("second", &url)] {
        source_agent(&["add-target", "--source-db", &db, name, "--address", address]).await;
    }
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        "bank.accounts",
        "--target",
        "second",
    ])
    .await;
    r.start_target_agent().await;
    r.source_agent = Some(serving_source_agent(&db).await.0);
    (
        r,
        proxy,
        Some(Second {
            cluster,
            client,
            agent,
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_under_random_faults_never_shows_a_torn_transaction_and_ends_equal() {
    bank_under_random_faults(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_fanned_out_to_two_targets_under_random_faults_never_shows_a_torn_transaction() {
    bank_under_random_faults(true).await;
}

async fn bank_under_random_faults(fan_out: bool) {
    let (seed, mut rng) = support::seeded();
    let faults: usize = std::env::var("PGFERRY_FAULTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("PGFERRY_SEED={seed} PGFERRY_FAULTS={faults}");

    let (mut r, proxy, mut second) = bank(fan_out).await;
    let checker = Checker::start(r.target.conninfo("digoal", "postgres", ""));
    let second_checker = second
        .as_ref()
        .map(|s| Checker::start(s.cluster.conninfo("digoal", "postgres", "")));
    let writers: Vec<Writer> = (0..2)
        .map(|k| Writer::start_with(r.source_db.clone(), move |round| bank_transaction(k, round)))
        .collect();
    let started = std::time::Instant::now();
    let mut injected = BTreeMap::<Fault, usize>::new();
    let mut second_hits = 0;
    for _ in 0..faults {
        sleep_ms(pick(&mut rng, 100..1200)).await;
        let fault = FAULTS[pick(&mut rng, 0..FAULTS.len() as u64) as usize];
        *injected.entry(fault).or_default() += 1;
        let pause = pick(&mut rng, 50..1500);
        // With two targets, a fault aimed at a target hits one of them.
        let aimed_at_target = matches!(
            fault,
            Fault::KillTargetAgent
                | Fault::KillTargetDatabase
                | Fault::PauseTargetAgent
                | Fault::PauseTargetDatabase
        );
        let other = match &mut second {
            Some(s) if aimed_at_target && pick(&mut rng, 0..2) == 1 => Some(s),
            _ => None,
        };
        second_hits += usize::from(other.is_some());
        match fault {
            Fault::KillSourceAgent | Fault::KillTargetAgent => {
                let agent = match other {
                    Some(s) => &mut s.agent,
                    None if fault == Fault::KillSourceAgent => r.source_agent(),
                    None => r.target_agent(),
                };
                agent.kill9().await;
                sleep_ms(pause / 4).await;
                agent.restart();
            }
            Fault::KillSourceDatabase | Fault::KillTargetDatabase => {
                let cluster = match &other {
                    Some(s) => &s.cluster,
                    None if fault == Fault::KillSourceDatabase => &r.source,
                    None => &r.target,
                };
                cluster.kill9();
                sleep_ms(pause / 4).await;
                tokio::task::block_in_place(|| cluster.start_server());
            }
            Fault::PauseSourceAgent | Fault::PauseTargetAgent => {
                let agent = match other {
                    Some(s) => &mut s.agent,
                    None if fault == Fault::PauseSourceAgent => r.source_agent(),
                    None => r.target_agent(),
                };
                agent.signal("-STOP");
                sleep_ms(pause).await;
                agent.signal("-CONT");
            }
            Fault::PauseSourceDatabase | Fault::PauseTargetDatabase => {
                let cluster = match &other {
                    Some(s) => &s.cluster,
                    None if fault == Fault::PauseSourceDatabase => &r.source,
                    None => &r.target,
                };
                cluster.signal_all("-STOP");
                sleep_ms(pause).await;
                cluster.signal_all("-CONT");
            }
            Fault::DropLink => proxy.drop_connections(),
            Fault::ResetLink => proxy.reset_connections(),
            Fault::StallLink => proxy.stall(Duration::from_millis(pause)).await,
        }
    }
    let mut committed = 0;
    for writer in writers {
        committed += writer.stop().await;
    }
    let faulted_for = started.elapsed();
    r.source_agent().assert_running();
    r.target_agent().assert_running();
    r.reconnect_source().await;
    r.reconnect_target().await;
    let synced = std::time::Instant::now();
    let (accounts, _) = r
        .wait_tables_in_sync(
            &[("bank.accounts", "bank.accounts")],
            Duration::from_secs(120),
        )
        .await;
    let caught_up = synced.elapsed();
    let (samples, anomalies) = checker.stop().await;
    let batches = r.assert_progress_moved_one_batch_at_a_time().await;
    let total: i64 = r
        .dst
        .query_one("select sum(balance)::bigint from bank.accounts", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "seed {seed}: {faults} faults in {faulted_for:.1?} {injected:?}; {committed} source \
         transactions committed, {accounts} accounts; target caught up {caught_up:.1?} after the \
         last fault; {batches} batches applied one at a time; {samples} target samples, {} anomalies",
        anomalies.len()
    );
    assert!(
        anomalies.is_empty(),
        "torn states seen on the target: {anomalies:?}"
    );
    assert_eq!(total, TOTAL, "the target's total");
    assert_eq!(
        checksum(&r.src, "bank.accounts").await,
        checksum(&r.dst, "bank.accounts").await
    );
    assert!(committed > 0 && batches > 0);
    if let (Some(mut s), Some(checker)) = (second, second_checker) {
        s.agent.assert_running();
        s.client = s.cluster.connect("digoal").await;
        wait_until(
            "the second target equals the source",
            Duration::from_secs(120),
            || async {
                let want = checksum(&r.src, "bank.accounts").await;
                (checksum(&s.client, "bank.accounts").await == want).then_some(())
            },
        )
        .await;
        let (samples, anomalies) = checker.stop().await;
        let batches = assert_progress_moved_one_batch_at_a_time(&s.client).await;
        println!(
            "second target: hit by {second_hits} of the faults; {batches} batches applied one \
             at a time; {samples} samples"
        );
        assert!(
            anomalies.is_empty(),
            "torn states seen on the second target: {anomalies:?}"
        );
        assert!(batches > 0);
    }
}
