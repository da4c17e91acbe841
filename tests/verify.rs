//! `verify` and `repair` while writers run: equal copies compare equal
//! every time; rows changed behind the guard's back are named, key by key,
//! and rewritten exactly, never with an older value than the source's.

use support::Replication;
use support::agent::run_command;
use support::setup::{Writer, source_agent};

use crate::exact::{AWKWARD, awkward_rows, create_on_both, texts, wait_rows_equal};

/// Scalars whose text depends on the session's settings (TimeZone,
/// DateStyle, IntervalStyle, extra_float_digits, bytea_output,
/// lc_monetary), and others.
const SCALARS: &str = "(id int primary key, ts timestamptz, t timestamp, d date, tm timetz,
    iv interval, n numeric, r real, b bytea, u uuid, m money, ok bool, rg tstzrange, ip inet)";

/// The registrations of these tests: the seed table whole (renamed by
/// `--as`), a table of awkward values whole, one through `--columns` into
/// a target table with a column of its own, one through `--where`, and a
/// table of scalars.
async fn replicate_awkward_tables(r: &mut Replication) {
    create_on_both(
        r,
        &[
            ("digoal.whole", AWKWARD),
            ("digoal.picked", AWKWARD),
            ("digoal.filtered", AWKWARD),
            ("digoal.scalars", SCALARS),
        ],
    )
    .await;
    r.dst
        .batch_execute(
            "drop table digoal.picked;
             create table digoal.picked_t (id int primary key, j json, a int[], f float8,
                                           note text default 'the target''s own');
             alter table digoal.picked_t owner to applier",
        )
        .await
        .unwrap();
    // The target's sessions render dates and times otherwise.
    r.dst
        .batch_execute(
            "alter database digoal set timezone = 'Asia/Kathmandu';
             alter database digoal set datestyle = 'SQL, DMY';
             alter database digoal set extra_float_digits = -3",
        )
        .await
        .unwrap();
    for table in ["digoal.whole", "digoal.picked", "digoal.filtered"] {
        r.src
            .batch_execute(&format!(
                "insert into {table} values {};
                 insert into {table} select g, '{{\"n\": null}}', null, array[g], null, null,
                                            null, 'null', null, g / 7.0, 'row ' || g
                 from generate_series(1000, 1400) g",
                awkward_rows(1)
            ))
            .await
            .unwrap();
    }
    r.src
        .batch_execute(&format!(
            "insert into digoal.loc_test
             select g, 'seed ' || g, now(), now() from generate_series(1, 500) g;
             insert into digoal.scalars {}",
            scalar_rows("generate_series(1, 300) as g")
        ))
        .await
        .unwrap();
    let db = r.source_db.clone();
    for args in [
        vec!["digoal.scalars"],
        vec!["digoal.whole"],
        vec![
            "digoal.picked",
            "--as",
            "digoal.picked_t",
            "--columns",
            "id,j,a,f",
        ],
        vec!["digoal.filtered", "--where", "id % 3 <> 0"],
    ] {
        let mut command = vec!["add-table", "--source-db", &db];
        command.extend(args);
        source_agent(&command).await;
    }
}

/// A select of [`SCALARS`] rows, one per `g` of `ids` (a FROM item).
fn scalar_rows(ids: &str) -> String {
    format!(
        "select g, now() - g * interval '1 hour 3 seconds', localtimestamp, current_date - g,
                '12:34:56.789+05:30', g * interval '1 day 2 hours 3.5 seconds', g / 7.0,
                g / 3.0::real, decode(md5(g::text), 'hex'), md5(g::text)::uuid, g * 1.25,
                g % 2 = 0, tstzrange(now(), now() + interval '1 day'), '10.0.0.1/8'
         from {ids}"
    )
}

/// Writers on every table: inserts, updates (json nulls among them) and
/// deletes, each in transactions of a few statements, about a hundred a
/// second each (unthrottled, four writers outrun a debug build's agents on
/// two cores, and every check would wait for the lag).
fn start_writers(r: &Replication) -> Vec<Writer> {
    let mut writers = vec![Writer::start_with(r.source_db.clone(), |round| {
        let id = 100_000 + round;
        format!(
            "begin;
             insert into digoal.scalars {};
             update digoal.scalars set ts = now(), iv = iv * 2, m = m + 1 where id = {round} % 300 + 1;
             delete from digoal.scalars where id = {id} - 4;
             insert into digoal.loc_test values ({id}, 'new', now(), now());
             update digoal.loc_test set info = info || '+', modify_time = now()
              where id = 100 + {round} % 300;
             delete from digoal.loc_test where id = {id} - 7;
             commit;
             select pg_sleep(0.01);",
            scalar_rows(&format!("(values ({id})) as v(g)"))
        )
    })];
    for table in ["digoal.whole", "digoal.picked", "digoal.filtered"] {
        writers.push(Writer::start_with(r.source_db.clone(), move |round| {
            let id = 2000 + round;
            format!(
                "begin;
                 insert into {table} values ({id}, 'null', 'null', '[0:0]={{{round}}}', null,
                                             'k=>v', '(1,x)', '{{\"a\": null}}', '<a/>', {round}.5, 'w');
                 update {table} set f = f + 1, t = coalesce(t, '') || '.' where id = 1000 + {round} % 400;
                 update {table} set j = '{{\"k\": null}}', jb = null where id = {id} - 3;
                 delete from {table} where id = {id} - 5;
                 commit;
                 select pg_sleep(0.01);"
            )
        }));
    }
    writers
}

/// Runs `source-agent verify|repair` with `args`; its exit code, its
/// output and its log.
async fn check(r: &Replication, command: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec![command, "--source-db", &r.source_db, "--timeout", "30s"];
    // Full speed unless asked: these tests are about what verify finds.
    if !args.contains(&"--source-share") {
        all.extend(["--source-share", "100"]);
    }
    all.extend(args);
    let out = run_command("source-agent", &all).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// [`check`], which must exit with `code` (`what` says why it should):
/// its output and log.
async fn exits(
    r: &Replication,
    command: &str,
    args: &[&str],
    code: i32,
    what: &str,
) -> (String, String) {
    let (exited, out, log) = check(r, command, args).await;
    assert_eq!(exited, code, "{what}:\n{out}{log}");
    (out, log)
}

/// The tables compared, as (source, target, columns, filter).
const PAIRS: [(&str, &str, &str, &str); 5] = [
    (
        "digoal.loc_test",
        "digoal.rmt_test",
        "id, info, create_time, modify_time",
        "true",
    ),
    (
        "digoal.whole",
        "digoal.whole",
        "id, j, jb, a, ja, h, c, d, x, f, t",
        "true",
    ),
    ("digoal.picked", "digoal.picked_t", "id, j, a, f", "true"),
    (
        "digoal.filtered",
        "digoal.filtered",
        "id, j, jb, a, ja, h, c, d, x, f, t",
        "id % 3 <> 0",
    ),
    (
        "digoal.scalars",
        "digoal.scalars",
        "id, ts, t, d, tm, iv, n, r, b, u, m, ok, rg, ip",
        "true",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_under_load_finds_equal_copies_equal_every_time() {
    let mut r = Replication::new().await;
    replicate_awkward_tables(&mut r).await;
    r.start_agents().await;
    wait_rows_equal(&r, &PAIRS).await;
    let writers = start_writers(&r);
    for round in 0..20 {
        // Small ranges: each table takes several batches; every other
        // verify at the default pace, which pauses for the writers.
        let share = if round % 2 == 0 { "10" } else { "100" };
        let args = ["--chunk-rows", "150", "--source-share", share];
        let (out, _) = exits(
            &r,
            "verify",
            &args,
            0,
            &format!("verify {round} under load"),
        )
        .await;
        assert!(out.contains("total: 0 differences"), "{out}");
    }
    let mut committed = 0;
    for writer in writers {
        committed += writer.stop().await;
    }
    assert!(committed > 20, "the writers ran: {committed} transactions");
    wait_rows_equal(&r, &PAIRS).await;
    let status = r.status().await;
    let tables = status["tables"].as_array().expect("status lists tables");
    assert!(
        tables
            .iter()
            .all(|t| t["verify"]["differences"] == 0 && t["verify"]["rows"].as_i64() > Some(0)),
        "status shows each table's last verify: {status:#}"
    );
}

/// Changes rows of target tables `tables` with their guard switched off,
/// as a superuser could.
async fn tamper(r: &Replication, tables: &[&str], sql: &str) {
    let switch = |how: &str| {
        tables
            .iter()
            .map(|t| format!("alter table {t} {how} trigger pgferry_guard;"))
            .collect::<String>()
    };
    r.dst
        .batch_execute(&format!(
            "begin; {} {sql}; {} commit;",
            switch("disable"),
            switch("enable always")
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_rows_are_named_by_verify_and_repaired_under_load() {
    let mut r = Replication::new().await;
    replicate_awkward_tables(&mut r).await;
    r.start_agents().await;
    wait_rows_equal(&r, &PAIRS).await;
    // Rows no writer touches: 3 deleted, 2 changed, 1 added, and one added
    // outside the --where.
    tamper(
        &r,
        &[
            "digoal.rmt_test",
            "digoal.whole",
            "digoal.picked_t",
            "digoal.filtered",
        ],
        "delete from digoal.rmt_test where id in (10, 20, 30);
         update digoal.whole set t = 'tampered' where id = 1;
         update digoal.picked_t set j = '{\"tampered\": true}' where id = 2;
         insert into digoal.whole (id, t) values (9999, 'only here');
         insert into digoal.filtered (id, t) values (9000, 'outside the filter')",
    )
    .await;
    let writers = start_writers(&r);
    let (code, out, log) = check(&r, "verify", &["--json"]).await;
    assert_eq!(
        code,
        1,
        "verify finds the tampering:\n{out}{log}\nsource agent:\n{}\ntarget agent:\n{}",
        r.source_agent().log(),
        r.target_agent().log()
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let found = |table: &str, kind: &str| -> Vec<String> {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["table"] == table)
            .flat_map(|t| t[kind].as_array().unwrap().iter().map(|k| k.to_string()))
            .collect()
    };
    for (table, kind, ids) in [
        ("digoal.loc_test", "missing", &[10, 20, 30][..]),
        ("digoal.whole", "different", &[1]),
        ("digoal.whole", "extra", &[9999]),
        ("digoal.picked", "different", &[2]),
        ("digoal.filtered", "extra", &[9000]),
    ] {
        let keys: Vec<String> = ids.iter().map(|id| format!(r#"{{"id":{id}}}"#)).collect();
        assert_eq!(found(table, kind), keys, "{table} {kind}: {report:#}");
    }
    assert_eq!(report["differences"], 7, "{report:#}");

    let (out, _) = exits(&r, "repair", &[], 0, "repair under load").await;
    assert!(out.contains("7 rows repaired"), "{out}");
    exits(&r, "verify", &[], 0, "verify after the repair").await;
    for writer in writers {
        writer.stop().await;
    }
    wait_rows_equal(&r, &PAIRS).await;
    let own: String = r
        .dst
        .query_one("select note from digoal.picked_t where id = 1000", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        own, "the target's own",
        "rows not repaired keep the target's columns"
    );
}

/// The seed table with `rows` rows, replicating, agents running.
async fn seeded(rows: i64) -> Replication {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(&format!(
            "insert into digoal.loc_test
             select g, 'seed ' || g, now(), now() from generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    r.start_agents().await;
    wait_rows_equal(&r, &PAIRS[..1]).await;
    r
}

/// `check` started in the background.
fn spawn_check(
    r: &Replication,
    command: &'static str,
    args: &[&str],
) -> tokio::task::JoinHandle<std::process::Output> {
    let mut all: Vec<String> = [
        command,
        "--source-db",
        &r.source_db,
        "--timeout",
        "60s",
        "--source-share",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::spawn(async move {
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_command("source-agent", &all).await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_racing_updates_of_the_same_rows_never_leaves_an_older_value() {
    let mut r = seeded(2000).await;
    tamper(
        &r,
        &["digoal.rmt_test"],
        "update digoal.rmt_test set info = 'stale' where id <= 200;
         delete from digoal.rmt_test where id between 201 and 300",
    )
    .await;
    // The writer rewrites exactly the damaged rows, one after another.
    let writer = Writer::start_with(r.source_db.clone(), |round| {
        format!(
            "update digoal.loc_test set info = 'v{round}', modify_time = now()
             where id = {round} % 300 + 1;
             select pg_sleep(0.002);"
        )
    });
    exits(
        &r,
        "repair",
        &["--chunk-rows", "20"],
        0,
        "repair racing updates",
    )
    .await;
    exits(&r, "verify", &[], 0, "verify after the repair").await;
    let rounds = writer.stop().await;
    assert!(rounds > 0, "the writer ran beside the repair");
    wait_rows_equal(&r, &PAIRS[..1]).await;
    r.target_agent().assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_either_agent_during_verify_and_repair_then_a_rerun_is_exact() {
    let mut r = seeded(10_000).await;
    r.record_progress_history().await;
    let writers = start_writers_on_seed(&r);
    // The target agent killed while verify runs: it asks again what the
    // restart lost.
    let first = killed_during(&mut r, "verify", Side::Target).await;
    exits(
        &r,
        "verify",
        &[],
        0,
        &format!("verify after a killed one ({first:?})"),
    )
    .await;

    // The source agent killed while repair runs.
    tamper(
        &r,
        &["digoal.rmt_test"],
        "update digoal.rmt_test set info = 'stale' where id % 97 = 0;
         delete from digoal.rmt_test where id % 101 = 0",
    )
    .await;
    let first = killed_during(&mut r, "repair", Side::Source).await;
    exits(
        &r,
        "repair",
        &[],
        0,
        &format!("repair after a killed one ({first:?})"),
    )
    .await;
    exits(&r, "verify", &[], 0, "verify after the repairs").await;
    for writer in writers {
        writer.stop().await;
    }
    wait_rows_equal(&r, &PAIRS[..1]).await;
    let batches = r.assert_progress_moved_one_batch_at_a_time().await;
    assert!(batches > 100, "{batches} batches applied");
}

/// Which agent a test kills.
enum Side {
    Source,
    Target,
}

/// Runs `command` over ranges of 20 rows and kill -9s the `side` agent
/// while it runs; the command's exit code, once it ends.
async fn killed_during(r: &mut Replication, command: &'static str, side: Side) -> Option<i32> {
    let running = spawn_check(r, command, &["--chunk-rows", "20"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!running.is_finished(), "{command} still runs at the kill");
    match side {
        Side::Source => r.kill9_and_restart_source_agent().await,
        Side::Target => r.kill9_and_restart_target_agent().await,
    }
    let code = running.await.unwrap().status.code();
    eprintln!("the {command} an agent was killed under exited {code:?}");
    code
}

/// Two throttled writers on the seed table.
fn start_writers_on_seed(r: &Replication) -> Vec<Writer> {
    (0..2)
        .map(|w| {
            Writer::start_with(r.source_db.clone(), move |round| {
                let id = 1_000_000 * (w + 1) + round;
                format!(
                    "begin;
                     insert into digoal.loc_test values ({id}, 'new', now(), now());
                     update digoal.loc_test set info = info || '+' where id = {round} % 5000 + 1;
                     delete from digoal.loc_test where id = {id} - 3;
                     commit;
                     select pg_sleep(0.01);"
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_switched_off_marks_the_table_diverged_and_repair_brings_it_back() {
    let r = seeded(3000).await;
    let writers = start_writers_on_seed(&r);
    // As an install without a superuser allows: capture off a while.
    let triggers = texts(
        &r.src,
        "select tgname::text from pg_trigger
         where tgrelid = 'digoal.loc_test'::regclass and tgname like 'pgferry\\_capture%'",
    )
    .await;
    r.src
        .batch_execute(
            "alter event trigger pgferry_watch_ddl disable;
             alter table digoal.loc_test disable trigger user;",
        )
        .await
        .unwrap();
    support::wait_until("the table shows diverged", SYNC_STATUS, || async {
        let status = r.status().await;
        (status["tables"][0]["state"] == "diverged").then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let enable: String = triggers
        .iter()
        .map(|t| format!("alter table digoal.loc_test enable always trigger {t};"))
        .collect();
    r.src
        .batch_execute(&format!(
            "{enable} alter event trigger pgferry_watch_ddl enable always;"
        ))
        .await
        .unwrap();
    exits(
        &r,
        "verify",
        &[],
        1,
        "the writes made meanwhile are missing",
    )
    .await;
    exits(&r, "repair", &[], 0, "repair").await;
    let status = r.status().await;
    assert_eq!(status["tables"][0]["state"], "replicating", "{status:#}");
    assert!(status["tables"][0]["diverged"].is_null(), "{status:#}");
    for writer in writers {
        writer.stop().await;
    }
    wait_rows_equal(&r, &PAIRS[..1]).await;
}

const SYNC_STATUS: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_set_aside_is_copied_again_by_repair_and_compared() {
    let r = seeded(1000).await;
    source_agent(&["set-aside", "--source-db", &r.source_db, "digoal.loc_test"]).await;
    r.src
        .batch_execute(
            "update digoal.loc_test set info = 'while set aside' where id <= 10;
             delete from digoal.loc_test where id between 11 and 20",
        )
        .await
        .unwrap();
    let (out, _) = exits(&r, "verify", &[], 1, "its target misses the changes").await;
    assert!(out.contains("20 differences"), "{out}");
    let (out, _) = exits(&r, "repair", &["--json"], 0, "repair copies it again").await;
    let report: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(
        report["tables"][0]["note"],
        "was set aside: copied again, then compared"
    );
    assert_eq!(report["tables"][0]["rows"], 990, "{report:#}");
    let status = r.status().await;
    assert_eq!(status["tables"][0]["state"], "replicating", "{status:#}");
    wait_rows_equal(&r, &PAIRS[..1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_the_target_refuses_is_rolled_back_alone_and_named() {
    let r = seeded(100).await;
    // A foreign key only the target has, which the source's row 10 breaks
    // once it is gone from the target.
    r.dst
        .batch_execute(
            "create table digoal.known (info text primary key);
             alter table digoal.known owner to applier;
             insert into digoal.known select info from digoal.rmt_test where id <> 10;
             alter table digoal.rmt_test add constraint known_info
                 foreign key (info) references digoal.known not valid;",
        )
        .await
        .unwrap();
    tamper(
        &r,
        &["digoal.rmt_test"],
        "delete from digoal.rmt_test where id = 10",
    )
    .await;
    let (_, log) = exits(&r, "repair", &[], 2, "the target refuses the repair").await;
    assert!(
        log.contains("table digoal.loc_test on target default")
            && log.contains("digoal.rmt_test")
            && log.contains("known_info"),
        "names the table and the constraint:\n{log}"
    );
    // Replication goes on (to a value the foreign key allows).
    r.src
        .batch_execute("update digoal.loc_test set info = 'seed 12' where id = 11")
        .await
        .unwrap();
    support::wait_until("the update arrives", SYNC_STATUS, || async {
        let row = r
            .dst
            .query_one("select info from digoal.rmt_test where id = 11", &[])
            .await
            .unwrap();
        (row.get::<_, String>(0) == "seed 12").then_some(())
    })
    .await;
    r.dst
        .batch_execute("alter table digoal.rmt_test drop constraint known_info")
        .await
        .unwrap();
    exits(&r, "repair", &[], 0, "repair once the target lets it").await;
    wait_rows_equal(&r, &PAIRS[..1]).await;
}
