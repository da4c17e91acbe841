//! Fan-out: the writers' cost with three targets against one (pgbench
//! single-row updates of the same table, alternating with the plain table:
//! one target's slices, three's, and one's again once the two are removed,
//! so that a drift over the run does not count against either), with the
//! source's side and the target's pinned to a CPU each (see
//! `Bench::set_apart`); and each target's catch-up when all three drain a
//! backlog at once, on both CPUs as the single target's in the catch-up
//! measure. The two more targets are databases of the target cluster, each
//! with its own target agent.

use crate::*;

/// The two more targets' databases on the target cluster.
const MORE: [&str; 2] = ["ferry2", "ferry3"];

/// What the fan-out measure found.
pub(crate) struct FanOut {
    /// pgbench TPS on the replicated table with one target, and on the
    /// plain table beside it (the mean of the slices before and after).
    pub(crate) one: (f64, f64),
    /// The same with three targets.
    pub(crate) three: (f64, f64),
    /// The source agent's CPU seconds over 30 s of slices, one target
    /// (the mean of before and after) and three.
    pub(crate) agent_cpu: (f64, f64),
    /// The same of the targets' side: the target cluster's processes and
    /// the target agents.
    pub(crate) target_cpu: (f64, f64),
    /// Rows per second at which each of the three targets caught up on a
    /// backlog they all drained at once.
    pub(crate) catch_up: Vec<f64>,
}

impl Bench {
    /// Three 5 s slices on each table, alternating: (replicated, plain) TPS.
    fn slices(&self) -> (f64, f64) {
        let (mut rep, mut plain) = (0.0, 0.0);
        let args = ["-c", "4", "-j", "2", "-T", "5"];
        for _ in 0..3 {
            rep += self.pgbench(System::Pgferry, &script("t_rep"), &args);
            plain += self.pgbench(System::Pgferry, &script("t_plain"), &args);
        }
        (rep / 3.0, plain / 3.0)
    }

    /// Measure: writers' cost and catch-up with three targets (see the
    /// module's comment). Leaves one target, named `main`, recorded, and
    /// the agents stopped.
    pub(crate) async fn fan_out(&mut self) -> FanOut {
        self.start_pgferry(None).await;
        self.statements(System::Pgferry, None).await;
        self.set_apart(true, &[]);
        let (cpu, target_cpu) = (self.source_agent_cpu(), self.target_side_cpu(&[]));
        let before = self.slices();
        let cpu_before = self.source_agent_cpu() - cpu;
        let target_cpu_before = self.target_side_cpu(&[]) - target_cpu;
        self.statements(System::Pgferry, Some("fan-out, one target"))
            .await;

        let admin = self.target.connect("postgres").await;
        let mut agents = Vec::new();
        let source_db = self.source_db();
        let add_target = |name: &str, url: &str| {
            [
                "add-target",
                "--source-db",
                &source_db,
                name,
                "--address",
                url,
            ]
            .map(String::from)
            .to_vec()
        };
        self.stop_pgferry().await;
        let main_url = format!("http://127.0.0.1:{}", self.target_port);
        let args = add_target("main", &main_url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_success("add-target", &run_command("source-agent", &args).await);
        for db in MORE {
            for sql in [
                format!("create database {db}"),
                format!("grant create on database {db} to applier"),
            ] {
                admin.batch_execute(&sql).await.expect("target database");
            }
            let dst = self.target.connect(db).await;
            dst.batch_execute(
                "create table t_rep (id int primary key, v int not null, info text);
                 create table drain (id int primary key, v int, info text);
                 alter table t_rep owner to applier; alter table drain owner to applier;",
            )
            .await
            .expect("target tables");
            let target_db = self.target.conninfo(db, "applier", "applier-pw");
            expect_success(
                "install",
                &run_command("target-agent", &["install", "--target-db", &target_db]).await,
            );
            let port = free_port();
            let mut agent = Agent::spawn(
                "target-agent",
                &[
                    "run",
                    "--target-db",
                    &target_db,
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                ]
                .map(String::from),
            );
            if self.apart() {
                pin(&agent.pid().to_string(), TARGET_CPU);
            }
            wait_serving(&mut agent, port).await;
            agents.push(agent);
            let args = add_target(db, &format!("http://127.0.0.1:{port}"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            expect_success("add-target", &run_command("source-agent", &args).await);
            for table in ["public.t_rep", "public.drain"] {
                expect_success(
                    "add-table",
                    &run_command(
                        "source-agent",
                        &[
                            "add-table",
                            "--source-db",
                            &source_db,
                            table,
                            "--target",
                            db,
                        ],
                    )
                    .await,
                );
            }
        }
        self.start_fanned_out().await;
        for db in MORE {
            let dst = self.target.connect(db).await;
            wait_table_equal(&self.ferry_src, &dst, "t_rep").await;
            wait_table_equal(&self.ferry_src, &dst, "drain").await;
        }
        self.statements(System::Pgferry, None).await;
        let (cpu, target_cpu) = (self.source_agent_cpu(), self.target_side_cpu(&agents));
        let three = self.slices();
        let cpu_three = self.source_agent_cpu() - cpu;
        let target_cpu_three = self.target_side_cpu(&agents) - target_cpu;
        self.set_apart(false, &agents);
        self.statements(System::Pgferry, Some("fan-out, three targets"))
            .await;

        self.stop_pgferry().await;
        self.write_changes(System::Pgferry, CATCH_UP_CHANGES, TX_ROWS)
            .await;
        let started = Instant::now();
        self.start_fanned_out().await;
        let mut targets = vec![self.target.connect("ferry").await];
        for db in MORE {
            targets.push(self.target.connect(db).await);
        }
        let want = checksum(&self.ferry_src, "drain").await;
        let mut caught_up = vec![None; targets.len()];
        while caught_up.iter().any(Option::is_none) {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "fan-out catch-up not done"
            );
            for (i, dst) in targets.iter().enumerate() {
                if caught_up[i].is_none() && checksum(dst, "drain").await == want {
                    caught_up[i] = Some(started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let catch_up = caught_up
            .into_iter()
            .map(|took| CATCH_UP_CHANGES as f64 / took.expect("caught up").as_secs_f64())
            .collect();

        self.stop_pgferry().await;
        for mut agent in agents {
            agent.terminate(Duration::from_secs(30)).await;
        }
        for db in MORE {
            expect_success(
                "remove-target",
                &run_command(
                    "source-agent",
                    &["remove-target", "--source-db", &source_db, db],
                )
                .await,
            );
        }
        self.start_pgferry(None).await;
        self.set_apart(true, &[]);
        let (cpu, target_cpu) = (self.source_agent_cpu(), self.target_side_cpu(&[]));
        let after = self.slices();
        let cpu_one = (cpu_before + self.source_agent_cpu() - cpu) / 2.0;
        let target_cpu_one = (target_cpu_before + self.target_side_cpu(&[]) - target_cpu) / 2.0;
        self.set_apart(false, &[]);
        self.stop_pgferry().await;
        FanOut {
            one: ((before.0 + after.0) / 2.0, (before.1 + after.1) / 2.0),
            three,
            agent_cpu: (cpu_one, cpu_three),
            target_cpu: (target_cpu_one, target_cpu_three),
            catch_up,
        }
    }

    /// Pins the source's side (its cluster, the source agent, pgbench) to
    /// one CPU and the target's (its cluster, the target agent and `more`)
    /// to the other, or lets both run anywhere again. What the writers
    /// measure is then the source's cost alone, as with a target on another
    /// host: with all on both CPUs, three targets' applying (2.4 to 2.6
    /// times one target's CPU) ran on the writers' cores and counted as the
    /// source's cost. With `PGFERRY_BENCH_PIN=1` the sides stay apart.
    pub(crate) fn set_apart(&mut self, apart: bool, more: &[Agent]) {
        if pinned() {
            return;
        }
        self.sides_apart = apart;
        let (source_cpu, target_cpu) = if apart {
            (SOURCE_CPU, TARGET_CPU)
        } else {
            (ANY_CPU, ANY_CPU)
        };
        let source_agent = self.source_agent.iter().map(|a| a.pid().to_string());
        for pid in self.source.pids().into_iter().chain(source_agent) {
            pin(&pid, source_cpu);
        }
        let target_agents = self.target_agent.iter().chain(more);
        let target_agents = target_agents.map(|a| a.pid().to_string());
        for pid in self.target.pids().into_iter().chain(target_agents) {
            pin(&pid, target_cpu);
        }
    }

    /// The source agent's user and system CPU seconds so far.
    fn source_agent_cpu(&self) -> f64 {
        let pid = self.source_agent.as_ref().expect("source agent").pid();
        cpu_seconds(&pid.to_string(), false)
    }

    /// The user and system CPU seconds so far of the target cluster's
    /// processes (those that ended counted in the postmaster's children's),
    /// the target agent and `more` target agents.
    fn target_side_cpu(&self, more: &[Agent]) -> f64 {
        let cluster = self.target.pids();
        let (postmaster, children) = cluster.split_first().expect("postmaster");
        let agents = self.target_agent.iter().chain(more);
        cpu_seconds(postmaster, true)
            + children
                .iter()
                .map(|pid| cpu_seconds(pid, false))
                .sum::<f64>()
            + agents
                .map(|agent| cpu_seconds(&agent.pid().to_string(), false))
                .sum::<f64>()
    }

    /// Both agents, the source agent streaming to every recorded target.
    async fn start_fanned_out(&mut self) {
        self.recorded_targets = true;
        self.start_pgferry(None).await;
        self.recorded_targets = false;
    }
}

/// Waits until `table` has the same checksum on `src` and `dst`.
async fn wait_table_equal(src: &Client, dst: &Client, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let want = checksum(src, table).await;
    while checksum(dst, table).await != want {
        assert!(Instant::now() < deadline, "{table}: not equal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
