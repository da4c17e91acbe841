//! Schema changes: pgbench's single-row updates (4 clients) with the DDL
//! watch's event triggers enabled and disabled, in alternating 10 s slices
//! (DML fires no event trigger, so they should cost nothing); and ALTERs
//! of a 1M-row table while pgbench writes another table, timed from the
//! source's commit to the moment the target has the change, beside the
//! same ALTER run on a copy of the table on the target alone. The sides run
//! on a CPU each.

use crate::*;

/// Rows of the altered table.
const ROWS: i64 = 1_000_000;

/// The DDL watch's event triggers.
const EVENT_TRIGGERS: [&str; 3] = [
    "pgferry_watch_ddl",
    "pgferry_note_rewrite",
    "pgferry_watch_drop",
];

/// The ALTERs timed, and how the target shows it has each.
const ALTERS: [(&str, &str, &str); 2] = [
    (
        "add column with a default",
        "alter table wide add column flag text not null default 'on'",
        "select exists (select from pg_attribute where attrelid = 'wide'::regclass and attname = 'flag')",
    ),
    (
        "type int -> bigint (a rewrite)",
        "alter table wide alter column a type bigint",
        "select atttypid = 'bigint'::regtype from pg_attribute where attrelid = 'wide'::regclass and attname = 'a'",
    ),
];

/// What the schema-change measure found.
pub(crate) struct SchemaChanges {
    /// pgbench TPS with the event triggers and without (means of slices).
    pub(crate) tps: (f64, f64),
    /// Per ALTER: its name, seconds from the source's commit to the target
    /// having it (under load), and seconds of the same ALTER on the target
    /// alone.
    pub(crate) alters: Vec<(&'static str, f64, f64)>,
}

impl Bench {
    /// Enables (ALWAYS, as install makes them) or disables the DDL watch.
    async fn event_triggers(&self, on: bool) {
        for trigger in EVENT_TRIGGERS {
            let state = if on { "enable always" } else { "disable" };
            self.ferry_src
                .batch_execute(&format!("alter event trigger {trigger} {state}"))
                .await
                .expect("event trigger");
        }
    }

    /// Measure: schema changes (see the module's comment). Expects the
    /// agents running.
    pub(crate) async fn schema_changes(&mut self) -> SchemaChanges {
        self.set_apart(true, &[]);
        let args = ["-c", "4", "-j", "2", "-T", "10"];
        let (mut with, mut without) = (0.0, 0.0);
        for _ in 0..3 {
            self.event_triggers(true).await;
            with += self.pgbench(System::Pgferry, &script("t_rep"), &args);
            self.event_triggers(false).await;
            without += self.pgbench(System::Pgferry, &script("t_rep"), &args);
        }
        self.event_triggers(true).await;

        let definition = "(id int primary key, a int, b text)";
        let fill = format!("select g, g % 1000, md5(g::text) from generate_series(1, {ROWS}) g");
        // VACUUM runs alone: not inside a multi-statement string.
        for sql in [
            format!("create table wide {definition}; insert into wide {fill}"),
            "vacuum analyze wide".into(),
        ] {
            self.ferry_src
                .batch_execute(&sql)
                .await
                .expect("wide table");
        }
        for sql in [
            format!(
                "create table wide {definition}; alter table wide owner to applier;
                 create table wide_alone {definition}; insert into wide_alone {fill}"
            ),
            "vacuum analyze wide_alone".into(),
        ] {
            self.ferry_dst
                .batch_execute(&sql)
                .await
                .expect("wide target tables");
        }
        let out = run_command(
            "source-agent",
            &[
                "add-table",
                "--source-db",
                &self.source_db(),
                "public.wide",
                "--wait",
            ],
        )
        .await;
        expect_success("add-table", &out);

        let mut alters = Vec::new();
        for (name, alter, done) in ALTERS {
            let started = Instant::now();
            self.ferry_dst
                .batch_execute(&alter.replace("wide ", "wide_alone "))
                .await
                .expect("alter on the target alone");
            let alone = started.elapsed().as_secs_f64();
            // Under load: pgbench writes t_rep while the ALTER replicates.
            let (source_db, target_db) = (self.source_db(), self.target_db());
            let timed = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (src, connection) = tokio_postgres::connect(&source_db, tokio_postgres::NoTls)
                    .await
                    .expect("source session");
                tokio::spawn(connection);
                let (dst, connection) = tokio_postgres::connect(&target_db, tokio_postgres::NoTls)
                    .await
                    .expect("target session");
                tokio::spawn(connection);
                src.batch_execute(alter).await.expect("alter on the source");
                let committed = Instant::now();
                loop {
                    let have: bool = dst.query_one(done, &[]).await.expect("poll").get(0);
                    if have {
                        return committed.elapsed().as_secs_f64();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            tokio::task::block_in_place(|| {
                self.pgbench(
                    System::Pgferry,
                    &script("t_rep"),
                    &["-c", "4", "-j", "2", "-T", "20"],
                )
            });
            let replicated = timed.await.expect("timed alter");
            alters.push((name, replicated, alone));
        }
        self.set_apart(false, &[]);
        SchemaChanges {
            tps: (with / 3.0, without / 3.0),
            alters,
        }
    }
}
