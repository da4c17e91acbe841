//! The benchmark: pgferry and PostgreSQL's native logical replication, one
//! after the other between the same two throwaway clusters, measuring
//! capture overhead, catch-up throughput, lag, bulk statements (and the
//! change queue's size after each), the agents' memory with a backlog,
//! catch-up across a 50 ms link, fan-out, and verify and repair. Prints a
//! table and writes JSON
//! (`bench.json`, or the path given as the first argument).
//!
//! Run it with `bench/bench.sh` (release build of the agents).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use support::cluster::bindir;
use support::setup::{checksum, expect_success, free_port, wait_serving};
use support::{Agent, PgCluster, run_command};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::Client;

mod measure;
mod relay;
mod report;
mod setup;
mod slony;

use measure::*;
use relay::*;
use report::*;
use slony::*;

/// Rows preloaded in the tables pgbench updates.
const PGBENCH_ROWS: i64 = 100_000;

const TABLES: &str = "
    create table t_rep (id int primary key, v int not null, info text);
    create table t_plain (id int primary key, v int not null, info text);
    create table hb (id int primary key, sent timestamptz);
    create table bulk (id int primary key, v int);
    create table drain (id int primary key, v int, info text);
    create table single_rep (id int primary key, v int not null);
    create table single_plain (id int primary key, v int not null);
    create sequence single_rep_insert; create sequence single_rep_delete;
    create sequence single_plain_insert; create sequence single_plain_delete;
    create table big_rep (id int primary key, n int not null, body text);
    create table big_plain (id int primary key, n int not null, body text);
    create table p_rep (id int primary key, v int not null, info text) partition by hash (id);
    create table p_plain (id int primary key, v int not null, info text) partition by hash (id);
    do $$
    begin
        for i in 0..7 loop
            execute format('create table p_rep_%s partition of p_rep for values with (modulus 8, remainder %s)', i, i);
            execute format('create table p_plain_%s partition of p_plain for values with (modulus 8, remainder %s)', i, i);
        end loop;
    end
    $$;";

const PRELOAD: &str = "
    insert into t_rep select g, 0, md5(g::text) from generate_series(1, 100000) g;
    insert into t_plain select g, 0, md5(g::text) from generate_series(1, 100000) g;
    insert into p_rep select g, 0, md5(g::text) from generate_series(1, 100000) g;
    insert into big_rep select 1, 0, string_agg(md5(g::text), '') from generate_series(1, 163840) g;
    insert into big_plain select 1, 0, string_agg(md5(g::text), '') from generate_series(1, 163840) g;
    insert into p_plain select g, 0, md5(g::text) from generate_series(1, 100000) g;";

/// Which replication system a measurement is of.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Pgferry,
    Native,
    /// Slony-I 2.2, the trigger-based peer written in C, when installed.
    Slony,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Pgferry => "pgferry",
            System::Native => "native",
            System::Slony => "slony",
        }
    }

    fn db(self) -> &'static str {
        match self {
            System::Pgferry => "ferry",
            System::Native => "native",
            System::Slony => "slony",
        }
    }
}

/// Both clusters, sessions on both sides for each system, and pgferry's agents.
struct Bench {
    source: PgCluster,
    target: PgCluster,
    ferry_src: Client,
    ferry_dst: Client,
    native_src: Client,
    native_dst: Client,
    slony_src: Client,
    slony_dst: Client,
    /// Slony's two slon daemons (origin's, subscriber's) while it runs.
    slons: Vec<std::process::Child>,
    target_port: u16,
    /// The source agent's --compression.
    compression: &'static str,
    /// Settings added to the target agent's defaults.
    target_settings: &'static [&'static str],
    source_agent: Option<Agent>,
    target_agent: Option<Agent>,
    /// Whether the source agent streams to the targets `add-target`
    /// recorded (the fan-out measure) rather than to `--target`.
    recorded_targets: bool,
    /// Whether the sides run pinned apart for the measure at hand (the
    /// fan-out measure's slices), whatever `PGFERRY_BENCH_PIN` says.
    sides_apart: bool,
}

impl Bench {
    fn sessions(&self, system: System) -> (&Client, &Client) {
        match system {
            System::Pgferry => (&self.ferry_src, &self.ferry_dst),
            System::Native => (&self.native_src, &self.native_dst),
            System::Slony => (&self.slony_src, &self.slony_dst),
        }
    }

    /// Waits until `table` has the same checksum on both sides.
    async fn wait_equal(&self, system: System, table: &str, timeout: Duration) {
        let (src, dst) = self.sessions(system);
        let deadline = Instant::now() + timeout;
        let source = checksum(src, table).await;
        loop {
            if checksum(dst, table).await == source {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} {table}: not equal after {timeout:?}",
                system.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pgbench(&self, system: System, script: &str, args: &[&str]) -> f64 {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("script.sql");
        std::fs::write(&file, script).expect("script");
        let mut command = if self.apart() {
            let mut taskset = std::process::Command::new("taskset");
            taskset
                .args(["-c", SOURCE_CPU])
                .arg(bindir().join("pgbench"));
            taskset
        } else {
            std::process::Command::new(bindir().join("pgbench"))
        };
        let out = command
            .args([
                "-n",
                "-h",
                "127.0.0.1",
                "-p",
                &self.source.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg("-f")
            .arg(&file)
            .arg(system.db())
            .output()
            .expect("pgbench runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pgbench: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("pgbench prints tps")
    }

    /// Runs `script` with pgbench at 500 TPS (4 clients) for `seconds` on
    /// `system`'s source, on a thread of its own.
    fn paced_pgbench(
        &self,
        system: System,
        script: String,
        seconds: u32,
    ) -> std::thread::JoinHandle<std::process::Output> {
        let port = self.source.port;
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().expect("temp dir");
            let file = dir.path().join("script.sql");
            std::fs::write(&file, script).expect("script");
            std::process::Command::new(bindir().join("pgbench"))
                .args([
                    "-n",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args([
                    "-c",
                    "4",
                    "-j",
                    "2",
                    "-R",
                    "500",
                    "-T",
                    &seconds.to_string(),
                    "-f",
                ])
                .arg(&file)
                .arg(system.db())
                .output()
                .expect("pgbench runs")
        })
    }
}

/// Appends an agent's log to `PGFERRY_BENCH_LOGS`/NAME.log, when set.
fn keep_log(name: &str, agent: &Agent) {
    use std::io::Write;
    let Ok(dir) = std::env::var("PGFERRY_BENCH_LOGS") else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("log directory");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(&dir).join(format!("{name}.log")))
        .and_then(|mut file| file.write_all(agent.log().as_bytes()))
        .expect("keep the agent's log");
}

/// Copies both servers' logs to `PGFERRY_BENCH_LOGS`, when set.
fn keep_server_logs(bench: &Bench) {
    let Ok(dir) = std::env::var("PGFERRY_BENCH_LOGS") else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("log directory");
    for (name, cluster) in [("source", &bench.source), ("target", &bench.target)] {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}-server.log")),
            cluster.log(),
        )
        .expect("keep a server log");
    }
}

/// Peak resident memory of a process, from /proc (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

/// pgbench's script of single-row updates of `table`.
fn script(table: &str) -> String {
    format!("\\set id random(1, {PGBENCH_ROWS})\nupdate {table} set v = v + 1 where id = :id;\n")
}

/// With `PGFERRY_BENCH_PIN=1`, the source's side (its cluster, the source
/// agent, pgbench) runs on CPU 0 and the target's (its cluster, the target
/// agent) on CPU 1, as if the target were another host: what the source's
/// writers measure is then the source's cost alone.
fn pinned() -> bool {
    std::env::var("PGFERRY_BENCH_PIN").is_ok_and(|pin| pin == "1")
}

impl Bench {
    /// Whether the source's side runs on [`SOURCE_CPU`] and the target's on
    /// [`TARGET_CPU`] now: always with `PGFERRY_BENCH_PIN=1`, else while a
    /// measure asks.
    fn apart(&self) -> bool {
        pinned() || self.sides_apart
    }
}

/// Where the source's side runs when the sides are pinned apart.
const SOURCE_CPU: &str = "0";
/// Where the target's side runs when the sides are pinned apart.
const TARGET_CPU: &str = "1";
/// Both CPUs: where every process runs unpinned.
const ANY_CPU: &str = "0,1";

/// Pins every thread of process `pid` to `cpus` (`taskset`); threads and
/// processes it starts later inherit it.
fn pin(pid: &str, cpus: &str) {
    // It fails for a server process that exited meanwhile, which is no error.
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, pid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("taskset runs");
}

/// Whether `PGFERRY_BENCH_STATEMENTS=1` asks for the source's statements.
fn statements_shown() -> bool {
    std::env::var("PGFERRY_BENCH_STATEMENTS").is_ok_and(|on| on == "1")
}

/// Whether measurement `name` runs: all of them, unless `PGFERRY_BENCH_ONLY`
/// lists some (overhead, partitioned, single, large, catch_up, lag, lag_far, bulk, backlog,
/// distance, recovery, fan_out, verify, ddl, switchover). The
/// five-minute `soak` runs only when listed there.
fn selected(name: &str) -> bool {
    std::env::var("PGFERRY_BENCH_ONLY").map_or(true, |only| only.split(',').any(|n| n == name))
}

#[tokio::main]
async fn main() {
    let json_path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench.json".into());
    eprintln!("setting up two clusters, pgferry and a native subscription...");
    let mut bench = Bench::new().await;
    let mut results = Map::new();
    let mut queue = Map::new();
    for system in [System::Pgferry, System::Native, System::Slony] {
        let name = system.name();
        // PGFERRY_BENCH_SYSTEMS=pgferry (or native) measures one system.
        if std::env::var("PGFERRY_BENCH_SYSTEMS")
            .is_ok_and(|only| !only.split(',').any(|n| n == name))
        {
            continue;
        }
        if system == System::Native {
            bench.stop_pgferry().await;
            eprintln!("native: subscribing...");
            bench.set_up_native().await;
        }
        if system == System::Slony {
            if let Some(why) = slony_missing() {
                eprintln!("slony: skipped: {why}");
                results.insert(name.into(), json!({ "skipped": why }));
                continue;
            }
            bench.stop_pgferry().await;
            // Native's walsender would decode Slony's writes too.
            bench
                .native_dst
                .batch_execute(
                    "do $$ begin
                         if exists (select from pg_subscription where subname = 's') then
                             alter subscription s disable;
                         end if;
                     end $$",
                )
                .await
                .expect("native paused");
            eprintln!("slony: subscribing...");
            bench.set_up_slony().await;
        }
        let nan = f64::NAN;
        let (mut rep, mut plain, mut overhead) = (nan, nan, nan);
        if selected("overhead") {
            eprintln!("{name}: capture overhead (3 rounds of 5 s slices)...");
            bench.statements(system, None).await;
            (rep, plain, overhead) = bench.overhead(system, "t_rep", "t_plain");
            bench.statements(system, Some("overhead")).await;
            bench
                .record_queue(system, &mut queue, "after_overhead")
                .await;
        }
        let (mut part_rep, mut part_plain, mut part_overhead) = (nan, nan, nan);
        // Slony-I replicates no partitioned table.
        if selected("partitioned") && system != System::Slony {
            eprintln!(
                "{name}: capture overhead on a table of 8 partitions (3 rounds of 5 s slices)..."
            );
            (part_rep, part_plain, part_overhead) = bench.overhead(system, "p_rep", "p_plain");
            bench
                .wait_equal(system, "p_rep", Duration::from_secs(300))
                .await;
        }
        let (mut single_rep, mut single_plain) = (nan, nan);
        let mut single_alone = (nan, nan);
        let mut single_cpu = nan;
        if selected("single") {
            eprintln!("{name}: 200k single-statement autocommit changes...");
            bench.statements(system, None).await;
            let cpu_before = bench.agents_source_cpu(system).await;
            (single_rep, single_plain) = bench.single_statements(system);
            single_cpu = bench.agents_source_cpu(system).await - cpu_before;
            bench.statements(system, Some("single")).await;
            bench
                .wait_equal(system, "single_rep", Duration::from_secs(300))
                .await;
            // The split issue 30 asks for: what the capture alone costs
            // (agents stopped, the queue only growing), in the same run.
            if system == System::Pgferry {
                eprintln!("{name}: the same with the agents stopped (capture alone)...");
                bench.stop_consumer(system).await;
                single_alone = bench.single_statements(system);
                bench.start_consumer(system).await;
                bench
                    .wait_equal(system, "single_rep", Duration::from_secs(300))
                    .await;
            }
        }
        let mut large = None;
        // Slony-I is given only the tables of the measures it takes part in.
        if selected("large") && system != System::Slony {
            eprintln!("{name}: 3 rounds of 1,000 updates of a small column beside a 5 MB value...");
            large = Some(bench.large(system).await);
        }
        let large = large.unwrap_or(Large {
            seconds: (nan, nan),
            wal_per_update: (nan, nan),
            queue_per_update: nan,
        });
        let mut catch_up = nan;
        if selected("catch_up") {
            eprintln!("{name}: catch-up of {CATCH_UP_CHANGES} changes...");
            catch_up = bench.catch_up(system).await;
            // Also lets the acks and the vacuum of the 200k changes finish
            // before the lag is measured.
            bench
                .record_queue(system, &mut queue, "after_catch_up")
                .await;
        }
        let (mut p50, mut p99, mut max) = (nan, nan, nan);
        if selected("lag") {
            eprintln!("{name}: lag at 500 TPS for 30 s...");
            (p50, p99, max) = bench.lag(system).await;
            bench.record_queue(system, &mut queue, "after_lag").await;
        }
        let (mut far_p50, mut far_p99, mut far_max) = (nan, nan, nan);
        if selected("lag_far") {
            eprintln!("{name}: lag at 500 TPS for 30 s through a 25 ms-each-way relay...");
            (far_p50, far_p99, far_max) = bench.lag_far(system).await;
        }
        let (mut insert, mut update) = (nan, nan);
        if selected("bulk") && system != System::Slony {
            eprintln!("{name}: bulk 1M-row insert and update...");
            (insert, update) = bench.bulk(system).await;
            bench.record_queue(system, &mut queue, "after_bulk").await;
        }
        results.insert(
            name.into(),
            json!({
                "overhead_pct": overhead, "tps_replicated": rep, "tps_plain": plain,
                "partitioned": {"overhead_pct": part_overhead, "tps_replicated": part_rep,
                                "tps_plain": part_plain},
                "single_s": {"replicated": single_rep, "plain": single_plain,
                             "ratio": single_rep / single_plain,
                             "capture_alone": {"replicated": single_alone.0, "plain": single_alone.1,
                                               "ratio": single_alone.0 / single_alone.1},
                             "agents_add": single_rep / single_plain - single_alone.0 / single_alone.1,
                             "agents_cpu_s": single_cpu},
                "large": {"replicated_s": large.seconds.0, "plain_s": large.seconds.1,
                          "ratio": large.seconds.0 / large.seconds.1,
                          "wal_bytes_per_update": large.wal_per_update.0,
                          "plain_wal_bytes_per_update": large.wal_per_update.1,
                          "queue_bytes_per_update": large.queue_per_update},
                "catch_up_rows_per_s": catch_up,
                "lag_ms": {"p50": p50, "p99": p99, "max": max},
                "lag_far_ms": {"p50": far_p50, "p99": far_p99, "max": far_max},
                "bulk_insert_s": insert, "bulk_update_s": update,
            }),
        );
        for mut slon in std::mem::take(&mut bench.slons) {
            stop_process(&mut slon);
        }
    }
    bench
        .native_dst
        .batch_execute("drop subscription if exists s")
        .await
        .expect("drop subscription");
    bench.start_pgferry(None).await;
    if selected("verify") {
        eprintln!("pgferry: verify of a 1M-row table beside pgbench, and a repair of 1 %...");
        let v = bench.verify().await;
        results.insert(
            "pgferry_verify".into(),
            json!({
                "copy_rows_per_s": v.copy_rows_per_s,
                "alone": v.alone.iter().map(|(chunk, rate)| json!({
                    "chunk_rows": chunk, "verify_rows_per_s": rate,
                })).collect::<Vec<_>>(),
                "shares": v.shares.iter().map(|(share, rates, tps)| json!({
                    "source_share": share, "verify_rows_per_s": rates,
                    "tps_alone": tps.0, "tps_during_verify": tps.1,
                })).collect::<Vec<_>>(),
                "repair_s": v.repair.0, "repair_rows": v.repair.1,
                "equal_after_repair": v.equal_after,
            }),
        );
    }
    if selected("ddl") {
        eprintln!(
            "pgferry: the DDL watch's cost to writers, and ALTERs of a 1M-row table under load..."
        );
        let d = bench.schema_changes().await;
        results.insert(
            "pgferry_ddl".into(),
            json!({
                "tps_with_event_triggers": d.tps.0, "tps_without_event_triggers": d.tps.1,
                "alters": d.alters.iter().map(|(name, replicated, alone)| json!({
                    "alter": name, "source_commit_to_target_s": replicated, "target_alone_s": alone,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    let mut backlogs = Map::new();
    if selected("backlog") {
        for (name, settings) in BACKLOG_SETTINGS {
            eprintln!("pgferry: backlog memory (200k, then 2M changes), {name} settings...");
            bench.target_settings = settings;
            bench.empty_drain().await;
            let mut sizes = Map::new();
            for (size, changes) in [("200k", 200_000), ("2M", 2_000_000)] {
                let (source, target, rate) = bench.backlog(changes).await;
                sizes.insert(
                    size.into(),
                    json!({"source_rss_mib": source, "target_rss_mib": target, "rows_per_s": rate}),
                );
            }
            backlogs.insert(name.into(), Value::Object(sizes));
        }
        bench.target_settings = &[];
        bench.stop_pgferry().await;
        bench.start_pgferry(None).await;
    }
    let mut distance = [f64::NAN; 4];
    if selected("distance") {
        eprintln!("pgferry: catch-up on loopback and through a 50 ms relay, plain and zstd...");
        distance = bench.distance().await;
    }
    let mut recovery = Vec::new();
    if selected("recovery") {
        eprintln!("pgferry: first batch after three target outages...");
        recovery = bench.recovery().await;
    }
    results.insert("pgferry_recovery_ms".into(), json!(recovery));
    if selected("fan_out") {
        eprintln!("pgferry: writers' cost and catch-up with three targets against one...");
        let fan = bench.fan_out().await;
        bench.start_pgferry(None).await;
        results.insert(
            "pgferry_fan_out".into(),
            json!({
                "one_target_tps": fan.one.0, "plain_tps_beside_one": fan.one.1,
                "three_targets_tps": fan.three.0, "plain_tps_beside_three": fan.three.1,
                "three_targets_catch_up_rows_per_s": fan.catch_up,
                "source_agent_cpu_s": {"one_target": fan.agent_cpu.0, "three_targets": fan.agent_cpu.1},
                "target_side_cpu_s": {"one_target": fan.target_cpu.0, "three_targets": fan.target_cpu.1},
            }),
        );
    }
    if selected("switchover") {
        eprintln!("pgferry: three switchovers at 500 TPS...");
        let runs = switchover().await;
        results.insert(
            "pgferry_switchover".into(),
            json!({
                "unavailable_ms": runs.iter().map(|r| r.unavailable_ms).collect::<Vec<_>>(),
                "longest_write_ms": runs.iter().map(|r| r.longest_write_ms).collect::<Vec<_>>(),
                "took_ms": runs.iter().map(|r| r.took_ms).collect::<Vec<_>>(),
            }),
        );
    }
    results.insert("pinned".into(), json!(pinned()));
    if std::env::var("PGFERRY_BENCH_ONLY").is_ok_and(|only| only.split(',').any(|n| n == "soak")) {
        eprintln!("pgferry: the queue over {SOAK_SECONDS} s at 500 TPS...");
        results.insert("pgferry_soak".into(), bench.soak().await);
    }
    results.insert("pgferry_backlog".into(), Value::Object(backlogs));
    results.insert(
        "pgferry_distance".into(),
        json!({
            "loopback_rows_per_s": distance[0], "relay_50ms_rows_per_s": distance[1],
            "loopback_zstd_rows_per_s": distance[2], "relay_50ms_zstd_rows_per_s": distance[3],
        }),
    );
    results.insert("pgferry_queue".into(), Value::Object(queue));
    let results = Value::Object(results);
    print_table(&results);
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&results).expect("json"),
    )
    .expect("write json");
    eprintln!("wrote {json_path}");
    bench.stop_pgferry().await;
    keep_server_logs(&bench);
    drop(bench.source);
    drop(bench.target);
}

/// Process `pid`'s user and system CPU seconds so far (/proc), with its
/// ended children's when `children`; 0 for a process gone meanwhile.
pub(crate) fn cpu_seconds(pid: &str, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields 14 to 17 (utime, stime, cutime, cstime), counted after the
    // command's ")".
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|n| n.parse().expect("ticks"))
        .collect();
    let ticks = if children {
        fields.iter().sum::<f64>()
    } else {
        fields[0] + fields[1]
    };
    ticks / 100.0
}
