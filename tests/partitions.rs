//! Partitioned tables: a partitioned source table replicates every
//! partition's rows through moves, partitions created, attached, detached,
//! dropped and emptied, and kills; with `--where` and `--columns`, to a
//! target table partitioned otherwise, beside a partition replicated on its
//! own; and a target table partitioned where the source's is not takes
//! every change. `verify` reads them whole.

use std::time::Duration;

use support::Replication;
use support::setup::{Writer, checksum, source_agent};
use support::{run_command, wait_until};

const SYNC: Duration = Duration::from_secs(60);
const ORDERS: (&str, &str) = ("digoal.orders", "digoal.orders_p");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_target_table_takes_every_change_of_a_plain_source_table() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.orders (id int, region text, v text, primary key (id, region));
             insert into digoal.orders
             select g, (array['eu', 'us', 'ap'])[g % 3 + 1], 'first ' || g
             from generate_series(1, 300) g;",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute(
            "create table digoal.orders_p (id int, region text, v text, primary key (id, region))
                 partition by list (region);
             create table digoal.orders_p_eu partition of digoal.orders_p for values in ('eu');
             create table digoal.orders_p_us partition of digoal.orders_p for values in ('us');
             create table digoal.orders_p_rest partition of digoal.orders_p default;",
        )
        .await
        .unwrap();
    owned_by_applier(&r.dst, "digoal.orders_p").await;
    add_as(&r.source_db, ORDERS).await;
    r.start_agents().await;
    r.wait_tables_in_sync(&[ORDERS], SYNC).await;
    // Updates in place, rows moving to another of the target's partitions
    // (their key changes), deletes and inserts, in one transaction and
    // alone.
    r.src
        .batch_execute(
            "update digoal.orders set v = 'updated ' || id where id % 4 = 0;
             update digoal.orders set region = 'us' where region = 'eu' and id % 5 = 0;
             delete from digoal.orders where id % 7 = 0;
             begin;
             insert into digoal.orders select g, 'eu', 'later ' || g from generate_series(301, 350) g;
             update digoal.orders set v = v || ' again' where id % 11 = 0;
             commit;",
        )
        .await
        .unwrap();
    r.wait_tables_in_sync(&[ORDERS], SYNC).await;
    verify_finds_nothing(&r.source_db, "verify").await;
    for partition in ["orders_p_eu", "orders_p_us", "orders_p_rest"] {
        let rows: i64 = r
            .dst
            .query_one(
                &format!("select count(*) from only digoal.{partition}"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(rows > 0, "{partition} holds its rows");
    }
    r.src
        .batch_execute(
            "truncate digoal.orders;
             insert into digoal.orders values (1, 'eu', 'after the truncate'), (2, 'ap', 'too');",
        )
        .await
        .unwrap();
    r.wait_tables_in_sync(&[ORDERS], SYNC).await;
    assert_eq!(checksum(&r.dst, ORDERS.1).await.0, 2);
}

const EVENTS: (&str, &str) = ("digoal.events", "digoal.events_copy");

/// Target table `table` and its partitions, if any, owned by the applier.
async fn owned_by_applier(dst: &tokio_postgres::Client, table: &str) {
    dst.batch_execute(&format!(
        "do $$
         declare r regclass;
         begin
             for r in select relid from pg_partition_tree('{table}') union select '{table}'::regclass loop
                 execute format('alter table %s owner to applier', r);
             end loop;
         end
         $$"
    ))
    .await
    .unwrap();
}

/// `add-table SOURCE --as TARGET` for a (source, target) pair.
async fn add_as(source_db: &str, (source, target): (&str, &str)) {
    source_agent(&[
        "add-table",
        "--source-db",
        source_db,
        source,
        "--as",
        target,
    ])
    .await;
}

/// `verify` of every table finds no difference, after `step`.
async fn verify_finds_nothing(source_db: &str, step: &str) {
    let out = run_command(
        "source-agent",
        &["verify", "--source-db", source_db, "--timeout", "60s"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{step}: verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Source and target rows as text, in one order.
async fn rows(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    client
        .query(&format!("select t::text from {table} t order by 1"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits until the queue is drained and both sides hold the same rows as
/// text, then `verify` must find no difference.
async fn equal_and_verified(r: &mut Replication, step: &str) {
    r.wait_tables_in_sync(&[EVENTS], SYNC).await;
    let (source, target) = (rows(&r.src, EVENTS.0).await, rows(&r.dst, EVENTS.1).await);
    if source != target {
        let first = source.iter().zip(&target).find(|(a, b)| a != b);
        panic!(
            "{step}: source {} rows, target {}; first difference {first:?}",
            source.len(),
            target.len()
        );
    }
    verify_finds_nothing(&r.source_db, step).await;
}

/// Writers through the root and straight into a leaf, a few hundred
/// transactions a second, until stopped.
fn writers(r: &Replication) -> Vec<Writer> {
    vec![
        Writer::start_with(r.source_db.clone(), |round| {
            let id = 100_000 + round;
            format!(
                "insert into digoal.events values ({id}, {day}, 'root ' || {round});
                 update digoal.events set v = v || '+' where id = {id} - 3;
                 delete from digoal.events where id = {id} - 40;
                 select pg_sleep(0.002);",
                day = round % 200
            )
        }),
        Writer::start_with(r.source_db.clone(), |round| {
            let id = 200_000 + round;
            format!(
                "insert into digoal.events_a values ({id}, {day}, 'leaf ' || {round});
                 update digoal.events_a set v = v || '*' where id = {id} - 2;
                 delete from digoal.events_a where id = {id} - 30;
                 select pg_sleep(0.002);",
                day = round % 100
            )
        }),
    ]
}

async fn stop(writers: Vec<Writer>) {
    for writer in writers {
        writer.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_source_table_replicates_every_partition_through_moves_attach_detach_truncate_and_kills()
 {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.events (id int, day int, v text, primary key (id, day))
                 partition by range (day);
             create table digoal.events_a partition of digoal.events for values from (0) to (100);
             create table digoal.events_b partition of digoal.events for values from (100) to (200)
                 partition by range (day);
             create table digoal.events_b1 partition of digoal.events_b for values from (100) to (150);
             create table digoal.events_b2 partition of digoal.events_b for values from (150) to (200);
             insert into digoal.events select g, g % 200, 'first ' || g from generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute(
            "create table digoal.events_copy (id int, day int, v text, primary key (id, day));
             alter table digoal.events_copy owner to applier;",
        )
        .await
        .unwrap();
    add_as(&r.source_db, EVENTS).await;
    r.start_agents().await;
    let w = writers(&r);
    equal_after_writers(&mut r, w, "the initial copy under writers").await;

    // 500 rows one UPDATE moves to the other partitions (their key
    // changes), the target agent killed before they arrive.
    let w = writers(&r);
    let moved = r
        .src
        .execute(
            "update digoal.events set day = day + 100 where id <= 2000 and day < 100 and id % 2 = 0",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(moved, 500);
    r.kill9_and_restart_target_agent().await;
    equal_after_writers(&mut r, w, "500 rows moved between partitions").await;

    // A partition created with rows in the same transaction, and a table
    // of 1,000 rows attached, the source agent killed in between.
    let w = writers(&r);
    r.src
        .batch_execute(
            "begin;
             create table digoal.events_c partition of digoal.events for values from (200) to (300);
             insert into digoal.events select g, 200 + g % 100, 'created ' || g from generate_series(3001, 3300) g;
             commit;
             create table digoal.events_d (id int, day int, v text, primary key (id, day));
             insert into digoal.events_d select g, 300 + g % 100, 'attached ' || g from generate_series(4001, 5000) g;",
        )
        .await
        .unwrap();
    r.kill9_and_restart_source_agent().await;
    r.src
        .batch_execute(
            "alter table digoal.events attach partition digoal.events_d for values from (300) to (400);
             update digoal.events_d set v = v || ' then updated' where id % 10 = 0;",
        )
        .await
        .unwrap();
    equal_after_writers(&mut r, w, "a partition created with rows, a table attached").await;

    // Detached, a partition's rows leave the target with it, and what is
    // written to it afterwards is not replicated; one leaf of the second
    // level emptied alone; a partition dropped with its rows.
    let w = writers(&r);
    r.src
        .batch_execute(
            "alter table digoal.events detach partition digoal.events_c;
             insert into digoal.events_c values (9999, 250, 'after the detach');
             truncate digoal.events_b1;
             insert into digoal.events values (6001, 120, 'after the truncate');",
        )
        .await
        .unwrap();
    r.kill9_and_restart_target_agent().await;
    equal_after_writers(&mut r, w, "a partition detached, a leaf truncated").await;
    r.src
        .batch_execute("drop table digoal.events_d")
        .await
        .unwrap();
    equal_and_verified(&mut r, "a partition dropped").await;
    assert_eq!(
        r.dst
            .query_one(
                "select count(*) from digoal.events_copy where day >= 200",
                &[]
            )
            .await
            .unwrap()
            .get::<_, i64>(0),
        0,
        "the detached and dropped partitions' rows left the target"
    );

    // A column added through the root reaches every partition and the
    // target.
    r.src
        .batch_execute(
            "alter table digoal.events add column tag text default 'new';
             update digoal.events set tag = 'tagged ' || id where id % 9 = 0;
             insert into digoal.events_a values (7001, 5, 'leaf after the alter', 'leaf tag');",
        )
        .await
        .unwrap();
    equal_and_verified(&mut r, "a column added to the table").await;

    // The whole table emptied, then written again.
    r.src
        .batch_execute(
            "truncate digoal.events;
             insert into digoal.events values (1, 1, 'after the whole truncate', null), (2, 160, 'too', 't');",
        )
        .await
        .unwrap();
    equal_and_verified(&mut r, "the table truncated").await;
    assert_eq!(checksum(&r.dst, EVENTS.1).await.0, 2);
}

/// Stops the writers, then [`equal_and_verified`].
async fn equal_after_writers(r: &mut Replication, writers: Vec<Writer>, step: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(writers).await;
    equal_and_verified(r, step).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_root_takes_where_and_columns_to_a_table_partitioned_otherwise_and_a_partition_goes_on_its_own()
 {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.sales (id int, region text, amount int, note text,
                                        primary key (id, region)) partition by list (region);
             create table digoal.sales_eu partition of digoal.sales for values in ('eu');
             create table digoal.sales_us partition of digoal.sales for values in ('us');
             create table digoal.sales_rest partition of digoal.sales default;
             insert into digoal.sales
             select g, (array['eu', 'us', 'ap'])[g % 3 + 1], g % 100, 'note ' || g
             from generate_series(1, 600) g;",
        )
        .await
        .unwrap();
    // The root's big sales, three columns of them, go to a table
    // partitioned by id; the European partition goes whole to a plain
    // table of its own.
    r.dst
        .batch_execute(
            "create table digoal.big_sales (id int, region text, amount int, primary key (id, region))
                 partition by range (id);
             create table digoal.big_sales_low partition of digoal.big_sales for values from (0) to (400);
             create table digoal.big_sales_high partition of digoal.big_sales for values from (400) to (100000);
             create table digoal.sales_eu (id int, region text, amount int, note text, primary key (id, region));",
        )
        .await
        .unwrap();
    owned_by_applier(&r.dst, "digoal.big_sales").await;
    owned_by_applier(&r.dst, "digoal.sales_eu").await;
    let db = r.source_db.clone();
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        "digoal.sales",
        "--as",
        "digoal.big_sales",
        "--columns",
        "id,region,amount",
        "--where",
        "amount > 50",
    ])
    .await;
    source_agent(&["add-table", "--source-db", &db, "digoal.sales_eu"]).await;
    r.start_agents().await;
    // Rows moving between partitions and across the filter, through the
    // root and straight into a partition, and one partition emptied.
    let big = (
        "select id, region, amount from digoal.sales where amount > 50",
        "digoal.big_sales",
    );
    let steps = [
        "update digoal.sales set region = 'us' where region = 'eu' and id % 4 = 0",
        "update digoal.sales set amount = amount + 30 where id % 5 = 0",
        "update digoal.sales_us set amount = 99 where id % 7 = 0",
        "insert into digoal.sales_eu select g, 'eu', g % 100, 'late ' || g from generate_series(601, 700) g",
        "update digoal.sales set note = note || ' changed' where region = 'eu'",
        "delete from digoal.sales_rest where id % 3 = 0",
        "truncate digoal.sales_us",
        "insert into digoal.sales values (1000, 'us', 90, 'after the truncate'), (1001, 'us', 10, 'filtered out')",
    ];
    for step in steps {
        r.src.batch_execute(step).await.unwrap();
        wait_until(step, SYNC, || async {
            let whole = (
                rows(&r.src, "digoal.sales_eu").await,
                rows(&r.dst, "digoal.sales_eu").await,
            );
            let filtered = (
                rows(&r.src, &format!("({})", big.0)).await,
                rows(&r.dst, big.1).await,
            );
            (whole.0 == whole.1 && filtered.0 == filtered.1).then_some(())
        })
        .await;
    }
    verify_finds_nothing(&r.source_db, "verify").await;
    for partition in ["big_sales_low", "big_sales_high"] {
        let held: i64 = r
            .dst
            .query_one(&format!("select count(*) from digoal.{partition}"), &[])
            .await
            .unwrap()
            .get(0);
        assert!(held > 0, "{partition} holds rows");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_capture_triggers_cannot_be_disabled() {
    let r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.visits (id int, day int, primary key (id, day)) partition by range (day);
             create table digoal.visits_1 partition of digoal.visits for values from (0) to (10);",
        )
        .await
        .unwrap();
    source_agent(&["add-table", "--source-db", &r.source_db, "digoal.visits"]).await;
    for statement in [
        "alter table digoal.visits_1 disable trigger all",
        "alter table digoal.visits disable trigger user",
    ] {
        let err = r.src.batch_execute(statement).await.unwrap_err();
        let message = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(
            message.contains("digoal.visits") && message.contains("cannot be disabled"),
            "{statement}: {err}"
        );
    }
}
