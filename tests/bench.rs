//! The benchmark: pgferry and PostgreSQL's native logical replication, one
//! after the other between the same two throwaway clusters, measuring
//! capture overhead, catch-up throughput, lag, bulk statements (and the
//! change queue's size after each), the agents' memory with a backlog, and
//! catch-up across a 50 ms link. Prints a table and writes JSON
//! (`bench.json`, or the path given as the first argument).
//!
//! Run it with `tests/bench.sh` (release build of the agents).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use support::cluster::bindir;
use support::setup::{checksum, expect_success, free_port, wait_serving};
use support::{Agent, PgCluster, run_command};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::Client;

/// Rows preloaded in the tables pgbench updates.
const PGBENCH_ROWS: i64 = 100_000;
/// Row changes of the catch-up test.
const CATCH_UP_CHANGES: i64 = 200_000;
/// How long a heartbeat is looked for without pauses (then every
/// millisecond: a bulk statement's heartbeat waits seconds, and looking
/// without pause would take a core from the apply being timed).
const LOOK_CLOSELY: Duration = Duration::from_millis(50);
/// The target agent's settings the backlog is drained with: its defaults,
/// which buy catch-up speed with memory (a 32 MiB net-change window that
/// spans a 200k catch-up, a 16 MiB HTTP/2 window for a 100 ms round trip),
/// and windows small enough that a 200k backlog fills them too.
const BACKLOG_SETTINGS: [(&str, &[&str]); 2] = [
    ("default", &[]),
    (
        "bounded",
        &[
            "--compact-window-bytes",
            "16777216",
            "--receive-window-bytes",
            "4194304",
        ],
    ),
];

/// What the relay of the far lag measure adds each way (a 50 ms round trip).
const FAR_DELAY: Duration = Duration::from_millis(25);

/// How long the target agent is down in the recovery measure: past the
/// source agent's --max-backoff (5 s), so its reconnect back-off is grown.
const RECOVERY_OUTAGE: Duration = Duration::from_secs(7);

/// INSERTs of the single-statement measure (then half as many UPDATEs and
/// half as many DELETEs).
const SINGLE_INSERTS: u32 = 100_000;

/// The single-statement INSERTs: [`SINGLE_INSERTS`] unless
/// `PGFERRY_BENCH_SINGLE_INSERTS` says fewer, for a quick look at a change.
fn single_inserts() -> u32 {
    std::env::var("PGFERRY_BENCH_SINGLE_INSERTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SINGLE_INSERTS)
}

/// How long the queue is watched under load (`PGFERRY_BENCH_ONLY=soak`).
const SOAK_SECONDS: u32 = 300;
/// How often the queue is looked at meanwhile.
const SOAK_SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Rounds of the distance measure (its figures are their medians).
const DISTANCE_ROUNDS: usize = 3;
/// Rows per transaction in the catch-up test.
const TX_ROWS: i64 = 100;

const TABLES: &str = "
    create table t_rep (id int primary key, v int not null, info text);
    create table t_plain (id int primary key, v int not null, info text);
    create table hb (id int primary key, sent timestamptz);
    create table bulk (id int primary key, v int);
    create table drain (id int primary key, v int, info text);
    create table single_rep (id int primary key, v int not null);
    create table single_plain (id int primary key, v int not null);
    create sequence single_rep_insert; create sequence single_rep_delete;
    create sequence single_plain_insert; create sequence single_plain_delete;";

const PRELOAD: &str = "
    insert into t_rep select g, 0, md5(g::text) from generate_series(1, 100000) g;
    insert into t_plain select g, 0, md5(g::text) from generate_series(1, 100000) g;";

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
}

impl Bench {
    async fn new() -> Bench {
        let (source, target) = tokio::task::spawn_blocking(|| {
            // Durable settings, as in production (the test suite's
            // clusters run with fsync off); PGFERRY_BENCH_FSYNC=off compares.
            let fsync = std::env::var("PGFERRY_BENCH_FSYNC").unwrap_or_else(|_| "on".into());
            let durable = format!(
                "fsync = {fsync}\nfull_page_writes = {fsync}\nsynchronous_commit = on\n\
                 shared_buffers = 256MB\nmax_wal_size = 2GB\n"
            );
            let logical = "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n";
            // The subscriber's launcher restarts an apply worker no sooner
            // than wal_retrieve_retry_interval (5 s) after its last start:
            // a catch-up run soon after subscribing would time that wait.
            let subscriber = "wal_retrieve_retry_interval = 100ms\n";
            // Slow statements and lock waits go to the server logs, which
            // PGFERRY_BENCH_LOGS keeps.
            let slow = "log_lock_waits = on\nsession_preload_libraries = 'auto_explain'\n\
                        auto_explain.log_min_duration = '5s'\n";
            let durable = format!("{durable}{slow}");
            // PGFERRY_BENCH_STATEMENTS=1: where the source's time goes.
            let source_extra = if statements_shown() {
                "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
            } else {
                ""
            };
            (
                PgCluster::start_with(&format!("{durable}{logical}{source_extra}")),
                PgCluster::start_with(&format!("{durable}{subscriber}")),
            )
        })
        .await
        .expect("clusters start");
        for cluster in [&source, &target] {
            let admin = cluster.connect("postgres").await;
            for sql in [
                "create database ferry",
                "create database native",
                "create database slony",
                "create role applier login password 'applier-pw'",
                "grant create on database ferry to applier",
            ] {
                admin.batch_execute(sql).await.expect(sql);
            }
        }
        if pinned() {
            source.pids().iter().for_each(|pid| pin(pid, 0));
            target.pids().iter().for_each(|pid| pin(pid, 1));
        }
        let ferry_src = source.connect("ferry").await;
        let ferry_dst = target.connect("ferry").await;
        let native_src = source.connect("native").await;
        let native_dst = target.connect("native").await;
        let slony_src = source.connect("slony").await;
        let slony_dst = target.connect("slony").await;
        for client in [&ferry_src, &native_src, &slony_src] {
            client.batch_execute(TABLES).await.expect("tables");
            client.batch_execute(PRELOAD).await.expect("preload");
        }
        native_dst.batch_execute(TABLES).await.expect("tables");
        slony_dst.batch_execute(TABLES).await.expect("tables");
        ferry_dst.batch_execute(TABLES).await.expect("tables");
        ferry_dst
            .batch_execute(
                "alter table t_rep owner to applier; alter table hb owner to applier;
                 alter table bulk owner to applier; alter table drain owner to applier;
                 alter table single_rep owner to applier;",
            )
            .await
            .expect("owners");
        if statements_shown() {
            for client in [&ferry_src, &native_src, &slony_src] {
                client
                    .batch_execute("create extension pg_stat_statements")
                    .await
                    .expect("pg_stat_statements");
            }
        }
        let mut bench = Bench {
            source,
            target,
            ferry_src,
            ferry_dst,
            native_src,
            native_dst,
            slony_src,
            slony_dst,
            slons: Vec::new(),
            target_port: free_port(),
            compression: "none",
            target_settings: &[],
            source_agent: None,
            target_agent: None,
        };
        bench.set_up_pgferry().await;
        bench
    }

    fn source_db(&self) -> String {
        self.source.conninfo("ferry", "postgres", "")
    }

    fn target_db(&self) -> String {
        self.target.conninfo("ferry", "applier", "applier-pw")
    }

    async fn set_up_pgferry(&mut self) {
        let source_db = self.source_db();
        let target_db = self.target_db();
        expect_success(
            "install",
            &run_command("source-agent", &["install", "--source-db", &source_db]).await,
        );
        expect_success(
            "install",
            &run_command("target-agent", &["install", "--target-db", &target_db]).await,
        );
        for table in [
            "public.t_rep",
            "public.hb",
            "public.bulk",
            "public.drain",
            "public.single_rep",
        ] {
            let out = run_command(
                "source-agent",
                &["add-table", "--source-db", &source_db, table],
            )
            .await;
            expect_success("add-table", &out);
        }
        self.start_pgferry(None).await;
        self.wait_equal(System::Pgferry, "t_rep", Duration::from_secs(120))
            .await;
    }

    /// Subscribes the target to the source's tables. Done once pgferry's
    /// turn is over, so that neither system's replication uses the two
    /// cores while the other is measured (a subscription's walsender
    /// decodes all of the cluster's WAL, pgferry's writes too).
    async fn set_up_native(&mut self) {
        self.native_src
            .batch_execute("create publication p for table t_rep, hb, bulk, drain, single_rep")
            .await
            .expect("publication");
        let conninfo = self.source.conninfo("native", "postgres", "");
        self.native_dst
            .batch_execute(&format!(
                "create subscription s connection '{conninfo}' publication p"
            ))
            .await
            .expect("subscription");
        self.wait_equal(System::Native, "t_rep", Duration::from_secs(120))
            .await;
        // Every table's initial sync done, or a measure taken right away
        // would time the native apply waiting for its table sync workers.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let syncing: i64 = self
                .native_dst
                .query_one(
                    "select count(*) from pg_subscription_rel where srsubstate <> 'r'",
                    &[],
                )
                .await
                .expect("subscription state")
                .get(0);
            if syncing == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "native table sync not done");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// With `PGFERRY_BENCH_STATEMENTS=1`: prints the source database's
    /// statements that took most time since the last call (nested ones
    /// too: what the capture and the agents run), then starts counting
    /// afresh; `None` only starts afresh.
    async fn statements(&self, system: System, measure: Option<&str>) {
        if !statements_shown() {
            return;
        }
        let (src, _) = self.sessions(system);
        if let Some(measure) = measure {
            eprintln!(
                "{}: source statements during {measure} (ms, calls, statement):",
                system.name()
            );
            for row in src
                .query(
                    "select round(total_exec_time)::bigint, calls,
                            left(regexp_replace(query, '\\s+', ' ', 'g'), 120)
                     from pg_stat_statements
                     where dbid = (select oid from pg_database where datname = current_database())
                     order by total_exec_time desc limit 20",
                    &[],
                )
                .await
                .expect("pg_stat_statements")
            {
                let (ms, calls, query): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
                eprintln!("{ms:>8} {calls:>8}  {query}");
            }
        }
        src.batch_execute("select pg_stat_statements_reset()")
            .await
            .expect("pg_stat_statements_reset");
    }

    /// Replicates the measured tables with Slony-I: a cluster of two nodes,
    /// one set, the subscriber's initial copy done; slon's settings are its
    /// defaults but the SYNC check interval (`-s 100`, 2 s by default),
    /// which is what bounds its lag. Done once the other systems' turns are
    /// over, as native's is.
    async fn set_up_slony(&mut self) {
        let node = |cluster: &PgCluster| cluster.conninfo("slony", "postgres", "");
        let mut script = format!(
            "cluster name = bench;
             node 1 admin conninfo = '{source}';
             node 2 admin conninfo = '{target}';
             init cluster (id = 1, comment = 'source');
             create set (id = 1, origin = 1, comment = 'measured tables');\n",
            source = node(&self.source),
            target = node(&self.target),
        );
        for (id, table) in ["t_rep", "hb", "drain", "single_rep"].iter().enumerate() {
            script.push_str(&format!(
                "set add table (set id = 1, origin = 1, id = {}, fully qualified name = 'public.{table}');\n",
                id + 1
            ));
        }
        script.push_str(&format!(
            "store node (id = 2, comment = 'target', event node = 1);
             store path (server = 1, client = 2, conninfo = '{source}');
             store path (server = 2, client = 1, conninfo = '{target}');\n",
            source = node(&self.source),
            target = node(&self.target),
        ));
        slonik(&script);
        let origin = self.slon(&self.source, 0);
        let subscriber = self.slon(&self.target, 1);
        self.slons = vec![origin, subscriber];
        // slonik waits for the slons to confirm the nodes before subscribing.
        slonik(&format!(
            "cluster name = bench;
             node 1 admin conninfo = '{source}';
             node 2 admin conninfo = '{target}';
             subscribe set (id = 1, provider = 1, receiver = 2, forward = no);\n",
            source = node(&self.source),
            target = node(&self.target),
        ));
        self.wait_equal(System::Slony, "t_rep", Duration::from_secs(300))
            .await;
    }

    /// Starts a slon daemon for `cluster`'s node, on `cpu` when pinned; its
    /// output goes to `PGFERRY_BENCH_LOGS`/slon-N.log, when set.
    fn slon(&self, cluster: &PgCluster, cpu: u32) -> std::process::Child {
        let log = match std::env::var("PGFERRY_BENCH_LOGS") {
            Ok(dir) => std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(std::path::Path::new(&dir).join(format!("slon-{cpu}.log")))
                    .expect("slon log"),
            ),
            Err(_) => std::process::Stdio::null(),
        };
        // Pinned from the start (slon forks its worker at once).
        let mut command = if pinned() {
            let mut taskset = std::process::Command::new("taskset");
            taskset.args(["-c", &cpu.to_string(), "slon"]);
            taskset
        } else {
            std::process::Command::new("slon")
        };
        command
            .args(["-s", "100", "bench"])
            .arg(cluster.conninfo("slony", "postgres", ""))
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("slon runs")
    }

    /// Starts both agents; the source agent reaches the target through
    /// `via` (a relay port) when given.
    async fn start_pgferry(&mut self, via: Option<u16>) {
        // Agents still running would hold the target's port (the new target
        // agent failed to bind while the old one served) and their logs
        // would be lost.
        self.stop_pgferry().await;
        let mut target_args = vec![
            "run".to_string(),
            "--target-db".into(),
            self.target_db(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.target_port),
        ];
        target_args.extend(self.target_settings.iter().map(|s| s.to_string()));
        let mut target = Agent::spawn("target-agent", &target_args);
        if pinned() {
            pin(&target.pid().to_string(), 1);
        }
        wait_serving(&mut target, self.target_port).await;
        let health = free_port();
        let source_args = vec![
            "run".to_string(),
            "--source-db".into(),
            self.source_db(),
            "--target".into(),
            format!("http://127.0.0.1:{}", via.unwrap_or(self.target_port)),
            "--source-id".into(),
            "bench".into(),
            "--health-listen".into(),
            format!("127.0.0.1:{health}"),
            "--compression".into(),
            self.compression.into(),
        ];
        let mut source = Agent::spawn("source-agent", &source_args);
        if pinned() {
            pin(&source.pid().to_string(), 0);
        }
        wait_serving(&mut source, health).await;
        self.source_agent = Some(source);
        self.target_agent = Some(target);
    }

    /// Stops both agents; returns their peak RSS in MiB (source, target).
    /// With `PGFERRY_BENCH_LOGS=DIR`, their logs are appended to
    /// DIR/source-agent.log and DIR/target-agent.log (with
    /// `PGFERRY_AGENT_LOG=debug` they time every batch).
    async fn stop_pgferry(&mut self) -> (u64, u64) {
        let mut peaks = (0, 0);
        if let Some(mut agent) = self.source_agent.take() {
            peaks.0 = peak_rss_mib(agent.pid());
            agent.terminate(Duration::from_secs(30)).await;
            keep_log("source-agent", &agent);
        }
        if let Some(mut agent) = self.target_agent.take() {
            peaks.1 = peak_rss_mib(agent.pid());
            agent.terminate(Duration::from_secs(30)).await;
            keep_log("target-agent", &agent);
        }
        peaks
    }

    async fn stop_consumer(&mut self, system: System) {
        match system {
            System::Pgferry => {
                self.stop_pgferry().await;
            }
            System::Native => self
                .native_dst
                .batch_execute("alter subscription s disable")
                .await
                .expect("disable"),
            System::Slony => {
                if let Some(mut subscriber) = self.slons.pop() {
                    stop_process(&mut subscriber);
                }
            }
        }
    }

    async fn start_consumer(&mut self, system: System) {
        match system {
            System::Pgferry => self.start_pgferry(None).await,
            System::Native => self
                .native_dst
                .batch_execute("alter subscription s enable")
                .await
                .expect("enable"),
            System::Slony => {
                let subscriber = self.slon(&self.target, 1);
                self.slons.push(subscriber);
            }
        }
    }

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
        let mut command = if pinned() {
            let mut taskset = std::process::Command::new("taskset");
            taskset.args(["-c", "0"]).arg(bindir().join("pgbench"));
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

    /// Measure 1: Capture overhead: pgbench single-row updates, 4 clients,
    /// uncapped, alternating 5 s slices on the replicated and the plain
    /// table, 3 rounds. Returns (tps replicated, tps plain, overhead %).
    fn overhead(&self, system: System) -> (f64, f64, f64) {
        let (mut rep, mut plain) = (0.0, 0.0);
        for _ in 0..3 {
            rep += self.pgbench(system, &script("t_rep"), &["-c", "4", "-j", "2", "-T", "5"]);
            plain += self.pgbench(
                system,
                &script("t_plain"),
                &["-c", "4", "-j", "2", "-T", "5"],
            );
        }
        (rep / 3.0, plain / 3.0, (1.0 - rep / plain) * 100.0)
    }

    /// Measure: the writers' own time for single-statement autocommit
    /// changes, the workload that compacts least: 100k INSERTs, 50k UPDATEs
    /// and 50k DELETEs, one row each, from one pgbench client, on the
    /// replicated table and on an identical plain one, phase by phase in
    /// turn. Returns the seconds (replicated, plain), summed over the phases.
    /// Each DELETE takes its id in a subquery: `nextval` in the WHERE
    /// clause itself would run for every row scanned.
    fn single_statements(&self, system: System) -> (f64, f64) {
        let (mut rep, mut plain) = (0.0, 0.0);
        for (statements, phase) in [
            (
                single_inserts(),
                "insert into {t} values (nextval('{t}_insert'), 0);",
            ),
            (
                single_inserts() / 2,
                "\\set id random(1, 100000)\nupdate {t} set v = v + 1 where id = :id;",
            ),
            (
                single_inserts() / 2,
                "delete from {t} where id = (select nextval('{t}_delete'));",
            ),
        ] {
            for (table, seconds) in [("single_rep", &mut rep), ("single_plain", &mut plain)] {
                let script = phase.replace("{t}", table);
                let count = statements.to_string();
                let tps = self.pgbench(system, &script, &["-c", "1", "-t", &count]);
                *seconds += statements as f64 / tps;
            }
        }
        (rep, plain)
    }

    /// Writes the catch-up workload to `drain`: inserts, updates and
    /// deletes, `TX_ROWS` rows per transaction, `changes` row changes in all.
    async fn write_changes(&self, system: System, changes: i64, tx_rows: i64) {
        let (src, _) = self.sessions(system);
        let start: i64 = src
            .query_one("select coalesce(max(id), 0)::bigint from drain", &[])
            .await
            .expect("max id")
            .get(0);
        let inserts = changes / 2;
        let updates = changes * 3 / 10;
        let deletes = changes - inserts - updates;
        let mut id = start;
        while id < start + inserts {
            src.batch_execute(&format!(
                "insert into drain select g, 0, md5(g::text) from generate_series({}, {}) g",
                id + 1,
                id + tx_rows
            ))
            .await
            .expect("insert");
            id += tx_rows;
        }
        let mut done = 0;
        while done < updates {
            let from = start + (done % inserts) + 1;
            src.batch_execute(&format!(
                "update drain set v = v + 1 where id between {from} and {}",
                from + tx_rows - 1
            ))
            .await
            .expect("update");
            done += tx_rows;
        }
        done = 0;
        while done < deletes {
            let from = start + done + 1;
            src.batch_execute(&format!(
                "delete from drain where id between {from} and {}",
                from + tx_rows - 1
            ))
            .await
            .expect("delete");
            done += tx_rows;
        }
    }

    /// Measure 2: Catch-up: consumer stopped, 200k changes written, then timed
    /// until the target's checksum equals the source's. Returns rows/s.
    async fn catch_up(&mut self, system: System) -> f64 {
        self.stop_consumer(system).await;
        self.write_changes(system, CATCH_UP_CHANGES, TX_ROWS).await;
        let started = Instant::now();
        self.start_consumer(system).await;
        self.wait_equal(system, "drain", Duration::from_secs(600))
            .await;
        CATCH_UP_CHANGES as f64 / started.elapsed().as_secs_f64()
    }

    /// Measure 3: Lag: pgbench at 500 TPS for 30 s while a heartbeat row is written
    /// every 200 ms and looked for on the target. Returns (p50, p99, max) ms.
    async fn lag(&self, system: System) -> (f64, f64, f64) {
        let (src, _) = self.sessions(system);
        let load = self.paced_pgbench(system, script("t_rep"), 30);
        let base: i32 = src
            .query_one("select coalesce(max(id), 0) from hb", &[])
            .await
            .expect("hb")
            .get(0);
        let mut lags = Vec::new();
        let started = Instant::now();
        let mut n = base;
        while started.elapsed() < Duration::from_secs(29) {
            n += 1;
            let tick = Instant::now();
            self.heartbeat(system, n, Duration::from_secs(30)).await;
            lags.push(tick.elapsed().as_secs_f64() * 1000.0);
            let next = tick + Duration::from_millis(200);
            tokio::time::sleep_until(next.into()).await;
        }
        load.join().expect("pgbench thread");
        lags.sort_by(f64::total_cmp);
        let pick = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
        (pick(0.5), pick(0.99), *lags.last().expect("samples"))
    }

    /// Measure: lag as in [`Bench::lag`], through a relay adding
    /// [`FAR_DELAY`] each way where each system crosses the network:
    /// between the agents for pgferry, between subscriber and publisher for
    /// native. Returns (p50, p99, max) in ms; not measured for Slony-I
    /// (its subscriber's path to the origin would go through the relay).
    async fn lag_far(&mut self, system: System) -> (f64, f64, f64) {
        if system == System::Slony {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        let connect = |port: u16| {
            format!(
                "alter subscription s connection 'host=127.0.0.1 port={port} user=postgres dbname=native'"
            )
        };
        match system {
            System::Pgferry => {
                let relay = relay(self.target_port, FAR_DELAY).await;
                self.stop_pgferry().await;
                self.start_pgferry(Some(relay)).await;
            }
            System::Native => {
                let relay = relay(self.source.port, FAR_DELAY).await;
                self.native_dst
                    .batch_execute(&connect(relay))
                    .await
                    .expect("subscription through the relay");
            }
            System::Slony => unreachable!("returned above"),
        }
        // Streaming through the relay before the clock runs.
        self.heartbeat(system, 8_000_000, Duration::from_secs(60))
            .await;
        let lags = self.lag(system).await;
        match system {
            System::Pgferry => {
                self.stop_pgferry().await;
                self.start_pgferry(None).await;
            }
            System::Native => self
                .native_dst
                .batch_execute(&connect(self.source.port))
                .await
                .expect("subscription direct"),
            System::Slony => unreachable!("returned above"),
        }
        lags
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

    /// The queue over a long run (issue 4's queue cleanup lever): pgbench
    /// at 500 TPS on the replicated table for [`SOAK_SECONDS`], the queue's
    /// size on disk and its live and dead rows read every
    /// [`SOAK_SAMPLE_EVERY`], then [`Bench::queue_state`] once all is acked.
    async fn soak(&self) -> Value {
        let load = self.paced_pgbench(System::Pgferry, script("t_rep"), SOAK_SECONDS);
        let started = Instant::now();
        let mut samples = Vec::new();
        while started.elapsed() < Duration::from_secs(SOAK_SECONDS.into()) {
            tokio::time::sleep(SOAK_SAMPLE_EVERY).await;
            let mut sample = self.queue_now().await;
            sample["s"] = started.elapsed().as_secs().into();
            samples.push(sample);
        }
        load.join().expect("pgbench thread");
        json!({"samples": samples, "after": self.queue_state().await})
    }

    /// Writes heartbeat row `id` on the source and waits until it is
    /// visible on the target (or `timeout` passed). For the first
    /// [`LOOK_CLOSELY`] the looks follow each other without a pause: a 1 ms
    /// sleep wakes on tokio's next millisecond but one, so with the look
    /// itself lags came out in steps of about 3 ms (1.2, 4.2, 7.2 ms in
    /// the samples of a debug run), the size of what the measure compares.
    async fn heartbeat(&self, system: System, id: i32, timeout: Duration) {
        let (src, dst) = self.sessions(system);
        let look = dst
            .prepare("select exists (select from hb where id = $1)")
            .await
            .expect("prepare the look");
        let sent = Instant::now();
        src.execute("insert into hb values ($1, clock_timestamp())", &[&id])
            .await
            .expect("heartbeat");
        while sent.elapsed() < timeout {
            let seen: bool = dst.query_one(&look, &[&id]).await.expect("look").get(0);
            if seen {
                return;
            }
            if sent.elapsed() > LOOK_CLOSELY {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Measure 4: Bulk: INSERT ... SELECT of 1M rows, then an UPDATE of all of
    /// them, each timed until a heartbeat written right after it is visible
    /// on the target: both systems apply in commit order, so the statement
    /// is applied by then. Checksums confirm it, untimed: polling checksums
    /// of a 1M-row table would take a core from the apply being timed.
    async fn bulk(&self, system: System) -> (f64, f64) {
        let (src, _) = self.sessions(system);
        let mut seconds = [0.0; 2];
        let statements = [
            "insert into bulk select generate_series(1, 1000000), 0",
            "update bulk set v = v + 1",
        ];
        for (time, sql) in seconds.iter_mut().zip(statements) {
            let marker: i32 = src
                .query_one("select coalesce(max(id), 0) + 1 from hb", &[])
                .await
                .expect("hb")
                .get(0);
            let started = Instant::now();
            src.batch_execute(sql).await.expect(sql);
            self.heartbeat(system, marker, Duration::from_secs(900))
                .await;
            *time = started.elapsed().as_secs_f64();
            self.wait_equal(system, "bulk", Duration::from_secs(900))
                .await;
        }
        (seconds[0], seconds[1])
    }

    /// After one of pgferry's measures, records [`Bench::queue_state`] under
    /// `key` (native has no queue).
    async fn record_queue(&self, system: System, queue: &mut Map<String, Value>, key: &str) {
        if system == System::Pgferry {
            queue.insert(key.into(), self.queue_state().await);
        }
    }

    /// The queue on pgferry's source once a measure's changes are all
    /// acknowledged (and deleted), plus the agent's vacuum interval: its
    /// size on disk and the dead rows left. DELETE and vacuum keep the
    /// space for reuse, so the size is the high-water mark so far.
    async fn queue_state(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left: i64 = self
                .ferry_src
                .query_one("select count(*) from pgferry.queue", &[])
                .await
                .expect("queue rows")
                .get(0);
            if left == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        self.queue_now().await
    }

    /// pgferry's queue on the source now: its size on disk, live rows and
    /// the dead rows the statistics count.
    async fn queue_now(&self) -> Value {
        let row = self
            .ferry_src
            .query_one(
                "select pg_total_relation_size('pgferry.queue') / 1048576.0::float8,
                        (select count(*) from pgferry.queue),
                        coalesce((select n_dead_tup from pg_stat_user_tables
                                  where relid = 'pgferry.queue'::regclass), 0)",
                &[],
            )
            .await
            .expect("queue state");
        let (size, live, dead): (f64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        json!({"size_mib": size, "live": live, "dead": dead})
    }

    /// Measure 5: Backlog memory: `changes` queued with the agents stopped, drained
    /// by fresh agents. Returns (source, target) peak RSS in MiB and rows/s.
    async fn backlog(&mut self, changes: i64) -> (u64, u64, f64) {
        self.stop_pgferry().await;
        self.write_changes(System::Pgferry, changes, 10_000).await;
        let started = Instant::now();
        self.start_pgferry(None).await;
        self.wait_equal(System::Pgferry, "drain", Duration::from_secs(1800))
            .await;
        let rate = changes as f64 / started.elapsed().as_secs_f64();
        let (source, target) = self.stop_pgferry().await;
        self.start_pgferry(None).await;
        (source, target, rate)
    }

    /// Measure 6: Distance: the catch-up through a relay that delays each
    /// direction by 50 ms, and right before it the same catch-up on loopback,
    /// each into an emptied table as measure 2 starts with (the backlog
    /// measure leaves it large, and checksums of a large table would weigh
    /// more than the catch-up); then both again with `--compression zstd`.
    /// The four runs go round [`DISTANCE_ROUNDS`] times, interleaved: a
    /// single catch-up on loopback swings by a third from run to run here.
    /// Returns the median rows/s of each: [loopback, relay, loopback zstd,
    /// relay zstd].
    async fn distance(&mut self) -> [f64; 4] {
        let relay = relay(self.target_port, Duration::from_millis(50)).await;
        let mut rates = [[0.0; DISTANCE_ROUNDS]; 4];
        let runs = [
            (None, "none"),
            (Some(relay), "none"),
            (None, "zstd"),
            (Some(relay), "zstd"),
        ];
        for round in 0..DISTANCE_ROUNDS {
            for (rate, (via, compression)) in rates.iter_mut().zip(runs) {
                rate[round] = self.distance_run(via, compression).await;
            }
        }
        self.compression = "none";
        self.stop_pgferry().await;
        self.start_pgferry(None).await;
        rates.map(|mut rate| {
            rate.sort_by(f64::total_cmp);
            rate[DISTANCE_ROUNDS / 2]
        })
    }

    /// Measure: recovery after a target outage. The target agent stops for
    /// longer than the source agent's reconnect back-off can grow
    /// (`--max-backoff`, 5 s), a row is written meanwhile, and the target
    /// agent starts again: milliseconds from its start until that row is on
    /// the target, for each of three outages.
    async fn recovery(&mut self) -> Vec<f64> {
        let mut times = Vec::new();
        for outage in 0..3 {
            let mut target = self.target_agent.take().expect("target agent running");
            target.terminate(Duration::from_secs(30)).await;
            tokio::time::sleep(RECOVERY_OUTAGE).await;
            let id = 9_000_000 + outage;
            self.ferry_src
                .execute("insert into hb values ($1, clock_timestamp())", &[&id])
                .await
                .expect("row written during the outage");
            let look = self
                .ferry_dst
                .prepare("select exists (select from hb where id = $1)")
                .await
                .expect("prepare the look");
            let started = Instant::now();
            target.restart();
            loop {
                let seen: bool = self
                    .ferry_dst
                    .query_one(&look, &[&id])
                    .await
                    .expect("look")
                    .get(0);
                if seen {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "row never arrived"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            self.target_agent = Some(target);
        }
        times
    }

    /// Empties the catch-up table on both sides (the agents running): a
    /// catch-up into a table left large would time its checksums too.
    async fn empty_drain(&mut self) {
        self.ferry_src
            .batch_execute("truncate drain")
            .await
            .expect("truncate");
        self.wait_equal(System::Pgferry, "drain", Duration::from_secs(120))
            .await;
    }

    /// One catch-up of [`Bench::distance`], through `via` when set, with
    /// `compression`; returns rows/s.
    async fn distance_run(&mut self, via: Option<u16>, compression: &'static str) -> f64 {
        self.empty_drain().await;
        self.stop_pgferry().await;
        self.write_changes(System::Pgferry, CATCH_UP_CHANGES, TX_ROWS)
            .await;
        self.compression = compression;
        let started = Instant::now();
        self.start_pgferry(via).await;
        self.wait_equal(System::Pgferry, "drain", Duration::from_secs(600))
            .await;
        CATCH_UP_CHANGES as f64 / started.elapsed().as_secs_f64()
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

/// A loopback TCP relay to `port` that holds every byte `delay` in each
/// direction, as a link between datacenters would. Returns its port.
async fn relay(port: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("relay listens");
    let relay_port = listener.local_addr().expect("relay addr").port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
                continue;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::spawn(delayed_copy(in_read, out_write, delay));
            tokio::spawn(delayed_copy(out_read, in_write, delay));
        }
    });
    relay_port
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, data)) = rx.recv().await {
            // The timer ticks in whole milliseconds: sleeping for what is due
            // within one would add a tick per chunk, which no real link does.
            if due > tokio::time::Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(due).await;
            }
            if to.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0
            || tx
                .send((tokio::time::Instant::now() + delay, buffer[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
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

/// Pins every thread of process `pid` to `cpu` (`taskset`); threads and
/// processes it starts later inherit it.
fn pin(pid: &str, cpu: u32) {
    // It fails for a server process that exited meanwhile, which is no error.
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), pid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("taskset runs");
}

/// Runs a slonik script, which must succeed.
fn slonik(script: &str) {
    use std::io::Write as _;
    let mut slonik = std::process::Command::new("slonik")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("slonik runs");
    slonik
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("slonik script");
    let out = slonik.wait_with_output().expect("slonik");
    assert!(
        out.status.success(),
        "slonik: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops a process with SIGTERM, then SIGKILL if it lingers.
fn stop_process(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Why Slony-I cannot be measured here, if it cannot: its programs and
/// the server's library are Debian's `slony1-2-bin` and
/// `postgresql-NN-slony1-2`.
fn slony_missing() -> Option<String> {
    let found = |program: &str| {
        std::process::Command::new(program)
            .arg("-v")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let library = std::fs::read_dir(bindir().join("../lib")).is_ok_and(|dir| {
        dir.flatten()
            .any(|f| f.file_name().to_string_lossy().starts_with("slony1_funcs"))
    });
    if found("slonik") && found("slon") && library {
        None
    } else {
        Some(
            "Slony-I is not installed (apt-get install postgresql-15-slony1-2 slony1-2-bin)".into(),
        )
    }
}

/// Whether `PGFERRY_BENCH_STATEMENTS=1` asks for the source's statements.
fn statements_shown() -> bool {
    std::env::var("PGFERRY_BENCH_STATEMENTS").is_ok_and(|on| on == "1")
}

/// Whether measurement `name` runs: all of them, unless `PGFERRY_BENCH_ONLY`
/// lists some (overhead, catch_up, lag, bulk, backlog, distance). The
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
            (rep, plain, overhead) = bench.overhead(system);
            bench.statements(system, Some("overhead")).await;
            bench
                .record_queue(system, &mut queue, "after_overhead")
                .await;
        }
        let (mut single_rep, mut single_plain) = (nan, nan);
        if selected("single") {
            eprintln!("{name}: 200k single-statement autocommit changes...");
            bench.statements(system, None).await;
            (single_rep, single_plain) = bench.single_statements(system);
            bench.statements(system, Some("single")).await;
            bench
                .wait_equal(system, "single_rep", Duration::from_secs(300))
                .await;
        }
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
                "single_s": {"replicated": single_rep, "plain": single_plain,
                             "ratio": single_rep / single_plain},
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

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    if r["pinned"].as_bool() == Some(true) {
        println!("PGFERRY_BENCH_PIN=1: the source's side on CPU 0, the target's on CPU 1");
        println!();
    }
    let (p, n, sl) = (&r["pgferry"], &r["native"], &r["slony"]);
    println!("| measure | pgferry | native | Slony-I | pgferry / native | pgferry / Slony-I |");
    println!("|---|---|---|---|---|---|");
    // Name, where in each system's results, decimals.
    let rows = [
        (
            "capture overhead, % (paired 5 s slices)",
            "/overhead_pct",
            1,
        ),
        (
            "200k single-statement changes, writers' s, replicated table",
            "/single_s/replicated",
            1,
        ),
        (
            "200k single-statement changes, writers' s, plain table",
            "/single_s/plain",
            1,
        ),
        (
            "200k single-statement changes, replicated / plain",
            "/single_s/ratio",
            2,
        ),
        (
            "catch-up of 200k changes, rows/s",
            "/catch_up_rows_per_s",
            0,
        ),
        ("lag p50 at 500 TPS, ms", "/lag_ms/p50", 1),
        ("lag p99 at 500 TPS, ms", "/lag_ms/p99", 1),
        ("lag max at 500 TPS, ms", "/lag_ms/max", 1),
        (
            "lag p50 at 500 TPS through a 50 ms round-trip relay, ms",
            "/lag_far_ms/p50",
            1,
        ),
        (
            "lag p99 at 500 TPS through a 50 ms round-trip relay, ms",
            "/lag_far_ms/p99",
            1,
        ),
        ("bulk INSERT of 1M rows, s", "/bulk_insert_s", 1),
        ("bulk UPDATE of 1M rows, s", "/bulk_update_s", 1),
    ];
    for (name, at, digits) in rows {
        let a = p.pointer(at).map_or(f64::NAN, f);
        let b = n.pointer(at).map_or(f64::NAN, f);
        let c = sl.pointer(at).map_or(f64::NAN, f);
        println!(
            "| {name} | {a:.digits$} | {b:.digits$} | {c:.digits$} | {:.2} | {:.2} |",
            a / b,
            a / c
        );
    }
    if let Some(why) = sl["skipped"].as_str() {
        println!();
        println!("Slony-I: not measured: {why}");
    }
    println!();
    println!(
        "| pgferry backlog, target settings | source agent peak RSS, MiB | target agent peak RSS, MiB | drain rows/s |"
    );
    println!("|---|---|---|---|");
    for (name, _) in BACKLOG_SETTINGS {
        let b = &r["pgferry_backlog"][name];
        for size in ["200k", "2M"] {
            println!(
                "| {size}, {name} | {} | {} | {:.0} |",
                b[size]["source_rss_mib"],
                b[size]["target_rss_mib"],
                f(&b[size]["rows_per_s"])
            );
        }
    }
    let d = &r["pgferry_distance"];
    let (near, far) = (f(&d["loopback_rows_per_s"]), f(&d["relay_50ms_rows_per_s"]));
    let (near_z, far_z) = (
        f(&d["loopback_zstd_rows_per_s"]),
        f(&d["relay_50ms_zstd_rows_per_s"]),
    );
    println!();
    println!(
        "| pgferry catch-up of 200k changes | loopback, rows/s | 50 ms relay, rows/s | relay / loopback |"
    );
    println!("|---|---|---|---|");
    println!("| plain | {near:.0} | {far:.0} | {:.2} |", far / near);
    println!(
        "| --compression zstd | {near_z:.0} | {far_z:.0} | {:.2} |",
        far_z / near_z
    );
    println!();
    if let Some(times) = r["pgferry_recovery_ms"]
        .as_array()
        .filter(|t| !t.is_empty())
    {
        let times: Vec<String> = times.iter().map(|t| format!("{:.0}", f(t))).collect();
        println!(
            "pgferry: a row written during a 7 s target outage is on the target {} ms after the target agent starts again",
            times.join(" / ")
        );
        println!();
    }
    if let Some(samples) = r["pgferry_soak"]["samples"].as_array() {
        println!("| pgferry queue at 500 TPS, after s | size, MiB | rows | dead rows |");
        println!("|---|---|---|---|");
        for sample in samples
            .iter()
            .filter(|s| s["s"].as_u64().unwrap_or(0) % 60 < 10)
        {
            println!(
                "| {} | {:.1} | {} | {} |",
                sample["s"],
                f(&sample["size_mib"]),
                sample["live"],
                sample["dead"]
            );
        }
        let most = |key: &str| samples.iter().map(|s| f(&s[key])).fold(0.0, f64::max);
        println!(
            "| most in any sample | {:.1} | {} | {} |",
            most("size_mib"),
            most("live"),
            most("dead")
        );
        let after = &r["pgferry_soak"]["after"];
        println!(
            "| acked and vacuumed, after the run | {:.1} | {} | {} |",
            f(&after["size_mib"]),
            after["live"],
            after["dead"]
        );
        println!();
    }
    println!("| pgferry queue, acked and vacuumed, after | size, MiB | rows | dead rows |");
    println!("|---|---|---|---|");
    for (key, value) in r["pgferry_queue"].as_object().into_iter().flatten() {
        println!(
            "| {key} | {:.1} | {} | {} |",
            f(&value["size_mib"]),
            value["live"],
            value["dead"]
        );
    }
}
