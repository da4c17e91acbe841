//! Two databases that trade the source role (switchover): `a` and `b`,
//! each on its own cluster with pgferry's source and target schemas, the
//! same tables owned by the applier on both, `a` replicating them to `b`
//! at first. Each side has a fixed port for its target agent, which the
//! other side streams to once it is the source. An application writes
//! through whichever side accepts its writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::setup::{APPLIER, APPLIER_PASSWORD, expect_success, free_port, wait_serving_at};
use super::{Agent, PgCluster, run_command, wait_until};

/// The tables both sides have, with the rows `a` starts with.
pub const TABLES: &str = "
    create table app.accounts (id int primary key, balance bigint not null, note text);
    create table app.ledger (id bigint primary key, side int not null, payload jsonb,
                             at timestamptz not null default now());
    create table app.events (id bigserial primary key, v text);";

/// The tables, for comparisons.
pub const TABLE_NAMES: [&str; 3] = ["app.accounts", "app.ledger", "app.events"];

/// One of the two databases.
pub struct Side {
    /// Its source id, and the target name the other side knows it by.
    pub name: &'static str,
    /// Its cluster.
    pub cluster: PgCluster,
    /// A superuser session.
    pub db: Client,
    /// The source agent's CONNINFO (a superuser: the DDL watch).
    pub source_db: String,
    /// The target agent's CONNINFO (the applier).
    pub target_db: String,
    /// Where its target agent listens.
    pub port: u16,
    /// Its target agent, when running.
    pub target_agent: Option<Agent>,
    /// Its source agent, when running.
    pub source_agent: Option<Agent>,
}

impl Side {
    /// Its target agent's address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts its target agent, serving.
    pub async fn start_target_agent(&mut self) {
        let args: Vec<String> = [
            "run",
            "--target-db",
            &self.target_db,
            "--listen",
            &format!("127.0.0.1:{}", self.port),
        ]
        .map(String::from)
        .to_vec();
        let mut agent = Agent::spawn("target-agent", &args);
        wait_serving_at(&mut agent, &self.url(), None).await;
        self.target_agent = Some(agent);
    }

    /// Starts its source agent (every target recorded), serving.
    pub async fn start_source_agent(&mut self) {
        let health = free_port();
        let args: Vec<String> = [
            "run",
            "--source-db",
            &self.source_db,
            "--source-id",
            self.name,
            "--max-backoff",
            "1s",
            "--health-listen",
            &format!("127.0.0.1:{health}"),
        ]
        .map(String::from)
        .to_vec();
        let mut agent = Agent::spawn("source-agent", &args);
        wait_serving_at(&mut agent, &format!("http://127.0.0.1:{health}"), None).await;
        self.source_agent = Some(agent);
    }

    /// Stops its source agent (SIGTERM), if running.
    pub async fn stop_source_agent(&mut self) {
        if let Some(mut agent) = self.source_agent.take() {
            agent.terminate(Duration::from_secs(20)).await;
        }
    }

    /// kill -9 of its server, started again at once; a new session.
    pub async fn restart_database_after_kill9(&mut self) {
        self.cluster.kill9();
        self.cluster.start_server();
        self.db = self.cluster.connect("app").await;
    }

    /// Each table's rows as text, in key order.
    pub async fn rows(&self) -> Vec<String> {
        let mut all = Vec::new();
        for table in TABLE_NAMES {
            let row = self
                .db
                .query_one(
                    &format!("select coalesce(string_agg(t::text, E'\\n' order by t.id), '') from {table} t"),
                    &[],
                )
                .await
                .expect("rows");
            all.push(row.get(0));
        }
        all
    }
}

/// The two databases.
pub struct Pair {
    /// `a` and `b`.
    pub sides: [Side; 2],
}

impl Pair {
    /// Both clusters, schemas and tables; `a` streams every table to `b`
    /// (recorded as target `b`), with 10 accounts to copy.
    pub async fn new() -> Pair {
        Pair::with_settings("").await
    }

    /// [`Pair::new`] on clusters with `settings` (postgresql.conf lines).
    pub async fn with_settings(settings: &str) -> Pair {
        let settings = settings.to_owned();
        let (one, two) = tokio::task::spawn_blocking(move || {
            (
                PgCluster::start_with(&settings),
                PgCluster::start_with(&settings),
            )
        })
        .await
        .expect("clusters start");
        let a = side("a", one).await;
        let b = side("b", two).await;
        a.db.batch_execute(
            "insert into app.accounts select g, 0, 'account ' || g from generate_series(0, 9) g",
        )
        .await
        .expect("accounts");
        for args in [
            vec!["add-target", "b", "--address", &b.url()],
            vec!["add-table", "app.accounts", "--target", "b"],
            vec!["add-table", "app.ledger", "--target", "b"],
            vec!["add-table", "app.events", "--target", "b"],
        ] {
            let args = [args, vec!["--source-db", &a.source_db]].concat();
            expect_success(
                &format!("source-agent {args:?}"),
                &run_command("source-agent", &args).await,
            );
        }
        Pair { sides: [a, b] }
    }

    /// [`Pair::new`] with `b`'s target agent and `a`'s source agent
    /// running, every table copied.
    pub async fn replicating() -> Pair {
        let mut pair = Pair::new().await;
        pair.sides[1].start_target_agent().await;
        pair.sides[0].start_source_agent().await;
        pair.wait_equal(Duration::from_secs(60)).await;
        pair
    }

    /// An application writing as fast as it can, through `a` first.
    pub fn app(&self) -> App {
        let conninfos = [
            self.sides[0].source_db.clone(),
            self.sides[1].source_db.clone(),
        ];
        App::start(conninfos, 0)
    }

    /// `source-agent switchover`'s arguments from side `from` to the other.
    pub fn switchover_args(&self, from: usize) -> Vec<String> {
        let (old, new) = (&self.sides[from], &self.sides[1 - from]);
        [
            "switchover",
            "--source-db",
            &old.source_db,
            "--target",
            new.name,
            "--reverse-address",
            &old.url(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Waits until both sides hold the same rows of every table.
    pub async fn wait_equal(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (a, b) = (self.sides[0].rows().await, self.sides[1].rows().await);
            if a == b {
                return;
            }
            if Instant::now() > deadline {
                let source_log = |side: &Side| {
                    side.source_agent
                        .as_ref()
                        .map(Agent::log)
                        .unwrap_or_default()
                };
                panic!(
                    "sides differ after {timeout:?}:\na: {a:?}\nb: {b:?}\nsource agent a:\n{}\nsource agent b:\n{}",
                    source_log(&self.sides[0]),
                    source_log(&self.sides[1])
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `source-agent switchover` from side `from` to the other side, which
    /// must succeed; its output.
    pub async fn switchover(&self, from: usize) -> String {
        self.wait_copied(from).await;
        let args = self.switchover_args(from);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = run_command("source-agent", &args).await;
            // As a DBA would: again once the agent is back and connected
            // (after a crash it backs off a while).
            let stderr = String::from_utf8_lossy(&out.stderr);
            let wait = stderr.contains("no source-agent run streams to it")
                || stderr.contains("its stream is not connected");
            if out.status.success() || !wait || Instant::now() > deadline {
                return expect_success("switchover", &out);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits, as a DBA would before a switchover (one is refused while a
    /// copy is under way), until side `from` has copied every table to the
    /// other.
    pub async fn wait_copied(&self, from: usize) {
        let (old, new) = (&self.sides[from], &self.sides[1 - from]);
        wait_until("every table is copied", Duration::from_secs(60), || async {
            let copying: i64 = old
                .db
                .query_one(
                    "select count(*) from pgferry.tables t join pgferry.targets g using (target_id)
                     where g.name = $1 and t.state <> 'replicating'",
                    &[&new.name],
                )
                .await
                .ok()?
                .get(0);
            (copying == 0).then_some(())
        })
        .await;
    }

    /// The whole hand-over from side `from`: the switchover, then the old
    /// source's agent stopped and its target agent started, and the new
    /// source's agent started (the steps `switchover` prints).
    pub async fn hand_over(&mut self, from: usize) -> String {
        let out = self.switchover(from).await;
        let [a, b] = &mut self.sides;
        let (old, new) = if from == 0 { (a, b) } else { (b, a) };
        old.stop_source_agent().await;
        if old.target_agent.is_none() {
            old.start_target_agent().await;
        }
        if new.source_agent.is_none() {
            new.start_source_agent().await;
        }
        out
    }

    /// Every write of `written` on both sides, the same rows on both, and
    /// `verify` from side `source` finding nothing.
    pub async fn settle(&self, written: &Written, source: usize) {
        for side in &self.sides {
            has_every_write(side, written).await;
        }
        self.wait_equal(Duration::from_secs(60)).await;
        self.verify_from(source).await;
    }

    /// `source-agent verify` from side `source` to the other, which must
    /// find nothing.
    pub async fn verify_from(&self, source: usize) {
        let (from, to) = (&self.sides[source], &self.sides[1 - source]);
        let out = run_command(
            "source-agent",
            &[
                "verify",
                "--source-db",
                &from.source_db,
                "--target",
                to.name,
            ],
        )
        .await;
        expect_success("verify", &out);
    }
}

async fn side(name: &'static str, cluster: PgCluster) -> Side {
    cluster
        .connect("postgres")
        .await
        .batch_execute("create database app")
        .await
        .expect("create database");
    let db = cluster.connect("app").await;
    db.batch_execute(&format!(
        "create role {APPLIER} login password '{APPLIER_PASSWORD}';
         grant create on database app to {APPLIER};
         create schema app authorization {APPLIER};
         {TABLES}
         alter table app.accounts owner to {APPLIER};
         alter table app.ledger owner to {APPLIER};
         alter table app.events owner to {APPLIER};"
    ))
    .await
    .expect("tables");
    let source_db = cluster.conninfo("app", "postgres", "");
    let target_db = cluster.conninfo("app", APPLIER, APPLIER_PASSWORD);
    // The target's first: the applier creates schema pgferry, where the
    // superuser then adds the source's tables.
    expect_success(
        "target install",
        &run_command("target-agent", &["install", "--target-db", &target_db]).await,
    );
    expect_success(
        "source install",
        &run_command("source-agent", &["install", "--source-db", &source_db]).await,
    );
    Side {
        name,
        cluster,
        db,
        source_db,
        target_db,
        port: free_port(),
        target_agent: None,
        source_agent: None,
    }
}

/// An application writing through whichever side accepts: each
/// transaction inserts a ledger row of a new id, a row of `app.events`
/// (its id from the sequence) and moves an account's balance. Refused by a
/// fence or a guard, or unable to connect, it tries the other side with the
/// same id.
pub struct App {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Written>,
}

/// What the application wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// The ids of the ledger rows committed, with the side that took each.
    pub committed: Vec<(i64, usize)>,
    /// Writes refused (fenced or guarded).
    pub refused: u64,
    /// The longest time from a refused write to the next accepted one.
    pub longest_gap: Duration,
    /// The longest a single write took to be accepted or refused (a write
    /// may wait for a lock rather than be refused).
    pub longest_write: Duration,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} writes, {} refused, writes unavailable for at most {} ms, the longest write {} ms",
            self.committed.len(),
            self.refused,
            self.longest_gap.as_millis(),
            self.longest_write.as_millis()
        )
    }
}

impl App {
    /// Starts writing through side `first` of the CONNINFOs, as fast as
    /// it can.
    pub fn start(conninfos: [String; 2], first: usize) -> App {
        App::start_paced(conninfos, first, Duration::ZERO, 0)
    }

    /// Starts writing through side `first` of the CONNINFOs, a transaction
    /// every `every` at most, its ledger ids after `ids_after` (an earlier
    /// application's ids stay theirs).
    pub fn start_paced(
        conninfos: [String; 2],
        first: usize,
        every: Duration,
        ids_after: i64,
    ) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut written = Written::default();
            let mut side = first;
            let mut clients: [Option<Client>; 2] = [None, None];
            let mut id = ids_after;
            let mut refused_since: Option<Instant> = None;
            let mut next = tokio::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                id += 1;
                next += every;
                tokio::time::sleep_until(next).await;
                loop {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    if clients[side].is_none() {
                        clients[side] = super::setup::session_or_pause(&conninfos[side]).await;
                    }
                    let Some(client) = &clients[side] else {
                        // Down: the other side may have taken over.
                        refused_since.get_or_insert_with(Instant::now);
                        side = 1 - side;
                        continue;
                    };
                    let sql = format!(
                        "begin;
                         insert into app.ledger (id, side, payload)
                           values ({id}, {side}, jsonb_build_object('n', {id}, 'null', null));
                         insert into app.events (v) values ('event of {id}');
                         update app.accounts set balance = balance + {id} where id = {id} % 10;
                         commit;"
                    );
                    let started = Instant::now();
                    let result = client.batch_execute(&sql).await;
                    written.longest_write = written.longest_write.max(started.elapsed());
                    match result {
                        Ok(()) => {
                            written.committed.push((id, side));
                            if let Some(since) = refused_since.take() {
                                written.longest_gap = written.longest_gap.max(since.elapsed());
                            }
                            break;
                        }
                        Err(err)
                            if err.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
                                || err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) =>
                        {
                            let _ = client.batch_execute("rollback").await;
                            written.refused += 1;
                            refused_since.get_or_insert_with(Instant::now);
                            side = 1 - side;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(_) => clients[side] = None,
                    }
                }
            }
            written
        });
        App { stop, task }
    }

    /// Stops writing; what was written.
    pub async fn stop(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("application task")
    }
}

/// Waits until `side`'s database has every ledger id of `written`.
pub async fn has_every_write(side: &Side, written: &Written) {
    let ids: Vec<i64> = written.committed.iter().map(|(id, _)| *id).collect();
    let want = ids.len() as i64;
    wait_until(
        &format!("side {} has all {want} writes", side.name),
        Duration::from_secs(60),
        || async {
            let have: i64 = side
                .db
                .query_one(
                    "select count(*) from app.ledger where id = any ($1)",
                    &[&ids],
                )
                .await
                .ok()?
                .get(0);
            (have == want).then_some(())
        },
    )
    .await;
}
