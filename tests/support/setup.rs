//! The seed's set-up on real parts: a source cluster with `digoal.loc_test`,
//! a target cluster with `digoal.rmt_test` owned by an ordinary applier
//! role, pgferry installed on both sides, and the two agents.

use std::time::Duration;

use tokio_postgres::Client;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{Agent, PgCluster, run_command, wait_until};

/// The applier's role and password on the target.
pub const APPLIER: &str = "applier";
/// The applier's password.
pub const APPLIER_PASSWORD: &str = "applier-pw";
/// The seed's table definition, used for both sides.
pub const SEED_TABLE: &str =
    "(id int primary key, info text, create_time timestamp, modify_time timestamp)";

/// Two clusters replicating `digoal.loc_test` into `digoal.rmt_test`.
pub struct Replication {
    /// The source cluster.
    pub source: PgCluster,
    /// The target cluster.
    pub target: PgCluster,
    /// A superuser session on the source database.
    pub src: Client,
    /// A superuser session on the target database.
    pub dst: Client,
    /// The source agent's CONNINFO.
    pub source_db: String,
    /// The target agent's CONNINFO (the applier role).
    pub target_db: String,
    /// Where the target agent listens.
    pub target_port: u16,
    /// Its --listen address (loopback unless a test says otherwise).
    pub target_listen: String,
    /// The target agent's address as the source agent is given it.
    pub target_url: String,
    /// The certificate (PEM) the harness trusts when the target agent
    /// speaks TLS.
    pub target_ca: Option<String>,
    /// Where the source agent serves health.
    pub source_health_port: u16,
    /// The target agent, once started.
    pub target_agent: Option<Agent>,
    /// The source agent, once started.
    pub source_agent: Option<Agent>,
    /// Extra flags for `target-agent run`.
    pub target_args: Vec<String>,
    /// Extra flags for `source-agent run`.
    pub source_args: Vec<String>,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `source-agent ARGS`, which must succeed; returns its stdout.
pub async fn source_agent(args: &[&str]) -> String {
    expect_success(
        &format!("source-agent {args:?}"),
        &run_command("source-agent", args).await,
    )
}

/// Asserts an agent command succeeded and returns its stdout.
pub fn expect_success(what: &str, out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Replication {
    /// Clusters, roles, tables and both installs; the seed table registered.
    pub async fn new() -> Replication {
        let (source, target) =
            tokio::task::spawn_blocking(|| (PgCluster::start(), PgCluster::start()))
                .await
                .expect("clusters start");
        for cluster in [&source, &target] {
            cluster
                .connect("postgres")
                .await
                .batch_execute("create database digoal")
                .await
                .expect("create database");
        }
        let src = source.connect("digoal").await;
        src.batch_execute(&format!(
            "create schema digoal; create table digoal.loc_test {SEED_TABLE};"
        ))
        .await
        .expect("source table");
        let dst = target.connect("digoal").await;
        dst.batch_execute(&format!(
            "create role {APPLIER} login password '{APPLIER_PASSWORD}';
             grant create on database digoal to {APPLIER};
             create schema digoal authorization {APPLIER};
             create table digoal.rmt_test {SEED_TABLE};
             alter table digoal.rmt_test owner to {APPLIER};
             create role other_writer login password 'other';
             grant usage on schema digoal to other_writer;
             grant all on digoal.rmt_test to other_writer;"
        ))
        .await
        .expect("target table");
        let source_db = source.conninfo("digoal", "postgres", "");
        let target_db = target.conninfo("digoal", APPLIER, APPLIER_PASSWORD);
        expect_success(
            "source install",
            &run_command("source-agent", &["install", "--source-db", &source_db]).await,
        );
        expect_success(
            "target install",
            &run_command("target-agent", &["install", "--target-db", &target_db]).await,
        );
        expect_success(
            "add-table",
            &run_command(
                "source-agent",
                &[
                    "add-table",
                    "--source-db",
                    &source_db,
                    "digoal.loc_test",
                    "--as",
                    "digoal.rmt_test",
                ],
            )
            .await,
        );
        let target_port = free_port();
        Replication {
            source,
            target,
            src,
            dst,
            source_db,
            target_db,
            target_port,
            target_listen: format!("127.0.0.1:{target_port}"),
            target_url: format!("http://127.0.0.1:{target_port}"),
            target_ca: None,
            source_health_port: free_port(),
            target_agent: None,
            source_agent: None,
            target_args: Vec::new(),
            source_args: Vec::new(),
        }
    }

    /// Creates `source` on the source and `target` on the target from one
    /// `definition`, the target's owned by the applier.
    pub async fn create_table(&self, source: &str, target: &str, definition: &str) {
        self.src
            .batch_execute(&format!("create table {source} {definition}"))
            .await
            .expect("source table");
        self.dst
            .batch_execute(&format!(
                "create table {target} {definition}; alter table {target} owner to {APPLIER}"
            ))
            .await
            .expect("target table");
    }

    /// Starts both agents and waits until they serve.
    pub async fn start_agents(&mut self) {
        self.start_target_agent().await;
        self.start_source_agent().await;
    }

    /// Starts the target agent and waits until its health says SERVING. A
    /// test running beside may take the free port between its pick and the
    /// agent's bind: then the agent listens on another, and the address the
    /// source is given follows.
    pub async fn start_target_agent(&mut self) {
        for _ in 0..3 {
            let args = vec![
                "run".into(),
                "--target-db".into(),
                self.target_db.clone(),
                "--listen".into(),
                self.target_listen.clone(),
            ];
            let args = [args, self.target_args.clone()].concat();
            let ca = self.target_ca.as_deref();
            if let Some(agent) = spawn_serving("target-agent", &args, &self.target_url, ca).await {
                self.target_agent = Some(agent);
                return;
            }
            let (old, new) = (format!(":{}", self.target_port), free_port());
            self.target_listen = self.target_listen.replace(&old, &format!(":{new}"));
            self.target_url = self.target_url.replace(&old, &format!(":{new}"));
            self.target_port = new;
        }
        panic!("no free port for the target agent in three tries");
    }

    /// Starts the source agent and waits until its health says SERVING. A
    /// test running beside may take the free health port between its pick
    /// and the agent's bind: then it picks another.
    pub async fn start_source_agent(&mut self) {
        for _ in 0..3 {
            let args = vec![
                "run".into(),
                "--source-db".into(),
                self.source_db.clone(),
                "--target".into(),
                self.target_url.clone(),
                "--source-id".into(),
                "dc1".into(),
                "--health-listen".into(),
                format!("127.0.0.1:{}", self.source_health_port),
                "--max-backoff".into(),
                "1s".into(),
            ];
            let args = [args, self.source_args.clone()].concat();
            let address = format!("http://127.0.0.1:{}", self.source_health_port);
            if let Some(agent) = spawn_serving("source-agent", &args, &address, None).await {
                self.source_agent = Some(agent);
                return;
            }
            self.source_health_port = free_port();
        }
        panic!("no free port for the source agent's health in three tries");
    }

    /// kill -9 of the source agent, then a restart, serving again.
    pub async fn kill9_and_restart_source_agent(&mut self) {
        let port = self.source_health_port;
        let agent = self.source_agent();
        agent.kill9().await;
        agent.restart();
        wait_serving(agent, port).await;
    }

    /// kill -9 of the target agent, then a restart, serving again.
    pub async fn kill9_and_restart_target_agent(&mut self) {
        let (url, ca) = (self.target_url.clone(), self.target_ca.clone());
        let agent = self.target_agent();
        agent.kill9().await;
        agent.restart();
        wait_serving_at(agent, &url, ca.as_deref()).await;
    }

    /// The target agent (started).
    pub fn target_agent(&mut self) -> &mut Agent {
        self.target_agent.as_mut().expect("target agent started")
    }

    /// The source agent (started).
    pub fn source_agent(&mut self) -> &mut Agent {
        self.source_agent.as_mut().expect("source agent started")
    }

    /// The seed's check, `count(*), sum(hashtext(t::text))`, on both sides.
    pub async fn checksums(&self) -> ((i64, i64), (i64, i64)) {
        (
            checksum(&self.src, "digoal.loc_test").await,
            checksum(&self.dst, "digoal.rmt_test").await,
        )
    }

    /// Waits until the target matches the source, the source queue is empty
    /// and every table's initial copy is acked; returns the checksum.
    pub async fn wait_in_sync(&mut self, timeout: Duration) -> (i64, i64) {
        self.wait_tables_in_sync(&[("digoal.loc_test", "digoal.rmt_test")], timeout)
            .await
    }

    /// [`Replication::wait_in_sync`] for `tables` (source, target) pairs;
    /// returns the first pair's checksum.
    pub async fn wait_tables_in_sync(
        &mut self,
        tables: &[(&str, &str)],
        timeout: Duration,
    ) -> (i64, i64) {
        let result = tokio::time::timeout(timeout, async {
            loop {
                let mut first = None;
                let mut equal = true;
                for (source, target) in tables {
                    let sums = (
                        checksum(&self.src, source).await,
                        checksum(&self.dst, target).await,
                    );
                    equal &= sums.0 == sums.1;
                    first.get_or_insert(sums.0);
                }
                let settled: bool = self
                    .src
                    .query_one(
                        "select not exists (select from pgferry.queue)
                            and not exists (select from pgferry.tables
                                            where state <> 'replicating' and not removed)",
                        &[],
                    )
                    .await
                    .expect("queue and table states")
                    .get(0);
                if equal && settled {
                    return first.expect("a table");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match result {
            Ok(sum) => sum,
            Err(_) => {
                let mut sums = Vec::new();
                for (source, target) in tables {
                    sums.push((
                        checksum(&self.src, source).await,
                        checksum(&self.dst, target).await,
                    ));
                }
                let logs = format!(
                    "source agent:\n{}\ntarget agent:\n{}",
                    self.source_agent
                        .as_ref()
                        .map(|a| a.log())
                        .unwrap_or_default(),
                    self.target_agent
                        .as_ref()
                        .map(|a| a.log())
                        .unwrap_or_default()
                );
                panic!("not in sync after {timeout:?}: (source, target) {sums:?}\n{logs}");
            }
        }
    }

    /// Clusters and both agents replicating, row 1 (with `info`) on both
    /// sides.
    pub async fn replicating_one_row(info: &str) -> Replication {
        let mut r = Replication::new().await;
        r.start_agents().await;
        r.src
            .execute(
                "insert into digoal.loc_test values (1, $1, now(), now())",
                &[&info],
            )
            .await
            .expect("row 1");
        r.wait_in_sync(Duration::from_secs(60)).await;
        r
    }

    /// Starts the agents, writes one row and waits until `status` names every
    /// one of `parts` with nothing applied; then restarts the source agent with
    /// `source_args` instead and waits until the target equals the source.
    pub async fn refused_until_the_source_gets(
        &mut self,
        parts: &[&str],
        source_args: Vec<String>,
    ) {
        self.start_agents().await;
        self.src
            .batch_execute("insert into digoal.loc_test values (1, 'x', now(), now())")
            .await
            .unwrap();
        let error = self.wait_for_error(parts).await["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        println!("status error: {error}");
        assert_eq!(self.target_progress().await, 0, "nothing applied");
        self.source_agent().kill9().await;
        self.source_args = source_args;
        self.start_source_agent().await;
        self.wait_in_sync(Duration::from_secs(90)).await;
    }

    /// Waits until `status` shows an error containing every one of
    /// `parts` on the (only) target; returns that target's status.
    pub async fn wait_for_error(&self, parts: &[&str]) -> serde_json::Value {
        wait_until(
            &format!("status shows an error naming {parts:?}"),
            Duration::from_secs(90),
            || async {
                let status = self.target_status().await;
                let error = status["last_error"].as_str()?;
                parts.iter().all(|p| error.contains(p)).then_some(status)
            },
        )
        .await
    }

    /// `status --json`'s entry for the source's first target.
    pub async fn target_status(&self) -> serde_json::Value {
        self.status().await["targets"][0].clone()
    }

    /// `source-agent status --json`.
    pub async fn status(&self) -> serde_json::Value {
        let out = run_command(
            "source-agent",
            &["status", "--json", "--source-db", &self.source_db],
        )
        .await;
        serde_json::from_str(&expect_success("status", &out)).expect("status is JSON")
    }

    /// Logs every change of the target's progress record, so a test can
    /// check that it moved one batch at a time.
    pub async fn record_progress_history(&self) {
        record_progress_history(&self.dst).await;
    }

    /// Asserts that every recorded progress move was to the next batch, and
    /// returns how many batches were applied.
    pub async fn assert_progress_moved_one_batch_at_a_time(&self) -> i64 {
        assert_progress_moved_one_batch_at_a_time(&self.dst).await
    }
}

/// Logs every change of a target's progress records (`target` is a
/// superuser session on its database).
pub async fn record_progress_history(target: &Client) {
    target
        .batch_execute(&format!(
            "create table public.progress_history (old_batch bigint, new_batch bigint);
             grant insert on public.progress_history to {APPLIER};
             create function public.log_progress() returns trigger language plpgsql as $$
             begin
               insert into public.progress_history values (old.last_batch, new.last_batch);
               return new;
             end $$;
             create trigger log_progress after update on pgferry.progress
               for each row execute function public.log_progress();"
        ))
        .await
        .expect("progress history");
}

/// Asserts that every progress move [`record_progress_history`] logged was
/// to the next batch, and returns how many batches were applied.
pub async fn assert_progress_moved_one_batch_at_a_time(target: &Client) -> i64 {
    let rows = target
        .query(
            "select old_batch, new_batch from public.progress_history",
            &[],
        )
        .await
        .expect("progress history");
    for row in &rows {
        let (old, new): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(new, old + 1, "progress jumped from batch {old} to {new}");
    }
    rows.len() as i64
}

/// A target agent on `target_db` serving on a free port: the agent and the
/// address a source reaches it at.
pub async fn serving_target_agent(target_db: &str) -> (Agent, String) {
    for _ in 0..3 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let args = [
            "run",
            "--target-db",
            target_db,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ];
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some(agent) = spawn_serving("target-agent", &args, &url, None).await {
            return (agent, url);
        }
    }
    panic!("no free port for a target agent in three tries");
}

/// A source agent on `source_db` streaming as source `dc1` to every target
/// `add-target` recorded, with health and metrics listeners on free ports,
/// serving: the agent and its metrics port.
pub async fn serving_source_agent(source_db: &str) -> (Agent, u16) {
    for _ in 0..3 {
        let (port, metrics_port) = (free_port(), free_port());
        let health = format!("127.0.0.1:{port}");
        let metrics = format!("127.0.0.1:{metrics_port}");
        let args: Vec<String> = [
            "run",
            "--source-db",
            source_db,
            "--source-id",
            "dc1",
            "--max-backoff",
            "1s",
            "--health-listen",
            &health,
            "--metrics-listen",
            &metrics,
        ]
        .map(String::from)
        .to_vec();
        let address = format!("http://{health}");
        if let Some(agent) = spawn_serving("source-agent", &args, &address, None).await {
            return (agent, metrics_port);
        }
    }
    panic!("no free ports for the source agent's health and metrics in three tries");
}

/// `count(*), sum(hashtext(t::text))` of `table`, over whole rows (the alias
/// is one no test table has as a column).
pub async fn checksum(client: &Client, table: &str) -> (i64, i64) {
    let row = client
        .query_one(
            &format!(
                "select count(*), coalesce(sum(hashtext(checked_row::text)), 0)::bigint
                 from {table} as checked_row"
            ),
            &[],
        )
        .await
        .expect("checksum");
    (row.get(0), row.get(1))
}

/// Waits until the agent's grpc.health.v1 says SERVING, failing at once if
/// the process exits.
pub async fn wait_serving(agent: &mut Agent, port: u16) {
    wait_serving_at(agent, &format!("http://127.0.0.1:{port}"), None).await;
}

/// Spawns agent `name` with `args` and waits until it serves at `address`;
/// `None` when its port was taken (see [`serving_unless_port_taken`]).
async fn spawn_serving(
    name: &str,
    args: &[String],
    address: &str,
    ca: Option<&str>,
) -> Option<Agent> {
    let mut agent = Agent::spawn(name, args);
    serving_unless_port_taken(&mut agent, address, ca)
        .await
        .then_some(agent)
}

/// [`wait_serving`] at `address`, over TLS trusting `ca` when given.
pub async fn wait_serving_at(agent: &mut Agent, address: &str, ca: Option<&str>) {
    assert!(
        serving_unless_port_taken(agent, address, ca).await,
        "agent's port was taken:\n{}",
        agent.log()
    );
}

/// Waits until `agent` serves at `address`; false when it exited because its
/// port was taken (by a test running beside, between the port's pick and
/// the bind), so the caller can pick another.
async fn serving_unless_port_taken(agent: &mut Agent, address: &str, ca: Option<&str>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if agent.listening() && health_at(address, ca).await == Some(ServingStatus::Serving) {
            return true;
        }
        if agent.exited() && agent.log().contains("Address already in use") {
            return false;
        }
        agent.assert_running();
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent not serving:\n{}",
            agent.log()
        );
        // Finely: the bench's catch-up clock runs while the harness waits
        // for the target agent before starting the source agent.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The health status an agent reports for "" (None when unreachable).
pub async fn health(address: &str) -> Option<ServingStatus> {
    health_at(address, None).await
}

/// [`health`], over TLS trusting `ca` (PEM) when given.
pub async fn health_at(address: &str, ca: Option<&str>) -> Option<ServingStatus> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(address.to_owned()).ok()?;
    if let Some(ca) = ca {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        endpoint = endpoint.tls_config(tls).ok()?;
    }
    let channel = endpoint.connect().await.ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Waits until `sql` on `client` returns true.
pub async fn wait_for_sql(client: &Client, sql: &str, timeout: Duration) {
    wait_until(sql, timeout, || async {
        let ok: bool = client.query_one(sql, &[]).await.ok()?.get(0);
        ok.then_some(())
    })
    .await
}

impl Replication {
    /// A fresh superuser session on the source (after the source restarted).
    pub async fn reconnect_source(&mut self) {
        self.src = self.source.connect("digoal").await;
    }

    /// A fresh superuser session on the target (after the target restarted).
    pub async fn reconnect_target(&mut self) {
        self.dst = self.target.connect("digoal").await;
    }

    /// The target's last applied batch for source `dc1` (0 before any).
    pub async fn target_progress(&self) -> i64 {
        self.dst
            .query_opt(
                "select last_batch from pgferry.progress where source_id = 'dc1'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map_or(0, |row| row.get(0))
    }

    /// Runs both agents until the target has applied the initial copies of
    /// the tables registered so far, then stops them: whatever the source
    /// writes next is queued as changes (written before, it would travel in
    /// the copy).
    pub async fn copy_then_stop_agents(&mut self) {
        self.start_agents().await;
        crate::wait_until(
            "the initial copies applied",
            Duration::from_secs(30),
            || async { (self.target_progress().await >= 1).then_some(()) },
        )
        .await;
        let grace = Duration::from_secs(15);
        assert!(
            self.source_agent().terminate(grace).await,
            "source agent stops"
        );
        assert!(
            self.target_agent().terminate(grace).await,
            "target agent stops"
        );
    }

    /// The newest batch the source has seen acked.
    pub async fn source_acked(&self) -> i64 {
        self.src
            .query_one("select min(acked_batch) from pgferry.targets", &[])
            .await
            .expect("acked batch")
            .get(0)
    }
}

/// A background writer on the source: transactions of inserts, updates of
/// the same rows again and again, and deletes, until stopped. It reconnects
/// when the source goes away, so it can run through a database crash.
pub struct Writer {
    /// Set to stop the writer.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The writer task; yields how many transactions committed.
    task: tokio::task::JoinHandle<u64>,
}

impl Writer {
    /// Starts writing to `digoal.loc_test` through `conninfo`: inserts,
    /// updates of the newest rows, key changes and deletes.
    pub fn start(conninfo: String) -> Writer {
        Writer::start_with(conninfo, |round| {
            let base = round * 10;
            format!(
                "begin;
                 insert into digoal.loc_test select g, 'round {round}', now(), now()
                   from generate_series({base}, {base} + 9) g on conflict (id) do nothing;
                 update digoal.loc_test set info = info || '+', modify_time = now()
                   where id in (select id from digoal.loc_test order by id desc limit 5);
                 update digoal.loc_test set id = id + 1000000 where id = {base} - 7;
                 delete from digoal.loc_test where id = {base} - 13;
                 commit;"
            )
        })
    }

    /// Starts running the transaction `transaction(round)` for round 1, 2, ...
    pub fn start_with(
        conninfo: String,
        transaction: impl Fn(i64) -> String + Send + 'static,
    ) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut committed = 0u64;
            let mut round = 0i64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(client) = session_or_pause(&conninfo).await else {
                    continue;
                };
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    round += 1;
                    if client.batch_execute(&transaction(round)).await.is_err() {
                        // A lost connection or a deadlock: start a new session.
                        break;
                    }
                    committed += 1;
                }
            }
            committed
        });
        Writer { stop, task }
    }

    /// Stops the writer and returns how many transactions it committed.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("writer task")
    }
}

/// A session on `conninfo`, or after a pause `None` when the server does
/// not answer (it may be down for a fault): callers loop until they stop.
pub async fn session_or_pause(conninfo: &str) -> Option<Client> {
    match tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// GET /metrics from an agent's Prometheus listener.
pub async fn metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("metrics request");
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .await
        .expect("metrics answer");
    body
}

/// The value of the source agent's metric `name` for target `target` in a
/// Prometheus text page, if the page shows it.
pub fn of_target(page: &str, name: &str, target: &str) -> Option<f64> {
    let series = format!("{name}{{target=\"{target}\"}}");
    page.lines()
        .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
}

/// The value of a metric in a Prometheus text page, summed over its label
/// sets (the source agent's have one per target; 0 when absent).
pub fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?.1,
                None => rest,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}
