//! Exact by every path: values arrive as the source has them through the
//! initial copy, inserts, updates and deletes, whole and through `--columns`,
//! `--where` and `--as`, compared row by row as `t::text`.

use std::time::Duration;

use support::Replication;
use support::setup::{source_agent, wait_for_sql};
use tokio_postgres::Client;

const SYNC: Duration = Duration::from_secs(30);

/// Columns of every kind whose JSON form does not read back exactly, and
/// scalars whose text a careless path changes.
pub(crate) const AWKWARD: &str =
    "(id int primary key, j json, jb jsonb, a int[], ja jsonb[], h hstore,
    c digoal.pair, d digoal.doc, x xml, f float8, t text)";

/// Rows of [`AWKWARD`] (ids from `first`), as the applications write them.
pub(crate) fn awkward_rows(first: i32) -> String {
    let rows = [
        r#"'null', 'null', '[0:1]={7,8}', array['null'::jsonb, null], 'a=>1, b=>NULL',
           '(1,"x y")', 'null', '<a>1</a>', '-0', 'back\slash "q"'"#,
        r#"'  "str"  ', '{"k": null}', '{{1,2},{3,4}}', '{}', '', '(,)', '{"a": 1}',
           '<?xml version="1.0"?><b/>', 'NaN', ''"#,
        r#"'"\u00e9"', '"\u00e9"', '[-2:-2]={NULL}', array['{"a":  1}'::jsonb], '"k"=>"v,w"',
           null, '[]', null, '1e-310', null"#,
        r#"'{"a":  1, "a": 2}', '[null]', '{}', null, null, '(2,)', null, '<c x="1"/>', '-Infinity', 'é'"#,
        r#"'"\u0000"', null, null, null, null, null, '"x"', null, null, 'last'"#,
        "null, null, null, null, null, null, null, null, null, null",
    ];
    rows.iter()
        .enumerate()
        .map(|(i, row)| format!("({}, {row})", first + i as i32))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first column of `sql`'s rows, as text.
pub(crate) async fn texts(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `select` of `columns` of `table` as one text per row, in key order.
async fn rows_as_text(client: &Client, table: &str, columns: &str) -> Vec<String> {
    texts(
        client,
        &format!("select row({columns})::text from {table} order by id"),
    )
    .await
}

/// Whether the source's queue is empty: every change acknowledged.
pub(crate) async fn queue_drained(r: &Replication) -> bool {
    r.src
        .query_one("select not exists (select from pgferry.queue)", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until each (source, target, columns, filter) pair holds the same
/// rows as `t::text`, and the queue is empty.
pub(crate) async fn wait_rows_equal(r: &Replication, pairs: &[(&str, &str, &str, &str)]) {
    let mut last = Vec::new();
    let done = tokio::time::timeout(SYNC, async {
        loop {
            last.clear();
            for (source, target, columns, filter) in pairs {
                let s = rows_as_text(&r.src, &format!("{source} where {filter}"), columns).await;
                let t = rows_as_text(&r.dst, target, columns).await;
                last.push((source.to_string(), s, t));
            }
            if queue_drained(r).await && last.iter().all(|(_, s, t)| s == t) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if done.is_err() {
        for (table, s, t) in &last {
            if s != t {
                let status = r.status().await;
                panic!(
                    "{table} differs:\nsource {s:#?}\ntarget {t:#?}\nstatus {status}\ntarget agent:\n{}",
                    r.target_agent.as_ref().map(|a| a.log()).unwrap_or_default()
                );
            }
        }
        panic!("the queue did not drain");
    }
}

/// The same types and tables on both sides; the target's owned by the
/// applier.
pub(crate) async fn create_on_both(r: &Replication, tables: &[(&str, &str)]) {
    let types = "create extension if not exists hstore;
                 create type digoal.pair as (a int, b text);
                 create domain digoal.doc as jsonb;";
    r.src.batch_execute(types).await.unwrap();
    r.dst.batch_execute(types).await.unwrap();
    for (table, definition) in tables {
        r.create_table(table, table, definition).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_arrives_as_the_source_has_it_by_every_path_and_mapping() {
    let mut r = Replication::new().await;
    let cols_def = "(id int primary key, j json, a int[], f float8)";
    create_on_both(
        &r,
        &[
            ("digoal.whole", AWKWARD),
            ("digoal.picked", AWKWARD),
            ("digoal.filtered", AWKWARD),
            (
                "digoal.plain",
                "(id int primary key, f float8, n numeric, t text)",
            ),
            ("digoal.array_keys", "(k int[] primary key, v jsonb)"),
        ],
    )
    .await;
    // The picked table's target has only the picked columns.
    r.dst
        .batch_execute(&format!(
            "drop table digoal.picked; create table digoal.picked_t {cols_def};
             alter table digoal.picked_t owner to applier"
        ))
        .await
        .unwrap();
    // Rows before add-table travel by the initial copy.
    for table in ["digoal.whole", "digoal.picked", "digoal.filtered"] {
        r.src
            .batch_execute(&format!("insert into {table} values {}", awkward_rows(1)))
            .await
            .unwrap();
    }
    r.src
        .batch_execute(
            "insert into digoal.plain values (1, '-0', 1.50, 'a'), (2, 'NaN', -0.0, null);
             insert into digoal.array_keys values ('[0:1]={1,2}', 'null'), ('{1,2}', '{\"a\": null}')",
        )
        .await
        .unwrap();
    let db = r.source_db.clone();
    for args in [
        vec!["digoal.whole"],
        vec![
            "digoal.picked",
            "--as",
            "digoal.picked_t",
            "--columns",
            "id,j,a,f",
        ],
        vec!["digoal.filtered", "--where", "id % 2 = 1 or id > 100"],
        vec!["digoal.plain"],
        vec!["digoal.array_keys"],
    ] {
        let mut command = vec!["add-table", "--source-db", &db];
        command.extend(args);
        source_agent(&command).await;
    }
    r.start_agents().await;
    let all = "id, j, jb, a, ja, h, c, d, x, f, t";
    let pairs = [
        ("digoal.whole", "digoal.whole", all, "true"),
        ("digoal.picked", "digoal.picked_t", "id, j, a, f", "true"),
        (
            "digoal.filtered",
            "digoal.filtered",
            all,
            "id % 2 = 1 or id > 100",
        ),
        ("digoal.plain", "digoal.plain", "id, f, n, t", "true"),
    ];
    wait_rows_equal(&r, &pairs).await;
    // Changes: single-row and multi-row inserts, an unrelated column of a
    // copied row, every column rewritten, a key moved, deletes.
    for table in ["digoal.whole", "digoal.picked", "digoal.filtered"] {
        r.src
            .batch_execute(&format!(
                "insert into {table} values {};
                 insert into {table} select id + 200, j, jb, a, ja, h, c, d, x, f, t from {table} where id < 100;
                 update {table} set t = coalesce(t, '') || '+' where id in (1, 2, 3, 4, 5);
                 update {table} set (j, jb, a, ja, h, c, d, x, f) =
                     (select j, jb, a, ja, h, c, d, x, f from {table} s where s.id = {table}.id - 100)
                     where id between 101 and 106;
                 update {table} set id = id + 1000 where id = 102;
                 delete from {table} where id in (5, 205);
                 update {table} set id = 8 where id = 1;",
                awkward_rows(101)
            ))
            .await
            .unwrap();
    }
    r.src
        .batch_execute(
            "insert into digoal.plain values (3, '-0', 2.000, 'b');
             update digoal.plain set t = 'c' where id = 1;
             update digoal.plain set id = 4 where id = 2;
             update digoal.array_keys set v = '[null]' where k = '[0:1]={1,2}';
             delete from digoal.array_keys where k = '{1,2}';
             insert into digoal.array_keys values ('[5:5]={3}', 'null')",
        )
        .await
        .unwrap();
    wait_rows_equal(&r, &pairs).await;
    let array_keys = "select row(k, v)::text from digoal.array_keys order by k::text";
    assert_eq!(
        texts(&r.src, array_keys).await,
        texts(&r.dst, array_keys).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_cannot_be_switched_off_and_columns_added_mid_stream_travel_exactly() {
    let mut r = Replication::new().await;
    // A % in a column name: the capture attach makes is built by format().
    create_on_both(
        &r,
        &[(
            "digoal.docs",
            r#"(id int primary key, j json, "100%s" int default 7)"#,
        )],
    )
    .await;
    let db = r.source_db.clone();
    source_agent(&["add-table", "--source-db", &db, "digoal.docs"]).await;
    r.start_agents().await;
    assert_eq!(
        r.status().await["ddl_watch"],
        true,
        "installed as a superuser"
    );
    for (ddl, refusal) in [
        (
            "alter table digoal.docs disable trigger all",
            "its capture triggers cannot be disabled",
        ),
        (
            "alter table digoal.docs disable trigger user",
            "its capture triggers cannot be disabled",
        ),
    ] {
        let error = r.src.batch_execute(ddl).await.expect_err(ddl);
        let message = error.as_db_error().expect("a database error").message();
        assert!(
            message.contains("digoal.docs") && message.contains(refusal),
            "{ddl}: {message}"
        );
    }
    // A column added on the target first, then on the source: the capture
    // is made again in the ALTER's transaction and carries it exactly.
    r.dst
        .batch_execute("alter table digoal.docs add column k jsonb")
        .await
        .unwrap();
    r.src
        .batch_execute(
            "insert into digoal.docs (id, j) values (1, 'null');
             alter table digoal.docs add column k jsonb;
             insert into digoal.docs (id, j, k) values (2, '  \"s\"  ', 'null'), (3, null, null);
             set session_replication_role = replica;
             insert into digoal.docs (id, j, k, \"100%s\") values (4, 'null', '{\"a\": null}', 8);
             reset session_replication_role;
             alter table digoal.docs add column g int generated always as (id * 2) stored;",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute(
            "alter table digoal.docs add column g int generated always as (id * 2) stored",
        )
        .await
        .unwrap();
    r.src
        .batch_execute("update digoal.docs set k = '[null]' where id = 1")
        .await
        .unwrap();
    wait_rows_equal(
        &r,
        &[(
            "digoal.docs",
            "digoal.docs",
            r#"id, j, k, g, "100%s""#,
            "true",
        )],
    )
    .await;
    // A volatile default fills every row by a rewrite no trigger sees: the
    // table is copied again in stream order, so each row has the value
    // the source computed, not one the target would.
    r.src
        .batch_execute(
            "alter table digoal.docs add column ts timestamptz default clock_timestamp();
             insert into digoal.docs (id, j) values (5, 'null');",
        )
        .await
        .unwrap();
    wait_for_sql(
        &r.dst,
        "select exists (select from pg_attribute where attrelid = 'digoal.docs'::regclass and attname = 'ts')",
        SYNC,
    )
    .await;
    wait_rows_equal(
        &r,
        &[(
            "digoal.docs",
            "digoal.docs",
            r#"id, j, k, g, "100%s", ts"#,
            "true",
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_values_swapped_in_one_transaction_apply_in_the_source_order() {
    let mut r = Replication::new().await;
    create_on_both(
        &r,
        &[
            (
                "digoal.uq",
                "(id int primary key, u int not null unique, v text)",
            ),
            ("digoal.other", "(id int primary key, v text)"),
        ],
    )
    .await;
    let db = r.source_db.clone();
    for table in ["digoal.uq", "digoal.other"] {
        source_agent(&["add-table", "--source-db", &db, table]).await;
    }
    r.src
        .batch_execute("insert into digoal.uq values (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c')")
        .await
        .unwrap();
    r.start_agents().await;
    let pairs = [
        ("digoal.uq", "digoal.uq", "id, u, v", "true"),
        ("digoal.other", "digoal.other", "id, v", "true"),
    ];
    wait_rows_equal(&r, &pairs).await;
    // A swap through a temporary value; a cycle of three; a swap with
    // another table's rows between its steps; then ordinary writes.
    r.src
        .batch_execute(
            "begin;
             update digoal.uq set u = 4 where id = 1;
             update digoal.uq set u = 1 where id = 2;
             update digoal.uq set u = 2 where id = 1;
             commit;
             begin;
             update digoal.uq set u = 10 where id = 1;
             update digoal.uq set u = 2 where id = 3;
             update digoal.uq set u = 3 where id = 2;
             update digoal.uq set u = 1, v = 'cycled' where id = 1;
             commit;
             begin;
             update digoal.uq set u = 100 where id = 3;
             insert into digoal.other values (1, 'between');
             update digoal.uq set u = 2 where id = 1;
             insert into digoal.other values (2, 'between');
             update digoal.uq set u = 1 where id = 3;
             commit;
             insert into digoal.uq values (4, 4, 'later');",
        )
        .await
        .unwrap();
    wait_rows_equal(&r, &pairs).await;
    let log = r.target_agent().log();
    assert!(
        log.contains("applying a batch again after a constraint failed"),
        "the swaps took the in-order retry: {log}"
    );
    let status = r.status().await;
    assert!(
        status.to_string().contains("replicating"),
        "no error left behind: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inheritance_parent_is_refused_and_a_child_gets_every_write_through_its_parent() {
    let mut r = Replication::new().await;
    let ddl = "create table digoal.parent (id int primary key, v text);
               create table digoal.child (extra int) inherits (digoal.parent);
               alter table digoal.child add primary key (id);";
    r.src.batch_execute(ddl).await.unwrap();
    r.dst
        .batch_execute(&format!(
            "{ddl} alter table digoal.parent owner to applier; alter table digoal.child owner to applier;"
        ))
        .await
        .unwrap();
    r.src
        .batch_execute(
            "insert into digoal.parent values (1, 'parent');
             insert into digoal.child values (1, 'child', 10), (2, 'child', 20)",
        )
        .await
        .unwrap();
    // The target's parent has rows of its own with the child's keys.
    r.dst
        .batch_execute("insert into digoal.parent values (1, 'parent'), (2, 'target own')")
        .await
        .unwrap();
    let db = r.source_db.clone();
    let refused = support::run_command(
        "source-agent",
        &["add-table", "--source-db", &db, "digoal.parent"],
    )
    .await;
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && message.contains("digoal.parent has inheritance children (digoal.child)"),
        "{message}"
    );
    source_agent(&["add-table", "--source-db", &db, "digoal.child"]).await;
    r.start_agents().await;
    let pairs = [("digoal.child", "only digoal.child", "id, v, extra", "true")];
    wait_rows_equal(&r, &pairs).await;
    // Statements on the parent reach the child's rows: only its row
    // triggers fire.
    r.src
        .batch_execute(
            "update digoal.parent set v = v || '+' where id = 1;
             delete from digoal.parent where id = 2;
             insert into digoal.child values (3, 'new', 30);",
        )
        .await
        .unwrap();
    wait_rows_equal(&r, &pairs).await;
    let parent: String = r
        .dst
        .query_one(
            "select string_agg(row(p.*)::text, ' ' order by id) from only digoal.parent p",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        parent, "(1,parent) (2,\"target own\")",
        "the target's parent rows untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_table_whose_row_security_binds_the_applier_is_refused_naming_its_policies() {
    let mut r = Replication::new().await;
    r.dst
        .batch_execute(
            "alter table digoal.rmt_test enable row level security;
             alter table digoal.rmt_test force row level security;
             create policy keep_odd on digoal.rmt_test for delete using (id % 2 = 1);
             create policy see_all on digoal.rmt_test for select using (true);",
        )
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_for_error(&["digoal.rmt_test", "row-level security", "keep_odd, see_all"])
        .await;
    r.dst
        .batch_execute("alter table digoal.rmt_test no force row level security")
        .await
        .unwrap();
    r.src
        .batch_execute("insert into digoal.loc_test values (2, 'x', now(), now()); delete from digoal.loc_test where id = 2")
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
}

/// Commits `bad` (a write the target refuses) in one transaction with a
/// row of the seed table, waits for `status` to show the error naming
/// `refusal`, runs `command` (remove-table or set-aside) on digoal.picky,
/// and waits until the seed table's rows, that transaction's included, and
/// one written after have all arrived.
async fn take_out_refused_table(r: &mut Replication, bad: &str, refusal: &[&str], command: &str) {
    r.src
        .batch_execute(&format!(
            "begin;
             insert into digoal.loc_test values (1, 'beside the bad row', now(), now());
             {bad};
             commit;"
        ))
        .await
        .unwrap();
    let status = r.wait_for_error(refusal).await;
    println!("status: {status}");
    let db = r.source_db.clone();
    source_agent(&[command, "--source-db", &db, "digoal.picky"]).await;
    r.src
        .batch_execute("insert into digoal.loc_test values (2, 'after', now(), now())")
        .await
        .unwrap();
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_target_refuses_is_taken_out_and_the_others_go_on_with_nothing_lost() {
    let mut r = Replication::new().await;
    create_on_both(
        &r,
        &[
            ("digoal.picky", "(id int primary key, v int)"),
            ("digoal.parent_t", "(id int primary key)"),
        ],
    )
    .await;
    // The target refuses what the source allows; an unreplicated table on
    // both sides references a replicated one.
    let refs = "create table digoal.refs (id int primary key, p int references digoal.parent_t)";
    r.src.batch_execute(refs).await.unwrap();
    r.dst
        .batch_execute(&format!(
            "{refs}; alter table digoal.refs owner to applier;
             alter table digoal.picky add constraint v_unique unique (v);"
        ))
        .await
        .unwrap();
    let db = r.source_db.clone();
    for table in ["digoal.picky", "digoal.parent_t"] {
        source_agent(&["add-table", "--source-db", &db, table]).await;
    }
    r.start_agents().await;
    r.src
        .batch_execute(
            "insert into digoal.parent_t values (1), (2);
             insert into digoal.refs values (1, 1);",
        )
        .await
        .unwrap();
    wait_rows_equal(&r, &[("digoal.parent_t", "digoal.parent_t", "id", "true")]).await;
    r.dst
        .batch_execute("insert into digoal.refs values (1, 1)")
        .await
        .unwrap();
    // TRUNCATE ... CASCADE empties the referencing table on both sides and
    // does not stall the target.
    r.src
        .batch_execute("truncate digoal.parent_t cascade; insert into digoal.parent_t values (3)")
        .await
        .unwrap();
    wait_rows_equal(&r, &[("digoal.parent_t", "digoal.parent_t", "id", "true")]).await;
    // One transaction the target cannot apply, in the source's order or
    // any: a value its unique constraint refuses.
    take_out_refused_table(
        &mut r,
        "insert into digoal.picky values (1, 7), (2, 7)",
        &["needs an operator", "digoal.picky", "Key (v)=(7)"],
        "remove-table",
    )
    .await;
    wait_rows_equal(&r, &[("digoal.parent_t", "digoal.parent_t", "id", "true")]).await;
    let refs: i64 = r
        .dst
        .query_one("select count(*) from digoal.refs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        refs, 0,
        "the cascade emptied the target's referencing table"
    );
}

/// `md5` of each row's text, in key order: rows of hundreds of MB compared
/// as `t::text` without carrying them to the test.
async fn row_digests(client: &Client, table: &str) -> Vec<String> {
    texts(
        client,
        &format!("select id || ':' || md5(b::text) from {table} b order by id"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_100_and_500_mb_replicate_by_copy_and_change_in_bounded_memory() {
    const MB: i64 = 1024 * 1024;
    let mut r = Replication::new().await;
    create_on_both(&r, &[("digoal.big", "(id int primary key, n int, t text)")]).await;
    // By the initial copy: 100 MB and 500 MB.
    r.src
        .batch_execute(&format!(
            "insert into digoal.big values (1, 1, repeat('a', {})), (2, 2, repeat('b', {}))",
            100 * MB,
            500 * MB
        ))
        .await
        .unwrap();
    let db = r.source_db.clone();
    source_agent(&["add-table", "--source-db", &db, "digoal.big"]).await;
    r.start_agents().await;
    support::wait_until("the copy's rows arrive", SYNC * 4, || async {
        let s = row_digests(&r.src, "digoal.big").await;
        let t = row_digests(&r.dst, "digoal.big").await;
        (s == t).then_some(())
    })
    .await;
    // By changes: a 100 MB insert, a 500 MB update, with small rows beside.
    r.src
        .batch_execute(&format!(
            "insert into digoal.big values (3, 3, repeat('c', {})), (4, 4, 'small');
             update digoal.big set t = repeat('d', {}) where id = 4;
             update digoal.big set n = 10 where id = 1;",
            100 * MB,
            500 * MB
        ))
        .await
        .unwrap();
    support::wait_until("the changes' rows arrive", SYNC * 4, || async {
        let s = row_digests(&r.src, "digoal.big").await;
        let t = row_digests(&r.dst, "digoal.big").await;
        (s == t && queue_drained(&r).await).then_some(())
    })
    .await;
    let source = r.source_agent().peak_rss_mib();
    let target = r.target_agent().peak_rss_mib();
    println!("peak RSS with a 500 MB row: source agent {source} MiB, target agent {target} MiB");
    // docs/reference.md states about three times the largest row.
    assert!(
        source < 1800 && target < 1800,
        "source {source} MiB, target {target} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_beyond_max_row_bytes_is_refused_naming_table_key_and_size() {
    let mut r = Replication::new().await;
    r.source_args = vec!["--max-row-bytes".into(), "1000000".into()];
    r.start_agents().await;
    r.wait_in_sync(SYNC).await;
    r.src
        .batch_execute("insert into digoal.loc_test values (7, repeat('x', 2000000), now(), now())")
        .await
        .unwrap();
    r.wait_for_error(&[
        "needs an operator",
        "table digoal.loc_test",
        r#"key {"id": 7}"#,
        "is longer than --max-row-bytes (1000000)",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_switched_off_without_the_ddl_watch_shows_the_table_diverged_until_copied_again() {
    let mut r = Replication::new().await;
    r.start_agents().await;
    r.wait_in_sync(SYNC).await;
    // As on an install without a superuser: no DDL watch.
    r.src
        .batch_execute(
            "alter event trigger pgferry_watch_ddl disable;
             alter table digoal.loc_test disable trigger user;
             insert into digoal.loc_test values (1, 'not captured', now(), now());",
        )
        .await
        .unwrap();
    let table = support::wait_until("the table shows diverged", SYNC, || async {
        let status = r.status().await;
        let table = status["tables"][0].clone();
        (table["state"] == "diverged").then_some(table)
    })
    .await;
    assert!(
        table["diverged"]["reason"]
            .as_str()
            .unwrap()
            .contains("capture triggers found disabled or dropped"),
        "{table}"
    );
    // With metrics served, the metric counts it (noticed without them too).
    let metrics_port = support::setup::free_port();
    r.source_agent().kill9().await;
    r.source_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    r.start_source_agent().await;
    let diverged = support::wait_until("the metric counts it", SYNC, || async {
        let page = support::setup::metrics(metrics_port).await;
        support::setup::of_target(&page, "pgferry_tables_diverged", "default").filter(|&n| n == 1.0)
    })
    .await;
    assert_eq!(diverged, 1.0);
    // add-table copies it again: equal, and no longer diverged.
    let db = r.source_db.clone();
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        "digoal.loc_test",
        "--as",
        "digoal.rmt_test",
    ])
    .await;
    r.wait_in_sync(SYNC).await;
    let status = r.status().await;
    assert_eq!(status["tables"][0]["state"], "replicating", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_set_aside_leaves_the_stream_at_once_and_shows_diverged() {
    let mut r = Replication::new().await;
    create_on_both(&r, &[("digoal.picky", "(id int primary key, v int)")]).await;
    r.dst
        .batch_execute("alter table digoal.picky add constraint small check (v < 100)")
        .await
        .unwrap();
    let db = r.source_db.clone();
    source_agent(&["add-table", "--source-db", &db, "digoal.picky"]).await;
    r.start_agents().await;
    r.wait_in_sync(SYNC).await;
    take_out_refused_table(
        &mut r,
        "insert into digoal.picky values (1, 500)",
        &[
            "needs an operator",
            r#"digoal.picky, key {"id": 1}"#,
            "small",
        ],
        "set-aside",
    )
    .await;
    let status = r.status().await;
    let picky = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["source"] == "digoal.picky")
        .unwrap()
        .clone();
    assert_eq!(picky["state"], "diverged", "{status}");
    assert_eq!(picky["diverged"]["reason"], "set aside by an operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_equal_by_eq_but_not_by_text_arrives_as_written() {
    let mut r = Replication::new().await;
    let extension = "create extension if not exists citext";
    r.src.batch_execute(extension).await.unwrap();
    r.dst.batch_execute(extension).await.unwrap();
    r.create_table(
        "digoal.eq",
        "digoal.eq",
        "(id int primary key, n numeric, c citext, j jsonb, t text)",
    )
    .await;
    source_agent(&["add-table", "--source-db", &r.source_db, "digoal.eq"]).await;
    r.src
        .batch_execute(
            "insert into digoal.eq values (1, 1.0, 'Abc', '{\"a\": 1}', 'x'), (2, 2, 'b', '[]', 'y')",
        )
        .await
        .unwrap();
    r.start_agents().await;
    let all = ("digoal.eq", "digoal.eq", "id, n, c, j, t", "true");
    wait_rows_equal(&r, &[all]).await;
    // Each new value is = to the old one, and reads otherwise: the target
    // must take it, alone in its statement and beside another change.
    r.src
        .batch_execute(
            "update digoal.eq set n = 1.00 where id = 1;
             update digoal.eq set c = 'ABC' where id in (1, 2);
             update digoal.eq set n = 2.000 where id = 2;
             begin;
             update digoal.eq set c = 'abc' where id = 1;
             update digoal.eq set t = t || '!' where id = 2;
             commit;",
        )
        .await
        .unwrap();
    wait_rows_equal(&r, &[all]).await;
    let target = texts(&r.dst, "select row(n, c)::text from digoal.eq order by id").await;
    assert_eq!(target, ["(1.00,abc)", "(2.000,ABC)"]);
}
