//! Schema changes in stream order: an ordinary `ALTER TABLE` on the source
//! reaches the target at its place among the rows, through `--as` and
//! `--columns`, while writers run, across kills, and waits for the operator
//! where the target cannot make it.

use std::time::Duration;

use support::Replication;
use support::agent::run_command;
use support::setup::{Writer, expect_success, source_agent};

use crate::exact::{queue_drained, texts};

const SYNC: Duration = Duration::from_secs(90);

/// Source tables and what the target holds of them: `digoal.items` whole
/// under its own name, `digoal.picked` as `digoal.picked_t` with a column
/// list, the seed table as `digoal.rmt_test`.
async fn items_and_picked() -> Replication {
    let r = Replication::new().await;
    r.create_table(
        "digoal.items",
        "digoal.items",
        "(id int primary key, n int, note text, extra text)",
    )
    .await;
    r.create_table(
        "digoal.picked",
        "digoal.picked_t",
        "(id int primary key, n int, note text)",
    )
    .await;
    r.src
        .batch_execute(
            "alter table digoal.picked add column secret text;
             insert into digoal.items select g, g, 'note ' || g, null from generate_series(1, 200) g;
             insert into digoal.picked select g, g, 'note ' || g, 's' from generate_series(1, 200) g;",
        )
        .await
        .unwrap();
    let db = r.source_db.clone();
    source_agent(&["add-table", "--source-db", &db, "digoal.items"]).await;
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        "digoal.picked",
        "--as",
        "digoal.picked_t",
        "--columns",
        "id,n,note",
    ])
    .await;
    r
}

/// Writers on both tables that touch only `id` and `n`, which every step
/// keeps: inserts, updates and deletes, a few hundred transactions a second.
fn writers(r: &Replication) -> Vec<Writer> {
    ["digoal.items", "digoal.picked"]
        .into_iter()
        .map(|table| {
            Writer::start_with(r.source_db.clone(), move |round| {
                let id = 1000 + round;
                format!(
                    "insert into {table} (id, n) values ({id}, {round});
                     update {table} set n = n + 1 where id = {id} - 3;
                     delete from {table} where id = {id} - 40;
                     select pg_sleep(0.002);"
                )
            })
        })
        .collect()
}

/// Each (source query, target query) returns the same rows as text, and the
/// queue is empty; panics with both sides and `status` after [`SYNC`].
async fn wait_equal(r: &Replication, pairs: &[(&str, &str)]) {
    let mut last = Vec::new();
    let done = tokio::time::timeout(SYNC, async {
        loop {
            last.clear();
            for (source, target) in pairs {
                // A table the target is yet to rename or alter answers
                // with an error until then.
                last.push((rows(&r.src, source).await, rows(&r.dst, target).await));
            }
            if queue_drained(r).await && last.iter().all(|(s, t)| s == t) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if done.is_err() {
        let status = r.status().await;
        for (s, t) in &last {
            if s != t {
                let first = s.iter().zip(t).find(|(a, b)| a != b);
                println!(
                    "source {} rows, target {}: first difference {first:?}",
                    s.len(),
                    t.len()
                );
            }
        }
        panic!("not equal after {SYNC:?}; status {status:#}");
    }
}

/// The first column of `sql`'s rows as text; empty on an error.
async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    match client.query(sql, &[]).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(),
    }
}

/// How many rows of key `id` the target's `digoal.items` has, as text.
async fn on_target(r: &Replication, id: i32) -> Vec<String> {
    texts(
        &r.dst,
        &format!("select count(*)::text from digoal.items where id = {id}"),
    )
    .await
}

/// The ID of the newest schema change queued on the source.
async fn newest_schema_change(r: &Replication) -> i64 {
    r.src
        .query_one("select max(seq) from pgferry.queue where op = 'S'", &[])
        .await
        .unwrap()
        .get(0)
}

/// The rows of both tables, compared whole (`t::text`) on each side.
const ITEMS: (&str, &str) = (
    "select t::text from digoal.items t order by id",
    "select t::text from digoal.items t order by id",
);

/// `verify` of every table, once each is replicating (a type change
/// rewrites a table, which is then copied again): exit 0, no differences.
async fn verify_equal(r: &mut Replication) {
    support::setup::wait_for_sql(
        &r.src,
        "select not exists (select from pgferry.tables where state <> 'replicating')",
        SYNC,
    )
    .await;
    let out = run_command(
        "source-agent",
        &[
            "verify",
            "--source-db",
            &r.source_db,
            "--source-share",
            "100",
            "--timeout",
            "60s",
        ],
    )
    .await;
    if out.status.code() != Some(0) {
        panic!(
            "verify: {}{}\nstatus {:#}\ntarget agent:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            r.status().await,
            r.target_agent().log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_rename_retype_and_drop_columns_reach_the_target_at_their_place_under_writers() {
    let mut r = items_and_picked().await;
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    let writers = writers(&r);
    let picked = |columns: &str| {
        (
            format!("select row({columns})::text from digoal.picked order by id"),
            format!("select row({columns})::text from digoal.picked_t order by id"),
        )
    };
    let steps: [(&str, &str); 5] = [
        (
            "alter table digoal.items add column flag text not null default 'on';
             alter table digoal.picked add column flag text default 'on';
             update digoal.items set flag = 'off' where id % 10 = 0;
             update digoal.picked set flag = 'off' where id % 10 = 0;",
            "id, n, note",
        ),
        (
            "alter table digoal.items rename column note to remark;
             alter table digoal.picked rename column note to remark;
             update digoal.items set remark = 'renamed' where id % 7 = 0;
             update digoal.picked set remark = 'renamed' where id % 7 = 0;",
            "id, n, remark",
        ),
        (
            "alter table digoal.items alter column n type bigint;
             alter table digoal.picked alter column n type bigint;
             update digoal.items set n = 3000000000 + id where id % 5 = 0;
             update digoal.picked set n = 3000000000 + id where id % 5 = 0;",
            "id, n, remark",
        ),
        (
            "alter table digoal.items drop column extra;
             alter table digoal.picked drop column remark;",
            "id, n",
        ),
        (
            "alter table digoal.items add column twice bigint generated always as (n * 2) stored;
             update digoal.items set n = n + 1 where id % 3 = 0;",
            "id, n",
        ),
    ];
    for (ddl, _) in &steps {
        r.src
            .batch_execute(ddl)
            .await
            .unwrap_or_else(|e| panic!("{ddl}: {e}"));
        // Exact under load: compared at a batch after the change.
        verify_equal(&mut r).await;
    }
    for writer in writers {
        assert!(writer.stop().await > 0, "the writers wrote throughout");
    }
    let (source, target) = picked(steps[4].1);
    wait_equal(&r, &[ITEMS, (&source, &target)]).await;
    // The target table of the column list took neither the new column nor
    // the source's column it does not replicate; the dropped ones are gone.
    let target_columns = texts(
        &r.dst,
        "select string_agg(attname, ',' order by attnum) from pg_attribute
         where attrelid = 'digoal.picked_t'::regclass and attnum > 0 and not attisdropped",
    )
    .await;
    assert_eq!(target_columns, ["id,n"]);
    let items_columns = texts(
        &r.dst,
        "select string_agg(attname || ' ' || format_type(atttypid, atttypmod), ',' order by attnum)
         from pg_attribute
         where attrelid = 'digoal.items'::regclass and attnum > 0 and not attisdropped",
    )
    .await;
    assert_eq!(
        items_columns,
        ["id integer,n bigint,remark text,flag text,twice bigint"]
    );
    // Computed on the target too, not written by the applier.
    let computed = texts(
        &r.dst,
        "select attgenerated::text from pg_attribute
         where attrelid = 'digoal.items'::regclass and attname = 'twice'",
    )
    .await;
    assert_eq!(computed, ["s"]);
    verify_equal(&mut r).await;
    r.source_agent().assert_running();
    r.target_agent().assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_the_old_and_the_new_shape_in_one_batch_arrive_each_in_its_own() {
    let mut r = items_and_picked().await;
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    // With the source agent stopped, the rows before the ALTER, the ALTER
    // and the rows after it are cut into one batch.
    r.source_agent().kill9().await;
    r.src
        .batch_execute(
            "update digoal.items set note = 'old shape' where id <= 50;
             alter table digoal.items rename column note to remark;
             alter table digoal.items add column born timestamptz default '2026-01-02 03:04:05+00';
             update digoal.items set remark = 'new shape', born = now() where id > 25 and id <= 75;
             insert into digoal.items (id, n, remark) values (5000, 1, 'after');
             alter table digoal.items alter column n type numeric(20,2) using n * 2 + 0.5;
             update digoal.items set n = n + 0.25 where id <= 10;",
        )
        .await
        .unwrap();
    r.start_source_agent().await;
    wait_equal(&r, &[ITEMS]).await;
    verify_equal(&mut r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_either_agent_and_the_target_database_around_a_schema_change_loses_nothing() {
    let mut r = items_and_picked().await;
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    let writers = writers(&r);
    r.src
        .batch_execute(
            "alter table digoal.items add column k1 int default 7;
             update digoal.items set k1 = id where id % 3 = 0;",
        )
        .await
        .unwrap();
    r.kill9_and_restart_target_agent().await;
    r.src
        .batch_execute("alter table digoal.items rename column k1 to k2")
        .await
        .unwrap();
    r.kill9_and_restart_source_agent().await;
    r.src
        .batch_execute(
            "alter table digoal.items alter column k2 type bigint;
             update digoal.items set k2 = 5000000000 where id = 2;",
        )
        .await
        .unwrap();
    // The target database itself, mid-stream.
    r.target.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.src
        .batch_execute("alter table digoal.items drop column note")
        .await
        .unwrap();
    r.target.start_server();
    r.reconnect_target().await;
    for writer in writers {
        writer.stop().await;
    }
    wait_equal(&r, &[ITEMS]).await;
    verify_equal(&mut r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_the_target_cannot_make_waits_for_the_operator_then_applies_by_itself() {
    let mut r = items_and_picked().await;
    r.dst
        .batch_execute("create view digoal.items_notes as select id, note from digoal.items")
        .await
        .unwrap();
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    r.src
        .batch_execute(
            "alter table digoal.items alter column note type varchar(100);
             insert into digoal.items (id, n, note) values (9001, 1, 'after the alter');",
        )
        .await
        .unwrap();
    let id = newest_schema_change(&r).await;
    let error = r
        .wait_for_error(&[&format!("schema change {id}"), "items_notes"])
        .await;
    println!("status: {error:#}");
    // Nothing after it applied: the row inserted after the ALTER waits.
    let waiting = on_target(&r, 9001).await;
    assert_eq!(waiting, ["0"]);
    // The operator drops the view: the change applies by itself.
    r.dst
        .batch_execute("drop view digoal.items_notes")
        .await
        .unwrap();
    wait_equal(&r, &[ITEMS]).await;

    // Again, but the operator makes the change by hand (keeping the view)
    // and says so: made again, it would fail again.
    r.dst
        .batch_execute("create view digoal.items_notes as select id, note from digoal.items")
        .await
        .unwrap();
    r.src
        .batch_execute(
            "alter table digoal.items alter column note type varchar(200);
             update digoal.items set note = 'by hand' where id = 1;",
        )
        .await
        .unwrap();
    let id = newest_schema_change(&r).await;
    r.wait_for_error(&[&format!("schema change {id}")]).await;
    r.dst
        .batch_execute(
            "begin;
             drop view digoal.items_notes;
             alter table digoal.items alter column note type varchar(200);
             create view digoal.items_notes as select id, note from digoal.items;
             commit;",
        )
        .await
        .unwrap();
    let out = run_command(
        "source-agent",
        &["ddl-done", "--source-db", &r.source_db, &id.to_string()],
    )
    .await;
    expect_success("ddl-done", &out);
    wait_equal(&r, &[ITEMS]).await;
    verify_equal(&mut r).await;
    let wrong = run_command(
        "source-agent",
        &["ddl-done", "--source-db", &r.source_db, "999999"],
    )
    .await;
    assert!(!wrong.status.success(), "an unknown ID is refused");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no schema change 999999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_table_renames_its_target_unless_the_target_has_its_own_name() {
    let mut r = items_and_picked().await;
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    r.src
        .batch_execute(
            "alter table digoal.items rename to goods;
             alter table digoal.picked rename to chosen;
             insert into digoal.goods (id, n) values (8000, 1);
             insert into digoal.chosen (id, n, note) values (8000, 1, 'renamed');",
        )
        .await
        .unwrap();
    let goods = (
        "select t::text from digoal.goods t order by id",
        "select t::text from digoal.goods t order by id",
    );
    let chosen = (
        "select row(id, n, note)::text from digoal.chosen order by id",
        "select row(id, n, note)::text from digoal.picked_t order by id",
    );
    wait_equal(&r, &[goods, chosen]).await;
    // The registrations follow: status and the next stream name the tables
    // as they are now.
    r.kill9_and_restart_source_agent().await;
    r.src
        .batch_execute("update digoal.goods set n = 2 where id = 8000")
        .await
        .unwrap();
    wait_equal(&r, &[goods, chosen]).await;
    let status = r.status().await;
    let names: Vec<&str> = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["source"].as_str())
        .collect();
    assert!(
        names.contains(&"digoal.goods") && names.contains(&"digoal.chosen"),
        "{status:#}"
    );
    verify_equal(&mut r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ddl_pause_a_target_stops_at_each_schema_change_until_the_operator_has_made_it() {
    let mut r = items_and_picked().await;
    source_agent(&[
        "add-target",
        "--source-db",
        &r.source_db,
        "dc2",
        "--address",
        &r.target_url,
        "--ddl",
        "pause",
    ])
    .await;
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    r.src
        .batch_execute(
            "alter table digoal.items add column size int;
             insert into digoal.items (id, n, size) values (7000, 1, 42);",
        )
        .await
        .unwrap();
    let id = newest_schema_change(&r).await;
    r.wait_for_error(&[&format!("schema change {id}"), "--ddl pause"])
        .await;
    let waiting = on_target(&r, 7000).await;
    assert_eq!(waiting, ["0"], "nothing after the change applied");
    // The operator makes it (here as the source did): the target, now in
    // the new shape, goes on.
    r.dst
        .batch_execute("alter table digoal.items add column size int")
        .await
        .unwrap();
    wait_equal(&r, &[ITEMS]).await;
    // A change the operator makes otherwise (another default): ddl-done.
    r.src
        .batch_execute("alter table digoal.items alter column size set default 1")
        .await
        .unwrap();
    let id = newest_schema_change(&r).await;
    r.wait_for_error(&[&format!("schema change {id}")]).await;
    r.dst
        .batch_execute("alter table digoal.items alter column size set default 2")
        .await
        .unwrap();
    source_agent(&[
        "ddl-done",
        "--source-db",
        &r.source_db,
        "--target",
        "dc2",
        &id.to_string(),
    ])
    .await;
    r.src
        .batch_execute("insert into digoal.items (id, n) values (7001, 1)")
        .await
        .unwrap();
    wait_equal(&r, &[ITEMS]).await;
    verify_equal(&mut r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ddl_watch_source_agent_ddl_records_changes_and_an_alter_made_otherwise_sets_the_table_aside()
 {
    let mut r = items_and_picked().await;
    // As on an install without a superuser: no event triggers.
    r.src
        .batch_execute(
            "alter event trigger pgferry_watch_ddl disable;
             alter event trigger pgferry_note_rewrite disable;",
        )
        .await
        .unwrap();
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    let db = r.source_db.clone();
    let out = source_agent(&[
        "ddl",
        "--source-db",
        &db,
        "alter table digoal.items add column c text default 'x';
         alter table digoal.items rename column note to remark;",
    ])
    .await;
    assert!(
        out.contains("recorded a schema change of digoal.items"),
        "{out}"
    );
    r.src
        .batch_execute("insert into digoal.items (id, n, remark, c) values (6000, 1, 'r', 'y')")
        .await
        .unwrap();
    wait_equal(&r, &[ITEMS]).await;
    // From a file, a type change through USING: the table is copied again.
    let file = std::env::temp_dir().join(format!("pgferry-ddl-{}.sql", std::process::id()));
    std::fs::write(
        &file,
        "alter table digoal.items alter column n type text using 'n=' || n;",
    )
    .unwrap();
    source_agent(&["ddl", "--source-db", &db, "-f", file.to_str().unwrap()]).await;
    wait_equal(&r, &[ITEMS]).await;
    // An ALTER made otherwise: the table is set aside, shown diverged, and
    // the other tables go on.
    r.src
        .batch_execute(
            "alter table digoal.items add column d int default 4;
             insert into digoal.items (id, n) values (6001, 'after');
             insert into digoal.picked (id, n, note) values (6001, 1, 'goes on');",
        )
        .await
        .unwrap();
    let table = support::wait_until("the table shows diverged", SYNC, || async {
        let status = r.status().await;
        status["tables"]
            .as_array()?
            .iter()
            .find(|t| t["source"] == "digoal.items" && t["state"] == "diverged")
            .cloned()
    })
    .await;
    assert!(
        table["diverged"]["reason"]
            .as_str()
            .unwrap()
            .contains("changed outside pgferry"),
        "{table}"
    );
    let picked = (
        "select row(id, n, note)::text from digoal.picked order by id",
        "select row(id, n, note)::text from digoal.picked_t order by id",
    );
    support::wait_until("the other tables go on", SYNC, || async {
        rows(
            &r.dst,
            "select id::text from digoal.picked_t where id = 6001",
        )
        .await
        .pop()
    })
    .await;
    // repair copies it again, in its new shape.
    let out = run_command(
        "source-agent",
        &["repair", "--source-db", &db, "--source-share", "100"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_equal(&r, &[ITEMS, picked]).await;
    verify_equal(&mut r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_ships_its_last_changes_then_its_registration_ends_and_the_target_keeps_it()
{
    let mut r = items_and_picked().await;
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    // The source agent is stopped: the drop and the changes before it wait
    // in the queue, then ship in order.
    r.source_agent().kill9().await;
    r.src
        .batch_execute(
            "insert into digoal.picked (id, n, note) values (9100, 1, 'last');
             begin;
             update digoal.picked set note = 'in the drop''s transaction' where id = 1;
             drop table digoal.picked;
             commit;
             insert into digoal.items (id, n) values (9100, 1);",
        )
        .await
        .unwrap();
    r.start_source_agent().await;
    wait_equal(&r, &[ITEMS]).await;
    let kept = texts(
        &r.dst,
        "select row(id, n, note)::text from digoal.picked_t where id in (1, 9100) order by id",
    )
    .await;
    assert_eq!(
        kept,
        ["(1,1,\"in the drop's transaction\")", "(9100,1,last)"]
    );
    // The registration ends and the target agent lifts its guard.
    support::setup::wait_for_sql(
        &r.src,
        "select not exists (select from pgferry.tables where source_name = 'picked')",
        SYNC,
    )
    .await;
    support::setup::wait_for_sql(
        &r.dst,
        "select not exists (select from pg_trigger
                            where tgrelid = 'digoal.picked_t'::regclass and tgname = 'pgferry_guard')",
        SYNC,
    )
    .await;
    r.src
        .batch_execute("update digoal.items set n = 5 where id = 9100")
        .await
        .unwrap();
    wait_equal(&r, &[ITEMS]).await;
}

/// [`items_and_picked`] with table digoal.filtered (`definition`) added
/// with `--where filter`, holding the rows `columns` (over `g`) makes for
/// g in 1..=10, the agents started.
async fn filtered_beside_items(definition: &str, filter: &str, columns: &str) -> Replication {
    let mut r = items_and_picked().await;
    r.create_table("digoal.filtered", "digoal.filtered", definition)
        .await;
    let db = r.source_db.clone();
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        "digoal.filtered",
        "--where",
        filter,
    ])
    .await;
    r.src
        .batch_execute(&format!(
            "insert into digoal.filtered select {columns} from generate_series(1, 10) g"
        ))
        .await
        .unwrap();
    r.start_agents().await;
    r
}

/// Waits until `status` shows source table `source` diverged; returns its
/// entry and the reason.
async fn diverged(r: &Replication, source: &str) -> (serde_json::Value, String) {
    let table = support::wait_until(&format!("{source} shows diverged"), SYNC, || async {
        let status = r.status().await;
        status["tables"]
            .as_array()?
            .iter()
            .find(|t| t["source"] == source && t["state"] == "diverged")
            .cloned()
    })
    .await;
    let reason = table["diverged"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (table, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_column_a_where_names_stops_that_table_naming_it_and_the_others_go_on() {
    let r = filtered_beside_items(
        "(id int primary key, n int, note text)",
        "n > 5",
        "g, g, 'x'",
    )
    .await;
    wait_equal(&r, &[ITEMS]).await;
    r.src
        .batch_execute(
            "alter table digoal.filtered drop column n;
             insert into digoal.filtered values (11, 'after the drop');
             insert into digoal.items (id, n) values (11000, 1);",
        )
        .await
        .unwrap();
    let (table, reason) = diverged(&r, "digoal.filtered").await;
    assert!(reason.contains("--where names column n"), "{table}");
    wait_equal(&r, &[ITEMS]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_where_stops_its_table_for_its_own_columns_by_number_and_a_rename_goes_through() {
    let r = filtered_beside_items(
        "(id int primary key, a int, \"a+b\" int, note text)",
        "\"a+b\" > 5",
        "g, g, g, 'x'",
    )
    .await;
    let filtered = (
        "select row(id, \"a+b\", note)::text from digoal.filtered where \"a+b\" > 5 order by id",
        "select row(id, \"a+b\", note)::text from digoal.filtered order by id",
    );
    wait_equal(&r, &[ITEMS, filtered]).await;
    // Column a's name is in the filter's text, but not among its columns.
    r.src
        .batch_execute(
            "alter table digoal.filtered drop column a;
             insert into digoal.filtered values (11, 11, 'after the drop');",
        )
        .await
        .unwrap();
    wait_equal(&r, &[ITEMS, filtered]).await;
    // Renaming the filter's own column: the ALTER goes through, and the
    // table stops, naming it, while the others go on.
    r.src
        .batch_execute(
            "alter table digoal.filtered rename column \"a+b\" to total;
             insert into digoal.filtered values (12, 12, 'after the rename');
             insert into digoal.items (id, n) values (12000, 1);",
        )
        .await
        .unwrap();
    let (table, reason) = diverged(&r, "digoal.filtered").await;
    assert!(reason.contains("--where names column a+b"), "{table}");
    wait_equal(&r, &[ITEMS]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_created_in_a_followed_schema_is_added_and_copied_in_stream_order() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create schema shop;
             create table shop.orders (id int primary key, total numeric);
             insert into shop.orders values (1, 10.5);",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute(&format!(
            "create schema shop authorization {}",
            support::setup::APPLIER
        ))
        .await
        .unwrap();
    let db = r.source_db.clone();
    let out = source_agent(&[
        "add-table",
        "--source-db",
        &db,
        "--schema",
        "shop",
        "--create-target",
        "--follow",
        "--exclude",
        "tmp%",
    ])
    .await;
    assert!(out.contains("following shop"), "{out}");
    r.start_agents().await;
    let orders = (
        "select t::text from shop.orders t order by id",
        "select t::text from shop.orders t order by id",
    );
    wait_equal(&r, &[orders]).await;
    // Created with rows in its own transaction, written right after, and
    // one left out (no key) and one excluded by name: the first arrives
    // whole, the others are not replicated; and a partitioned table.
    r.src
        .batch_execute(
            "begin;
             create table shop.items (id int primary key, name text, at timestamptz default now());
             insert into shop.items (id, name) select g, 'item ' || g from generate_series(1, 100) g;
             commit;
             update shop.items set name = 'renamed' where id = 7;
             insert into shop.items (id, name) values (101, 'after');
             create table shop.nokey (v int);
             create table shop.tmp_scratch (id int primary key);
             insert into shop.orders values (2, 3);
             begin;
             create table shop.visits (id int, day int, primary key (id, day)) partition by range (day);
             create table shop.visits_1 partition of shop.visits for values from (0) to (10);
             create table shop.visits_2 partition of shop.visits for values from (10) to (20);
             insert into shop.visits select g, g % 20 from generate_series(1, 50) g;
             commit;
             update shop.visits set day = 19 - day where id % 3 = 0;",
        )
        .await
        .unwrap();
    let items = (
        "select t::text from shop.items t order by id",
        "select t::text from shop.items t order by id",
    );
    // A partitioned table created with its partitions and rows: by its
    // root alone.
    let visits = (
        "select t::text from shop.visits t order by id",
        "select t::text from shop.visits t order by id",
    );
    wait_equal(&r, &[orders, items, visits]).await;
    let replicated = texts(
        &r.src,
        "select string_agg(source_name, ',' order by source_name) from pgferry.tables",
    )
    .await;
    assert_eq!(replicated, ["items,loc_test,orders,visits"]);
    verify_equal(&mut r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_key_column_and_a_table_moved_to_another_schema_keep_replicating() {
    let mut r = items_and_picked().await;
    r.start_agents().await;
    wait_equal(&r, &[ITEMS]).await;
    r.src
        .batch_execute(
            "alter table digoal.items rename column id to item_id;
             update digoal.items set n = -n where item_id <= 10;
             delete from digoal.items where item_id = 11;
             create schema archive;
             alter table digoal.items set schema archive;
             update archive.items set item_id = item_id + 1000 where item_id = 12;
             insert into archive.items (item_id, n) values (7, 7) on conflict (item_id) do update set n = 77;",
        )
        .await
        .unwrap();
    let items = (
        "select t::text from archive.items t order by item_id",
        "select t::text from archive.items t order by item_id",
    );
    wait_equal(&r, &[items]).await;
    verify_equal(&mut r).await;
}
