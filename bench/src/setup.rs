//! Setting the benchmark up: the two clusters and their databases, each
//! system's replication, and starting and stopping pgferry's agents and
//! each system's consumer.

use crate::*;

impl Bench {
    pub(crate) async fn new() -> Bench {
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
                "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n\
                 pg_stat_statements.track_planning = on\n"
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
            source.pids().iter().for_each(|pid| pin(pid, SOURCE_CPU));
            target.pids().iter().for_each(|pid| pin(pid, TARGET_CPU));
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
                 alter table single_rep owner to applier; alter table p_rep owner to applier;
                 alter table big_rep owner to applier;
                 do $$
                 begin
                     for i in 0..7 loop
                         execute format('alter table p_rep_%s owner to applier', i);
                     end loop;
                 end
                 $$;",
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
            recorded_targets: false,
            sides_apart: false,
        };
        bench.set_up_pgferry().await;
        bench
    }

    pub(crate) fn source_db(&self) -> String {
        self.source.conninfo("ferry", "postgres", "")
    }

    pub(crate) fn target_db(&self) -> String {
        self.target.conninfo("ferry", "applier", "applier-pw")
    }

    pub(crate) async fn set_up_pgferry(&mut self) {
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
            "public.p_rep",
            "public.big_rep",
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
    pub(crate) async fn set_up_native(&mut self) {
        self.native_src
            .batch_execute(
                "create publication p for table t_rep, hb, bulk, drain, single_rep, p_rep, big_rep
                 with (publish_via_partition_root)",
            )
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
    pub(crate) async fn statements(&self, system: System, measure: Option<&str>) {
        if !statements_shown() {
            return;
        }
        let (src, _) = self.sessions(system);
        if let Some(measure) = measure {
            eprintln!(
                "{}: source statements during {measure} (ms executing, ms planning, calls, statement):",
                system.name()
            );
            for row in src
                .query(
                    "select round(total_exec_time)::bigint, round(total_plan_time)::bigint, calls,
                            left(regexp_replace(query, '\\s+', ' ', 'g'), 120)
                     from pg_stat_statements
                     where dbid = (select oid from pg_database where datname = current_database())
                     order by total_exec_time desc limit 20",
                    &[],
                )
                .await
                .expect("pg_stat_statements")
            {
                let (ms, plan, calls, query): (i64, i64, i64, String) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                eprintln!("{ms:>8} {plan:>8} {calls:>8}  {query}");
            }
        }
        src.batch_execute("select pg_stat_statements_reset()")
            .await
            .expect("pg_stat_statements_reset");
    }

    /// Starts both agents; the source agent reaches the target through
    /// `via` (a relay port) when given.
    pub(crate) async fn start_pgferry(&mut self, via: Option<u16>) {
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
        if self.apart() {
            pin(&target.pid().to_string(), TARGET_CPU);
        }
        wait_serving(&mut target, self.target_port).await;
        let health = free_port();
        let mut source_args = vec!["run".to_string(), "--source-db".into(), self.source_db()];
        if !self.recorded_targets {
            source_args.push("--target".into());
            source_args.push(format!(
                "http://127.0.0.1:{}",
                via.unwrap_or(self.target_port)
            ));
        }
        source_args.extend([
            "--source-id".into(),
            "bench".into(),
            "--health-listen".into(),
            format!("127.0.0.1:{health}"),
            "--compression".into(),
            self.compression.into(),
        ]);
        let mut source = Agent::spawn("source-agent", &source_args);
        if self.apart() {
            pin(&source.pid().to_string(), SOURCE_CPU);
        }
        wait_serving(&mut source, health).await;
        self.source_agent = Some(source);
        self.target_agent = Some(target);
    }

    /// Stops both agents; returns their peak RSS in MiB (source, target).
    /// With `PGFERRY_BENCH_LOGS=DIR`, their logs are appended to
    /// DIR/source-agent.log and DIR/target-agent.log (with
    /// `PGFERRY_AGENT_LOG=debug` they time every batch).
    pub(crate) async fn stop_pgferry(&mut self) -> (u64, u64) {
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

    pub(crate) async fn stop_consumer(&mut self, system: System) {
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

    pub(crate) async fn start_consumer(&mut self, system: System) {
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
}
