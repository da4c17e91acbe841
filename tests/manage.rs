//! Table management: column subsets, row filters with rows moving into and
//! out of the filter, create-target, whole schemas, remove-table, sequences,
//! a column added to a replicated table.

use std::time::Duration;

use support::setup::{checksum, source_agent, wait_for_sql};
use support::{Replication, wait_until};

const SYNC: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_subset_and_row_filter_follow_rows_into_and_out_of_the_filter() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.orders (id int primary key, region text, amount int, secret text);
             insert into digoal.orders values (1, 'eu', 10, 's1'), (2, 'us', 20, 's2'), (3, 'eu', 30, 's3');",
        )
        .await
        .unwrap();
    r.start_agents().await;
    source_agent(&[
        "add-table",
        "--source-db",
        &r.source_db,
        "digoal.orders",
        "--columns",
        "id,region,amount",
        "--where",
        "region = 'eu'",
        "--create-target",
    ])
    .await;
    // The copy brings only the eu rows, without `secret`.
    wait_for_sql(&r.dst, "select to_regclass('digoal.orders') is not null and (select count(*) = 2 from digoal.orders)", SYNC).await;
    let columns: Vec<String> = r
        .dst
        .query_one("select array_agg(attname::text order by attnum) from pg_attribute where attrelid = 'digoal.orders'::regclass and attnum > 0", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        columns,
        ["id", "region", "amount"],
        "create-target made the table from the replicated columns"
    );

    // With the source agent stopped, look at what the target is to get.
    r.source_agent().kill9().await;
    r.src
        .batch_execute(
            "insert into digoal.orders values (4, 'eu', 40, 's4');           -- in: insert
             insert into digoal.orders values (5, 'us', 50, 's5');           -- out: nothing
             update digoal.orders set region = 'eu' where id = 2;            -- moves in: insert
             update digoal.orders set region = 'us' where id = 1;            -- moves out: delete
             update digoal.orders set amount = 31, secret = 'x' where id = 3; -- stays in: update
             update digoal.orders set amount = 51 where id = 5;              -- stays out: nothing
             update digoal.orders set region = null where id = 4;            -- NULL is no match: delete
             insert into digoal.orders values (6, 'eu', 60, 's6');
             delete from digoal.orders where id = 6;                         -- in: delete
             delete from digoal.orders where id = 1;                         -- out: nothing",
        )
        .await
        .unwrap();
    let captured: Vec<String> = r
        .src
        .query(
            "select r.op::text || coalesce(r.new_row->>'id', r.old_key->>'id')
             from pgferry.queue q
             join pgferry.tables t on t.capture_id = q.table_id,
             pgferry.route(q.op, q.old_key, q.new_row, q.statement_rows is not null,
                           q.old_hits, q.new_hits, t.table_id, t.key_columns, t.columns,
                           t.row_filter is not null) r
             where t.source_name = 'orders' order by seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(captured, ["I4", "I2", "D1", "U3", "D4", "I6", "D6"]);
    let leaked: i64 = r
        .src
        .query_one(
            "select count(*) from pgferry.queue where new_row::jsonb ? 'secret'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "the excluded column is never captured");
    r.source_agent().restart();
    let expected = "select id, region, amount from digoal.orders where region = 'eu'";
    wait_until(
        "the target holds exactly the filtered rows",
        SYNC,
        || async {
            let source = checksum(&r.src, &format!("({expected})")).await;
            let target = checksum(&r.dst, "digoal.orders").await;
            (source == target && source.0 == 2).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_add_takes_keyed_tables_and_sequences_and_reports_the_rest() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create schema shop;
             create table shop.items (id bigserial primary key, name text not null);
             create table shop.log (line text);
             create table shop.tmp_scratch (id int primary key);
             create table shop.events (id int, day int, primary key (id, day)) partition by range (day);
             create table shop.events_1 partition of shop.events for values from (0) to (10);
             create table shop.events_2 partition of shop.events for values from (10) to (20);
             insert into shop.events select g, g % 20 from generate_series(1, 40) g;
             insert into shop.items (name) select 'item ' || g from generate_series(1, 50) g;",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute("create schema shop authorization applier")
        .await
        .unwrap();
    r.start_agents().await;
    let report = source_agent(&[
        "add-table",
        "--source-db",
        &r.source_db,
        "--schema",
        "shop",
        "--exclude",
        "tmp%",
        "--create-target",
    ])
    .await;
    println!("{report}");
    assert!(report.contains("added shop.items"), "{report}");
    // A partitioned table once, by its root; its partitions are its rows.
    assert!(report.contains("added shop.events\n"), "{report}");
    assert!(!report.contains("shop.events_"), "{report}");
    assert!(report.contains("added shop.items_id_seq"), "{report}");
    assert!(
        report.contains("skipped shop.log: table shop.log has no primary key"),
        "{report}"
    );
    assert!(
        report.contains("skipped shop.tmp_scratch: matches --exclude"),
        "{report}"
    );
    r.src
        .batch_execute(
            "insert into shop.items (name) select 'more ' || g from generate_series(1, 25) g",
        )
        .await
        .unwrap();
    wait_until("shop.items and its sequence arrive", SYNC, || async {
        let source = checksum(&r.src, "shop.items").await;
        let target = r
            .dst
            .query_one("select to_regclass('shop.items') is not null", &[])
            .await
            .ok()?
            .get::<_, bool>(0);
        if !target {
            return None;
        }
        let target = checksum(&r.dst, "shop.items").await;
        let seq: Option<i64> = r
            .dst
            .query_one("select pg_sequence_last_value('shop.items_id_seq')", &[])
            .await
            .ok()?
            .get(0);
        (source == target && seq >= Some(75)).then_some(())
    })
    .await;
    wait_until("shop.events arrives", SYNC, || async {
        let target = r
            .dst
            .query_one("select to_regclass('shop.events') is not null", &[])
            .await
            .ok()?
            .get::<_, bool>(0);
        (target && checksum(&r.src, "shop.events").await == checksum(&r.dst, "shop.events").await)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_sequences_go_with_it_and_add_sequence_goes_to_every_target() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create sequence digoal.shared_ref start 500;
             create sequence digoal.codes start 900;
             create table digoal.orders (id bigserial primary key,
                                         n int generated always as identity,
                                         ref int default nextval('digoal.shared_ref'),
                                         code int default nextval('digoal.codes'),
                                         note text);",
        )
        .await
        .unwrap();
    // The target's table has another name, its own sequence behind id, its
    // own identity, no default on ref, and behind code a sequence the
    // applier may not set.
    r.dst
        .batch_execute(
            "create sequence digoal.order_ids;
             create sequence digoal.target_codes;
             create table digoal.orders_copy (id bigint primary key default nextval('digoal.order_ids'),
                                              n int generated by default as identity,
                                              ref int,
                                              code int default nextval('digoal.target_codes'),
                                              note text);
             alter sequence digoal.order_ids owner to applier;
             alter table digoal.orders_copy owner to applier;",
        )
        .await
        .unwrap();
    let added = source_agent(&[
        "add-table",
        "--source-db",
        &r.source_db,
        "digoal.orders",
        "--as",
        "digoal.orders_copy",
    ])
    .await;
    for sequence in ["orders_id_seq", "orders_n_seq", "shared_ref", "codes"] {
        assert!(
            added.contains(&format!("added sequence digoal.{sequence}")),
            "{added}"
        );
    }
    r.start_agents().await;
    r.src
        .batch_execute(
            "insert into digoal.orders (note) select 'order ' || g from generate_series(1, 30) g",
        )
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
    wait_for_sql(
        &r.dst,
        "select pg_sequence_last_value('digoal.order_ids') >= 30
            and pg_sequence_last_value(pg_get_serial_sequence('digoal.orders_copy', 'n')) >= 30",
        SYNC,
    )
    .await;
    assert_eq!(
        checksum(&r.src, "digoal.orders").await,
        checksum(&r.dst, "digoal.orders_copy").await
    );
    // ref draws from no sequence on the target: nothing is kept there, and
    // nothing stops.
    let created: bool = r
        .dst
        .query_one("select to_regclass('digoal.shared_ref') is not null", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !created,
        "the target keeps no copy of a sequence no column of its uses"
    );
    // One the applier may not set is passed over, and nothing stops.
    let untouched: bool = r
        .dst
        .query_one(
            "select pg_sequence_last_value('digoal.target_codes') is null",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        untouched,
        "a sequence the applier may not set is left as it is"
    );
    let status = r.status().await;
    let sequences = status["sequences"].as_array().unwrap();
    assert_eq!(sequences.len(), 4, "{status:#}");
    assert!(
        sequences
            .iter()
            .all(|s| s["table"] == "digoal.orders" && s["target"] == "default"),
        "{status:#}"
    );
    // A sequence added without --target goes to every target.
    r.src
        .batch_execute("create sequence digoal.ticket")
        .await
        .unwrap();
    // The first named target takes over the installation's unnamed one.
    for (name, address) in [
        ("dc2", r.target_url.as_str()),
        ("spare", "http://127.0.0.1:1"),
    ] {
        source_agent(&[
            "add-target",
            "--source-db",
            &r.source_db,
            name,
            "--address",
            address,
        ])
        .await;
    }
    let added = source_agent(&["add-sequence", "--source-db", &r.source_db, "digoal.ticket"]).await;
    assert!(added.contains("for 2 target(s)"), "{added}");
    let status = r.status().await;
    let targets: Vec<&str> = status["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "digoal.ticket")
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["dc2", "spare"], "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_stay_at_or_above_the_source_in_batch_order() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute("create sequence digoal.ticket start 1000")
        .await
        .unwrap();
    r.dst.batch_execute("create sequence digoal.ticket; alter sequence digoal.ticket owner to applier; select setval('digoal.ticket', 5000);").await.unwrap();
    source_agent(&["add-sequence", "--source-db", &r.source_db, "digoal.ticket"]).await;
    r.start_agents().await;
    r.src
        .batch_execute(
            "select nextval('digoal.ticket') from generate_series(1, 2000);
             insert into digoal.loc_test values (1, 'moves the sequence along', now(), now());",
        )
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
    let source: i64 = r
        .src
        .query_one("select last_value from digoal.ticket", &[])
        .await
        .unwrap()
        .get(0);
    wait_for_sql(
        &r.dst,
        &format!("select last_value >= {source} from digoal.ticket"),
        SYNC,
    )
    .await;
    // A target ahead of the source is never moved back.
    r.dst
        .batch_execute("select setval('digoal.ticket', 100000)")
        .await
        .unwrap();
    r.src
        .batch_execute("select nextval('digoal.ticket'); insert into digoal.loc_test values (2, 'x', now(), now());")
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
    let target: i64 = r
        .dst
        .query_one("select last_value from digoal.ticket", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(target, 100000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_table_stops_capture_drops_pending_changes_and_lifts_the_guard() {
    let mut r = Replication::replicating_one_row("kept").await;
    wait_for_sql(
        &r.dst,
        "select exists (select from pg_trigger where tgname = 'pgferry_guard')",
        SYNC,
    )
    .await;
    // Changes captured but never cut (the agent is down) are dropped. A
    // statement the killed agent sent just before may still run on the
    // server (a cut that would take the row): wait for its sessions to end.
    r.source_agent().kill9().await;
    wait_for_sql(
        &r.src,
        "select not exists (select from pg_stat_activity
                            where application_name = 'pgferry-source-agent')",
        SYNC,
    )
    .await;
    r.src
        .batch_execute("insert into digoal.loc_test values (2, 'dropped', now(), now())")
        .await
        .unwrap();
    source_agent(&[
        "remove-table",
        "--source-db",
        &r.source_db,
        "digoal.loc_test",
    ])
    .await;
    r.source_agent().restart();
    r.src
        .batch_execute("insert into digoal.loc_test values (3, 'not captured', now(), now())")
        .await
        .unwrap();
    wait_for_sql(
        &r.dst,
        "select not exists (select from pg_trigger where tgname = 'pgferry_guard')",
        SYNC,
    )
    .await;
    let status = r.status().await;
    assert_eq!(status["tables"].as_array().unwrap().len(), 0, "{status}");
    assert_eq!(status["pending_changes"], 0, "{status}");
    let on_target: i64 = r
        .dst
        .query_one("select count(*) from digoal.rmt_test", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_target, 1);
    // The table is the DBA's again: anyone may write it.
    r.dst
        .batch_execute("insert into digoal.rmt_test values (9, 'local', now(), now())")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_on_the_source_reaches_the_target_at_its_place_with_its_default() {
    let mut r = Replication::replicating_one_row("first").await;
    // A change captured before the column existed is still queued when the
    // column comes: the target adds the column where the source did, so the
    // row takes the default there as it did on the source.
    r.target_agent().kill9().await;
    r.src
        .batch_execute(
            "update digoal.loc_test set info = 'before the column' where id = 1;
             alter table digoal.loc_test add column extra text default 'd';
             insert into digoal.loc_test values (2, 'second', now(), now(), 'x');",
        )
        .await
        .unwrap();
    r.target_agent().restart();
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 2);
    assert_eq!(
        target_extra(&r).await,
        [Some("d".to_string()), Some("x".to_string())]
    );
    r.src
        .batch_execute("update digoal.loc_test set extra = 'y' where id = 1")
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
    let extra = target_extra(&r).await;
    assert_eq!(extra, [Some("y".to_string()), Some("x".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_on_the_target_first_replicates_from_the_source_alter_on() {
    let mut r = Replication::replicating_one_row("before").await;
    r.dst
        .batch_execute("alter table digoal.rmt_test add column extra text")
        .await
        .unwrap();
    // The stream announced the table without the column; rows after the
    // ALTER carry it and must not lose it.
    r.src
        .batch_execute(
            "alter table digoal.loc_test add column extra text;
             insert into digoal.loc_test values (2, 'after', now(), now(), 'x');
             update digoal.loc_test set extra = 'y' where id = 1;",
        )
        .await
        .unwrap();
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_dropped_on_the_source_is_dropped_on_the_target_at_its_place() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "alter table digoal.loc_test add column extra text;
             insert into digoal.loc_test values (1, 'first', now(), now(), 'kept');",
        )
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_in_sync(SYNC).await;
    assert_eq!(target_extra(&r).await, [Some("kept".to_string())]);
    r.src
        .batch_execute(
            "update digoal.loc_test set extra = 'just before the drop' where id = 1;
             alter table digoal.loc_test drop column extra;
             update digoal.loc_test set info = 'after the drop' where id = 1;
             insert into digoal.loc_test values (2, 'second', now(), now());",
        )
        .await
        .unwrap();
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 2);
    let gone: bool = r
        .dst
        .query_one(
            "select not exists (select from pg_attribute where attrelid = 'digoal.rmt_test'::regclass
                                and attname = 'extra' and not attisdropped)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(gone, "the column left the target too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_column_is_computed_on_each_side_not_replicated() {
    let mut r = Replication::new().await;
    for (client, table) in [(&r.src, "loc_test"), (&r.dst, "rmt_test")] {
        client
            .batch_execute(&format!(
                "alter table digoal.{table} add column twice int generated always as (id * 2) stored"
            ))
            .await
            .unwrap();
    }
    r.start_agents().await;
    // After the initial copy, so these go as changes, not in the copy.
    r.wait_in_sync(SYNC).await;
    r.src
        .batch_execute(
            "insert into digoal.loc_test select g, 'a', now(), now() from generate_series(1, 10) g;
             insert into digoal.loc_test values (100, 'x', now(), now());
             update digoal.loc_test set info = 'b' where id = 1;
             update digoal.loc_test set info = 'c';",
        )
        .await
        .unwrap();
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 11);
}

/// The target rows' `extra` column, by id.
async fn target_extra(r: &Replication) -> Vec<Option<String>> {
    r.dst
        .query("select extra from digoal.rmt_test order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_its_sql_views_show_the_same_figures_and_the_target_shows_applied_progress() {
    let mut r = Replication::replicating_one_row("seen in SQL").await;
    r.source_agent().terminate(Duration::from_secs(30)).await;
    r.src
        .execute(
            "insert into digoal.loc_test values (2, 'queued', now(), now())",
            &[],
        )
        .await
        .unwrap();
    let applied = r
        .dst
        .query_one(
            "select last_batch, applied_at is not null, durable_at is not null
             from pgferry.applied where source_id = 'dc1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(applied.get::<_, i64>(0), r.target_progress().await);
    assert!(
        applied.get::<_, bool>(1) && applied.get::<_, bool>(2),
        "applied and durable"
    );
    let whole = r.status().await;
    let status = &whole["targets"][0];
    let row = r
        .src
        .query_one(
            "select pending_changes, newest_batch, acked_batch, capture, last_error
             from pgferry.status",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "the queued row");
    assert_eq!(status["pending_changes"], row.get::<_, i64>(0));
    assert_eq!(status["newest_batch"], row.get::<_, i64>(1));
    assert_eq!(status["acked_batch"], row.get::<_, i64>(2));
    assert_eq!(whole["capture"], row.get::<_, &str>(3));
    assert_eq!(status["last_error"].as_str(), row.get::<_, Option<&str>>(4));
    let tables = r
        .src
        .query(
            "select source, state, pending_changes from pgferry.table_status order by source",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(whole["tables"].as_array().unwrap().len(), tables.len());
    for (shown, row) in whole["tables"].as_array().unwrap().iter().zip(&tables) {
        assert_eq!(shown["source"], row.get::<_, &str>(0));
        assert_eq!(shown["state"], row.get::<_, &str>(1));
        assert_eq!(shown["pending_changes"], row.get::<_, i64>(2));
    }
}
