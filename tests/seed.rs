//! The seed article's scenario, step by step, with its checksum after each.

use std::time::Duration;

use support::Replication;
use support::setup::{free_port, metrics};

const SYNC: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_replicates_every_statement_kind() {
    let mut r = Replication::new().await;
    r.record_progress_history().await;
    // Small chunks, so the bulk steps' batches span many messages and still
    // commit whole.
    let source_metrics = free_port();
    let target_metrics = free_port();
    r.source_args = vec![
        "--chunk-rows".into(),
        "16".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{source_metrics}"),
    ];
    r.target_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{target_metrics}"),
    ];
    r.start_agents().await;
    let steps = [
        "insert into digoal.loc_test values (1, 'digoal', now(), now())",
        "update digoal.loc_test set info = 'DIGOAL'",
        "delete from digoal.loc_test",
        "insert into digoal.loc_test select generate_series(1, 100), 'DIGOAL', now(), now()",
        "insert into digoal.loc_test select id + 1000, 'TEST', now(), now() from digoal.loc_test",
        "truncate table digoal.loc_test",
    ];
    let expected_rows = [1, 1, 0, 100, 200, 0];
    for (sql, rows) in steps.iter().zip(expected_rows) {
        r.src.batch_execute(sql).await.expect(sql);
        let (count, _) = r.wait_in_sync(SYNC).await;
        assert_eq!(count, rows, "after `{sql}`");
    }
    assert!(r.assert_progress_moved_one_batch_at_a_time().await >= steps.len() as i64);
    let source = metrics(source_metrics).await;
    assert!(source.contains("pgferry_batches_sent_total"), "{source}");
    assert!(source.contains("pgferry_acked_batch"), "{source}");
    let target = metrics(target_metrics).await;
    assert!(target.contains("pgferry_batches_applied_total"), "{target}");
    assert!(target.contains("pgferry_changes_applied_total"), "{target}");
    assert!(
        r.source_agent().terminate(Duration::from_secs(15)).await,
        "source agent shuts down cleanly on SIGTERM"
    );
    assert!(
        r.target_agent().terminate(Duration::from_secs(15)).await,
        "target agent shuts down cleanly on SIGTERM"
    );
}

/// Registers `source` (creating it on both sides from `definition`) and
/// returns the set-up with agents running.
async fn replicate_extra_table(source: &str, target: &str, definition: &str) -> Replication {
    let mut r = Replication::new().await;
    r.create_table(source, target, definition).await;
    support::setup::source_agent(&[
        "add-table",
        "--source-db",
        &r.source_db,
        source,
        "--as",
        target,
    ])
    .await;
    r.start_agents().await;
    r
}

/// Waits until `source` and `target` hold the same `rows` rows.
async fn wait_tables_equal(r: &Replication, source: &str, target: &str, rows: i64) {
    support::wait_until(&format!("{target} equals {source}"), SYNC, || async {
        let s = support::setup::checksum(&r.src, source).await;
        let t = support::setup::checksum(&r.dst, target).await;
        (s == t && s.0 == rows).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_replicate_without_injection() {
    let source = r#"digoal."Order Items""#;
    let target = r#"digoal."""; drop table digoal.loc_test; --""#;
    let mut r = replicate_extra_table(
        source,
        target,
        r#"("Key Col" int primary key, "we""ird" text, "select" int)"#,
    )
    .await;
    r.src
        .batch_execute(&format!(
            r#"insert into {source} values (1, 'a', 1), (2, 'b', 2);
               update {source} set "we""ird" = 'it''s', "Key Col" = 3 where "Key Col" = 1;
               delete from {source} where "Key Col" = 2;"#
        ))
        .await
        .unwrap();
    wait_tables_equal(&r, source, target, 1).await;
    // The seed table is still there: the name was a name.
    r.wait_in_sync(SYNC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_row_updates_that_shift_and_swap_keys_replicate() {
    let r =
        replicate_extra_table("digoal.keys", "digoal.keys", "(id int primary key, v text)").await;
    // Keys may trade places within a statement only where the source's key
    // is checked at the statement's end; the target's stays immediate (the
    // applier's upsert needs it so).
    r.src
        .batch_execute(
            "alter table digoal.keys drop constraint keys_pkey,
                                     add primary key (id) deferrable initially immediate",
        )
        .await
        .unwrap();
    let steps = [
        "insert into digoal.keys select g, 'a' from generate_series(1, 10) g",
        "update digoal.keys set v = 'b'",
        "update digoal.keys set id = id + 100, v = 'c' where id <= 3",
        "update digoal.keys set id = 11 - id where id between 4 and 7",
        "update digoal.keys set id = id + 1, v = v || 'd' where id > 100",
        "begin; update digoal.keys set v = 'e' where id = 8;
                update digoal.keys set id = 80 where id = 8; commit",
    ];
    for sql in steps {
        r.src.batch_execute(sql).await.expect(sql);
        wait_tables_equal(&r, "digoal.keys", "digoal.keys", 10).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_common_type_survives_the_trip() {
    let definition = "(id bigint primary key, n numeric(20,6), f float8, r real, b bytea, a int[], t text[],
        j jsonb, ts timestamptz, d date, iv interval, u uuid, bo boolean, ip inet, pt point, tx text)";
    let r = replicate_extra_table("digoal.types", "digoal.types", definition).await;
    r.src
        .batch_execute(
            r#"begin; set local timezone = 'Asia/Shanghai';
               insert into digoal.types values
               (1, 12345678901234.123456, 0.1, 'NaN', '\x00ff10', '{1,NULL,3}', '{"a b","c,d","é\"q"}',
                '{"k": [1, 2.50, null], "s": "x\ny"}', '2012-08-31 14:33:17.123456+08', '2012-08-31',
                '1 day 02:03:04', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, '10.0.0.1/8', '(1.5,2)',
                E'tab\there, quote '' and backslash \\'),
               (2, null, '-Infinity', 1e-30, '', '{}', '{}', '""', null, 'infinity', null, null, null, null, null, ''),
               (3, -0.000001, 1.7976931348623157e308, 3.4e38, null, null, null, '[]', 'epoch', '4713-01-01 BC', '-1 mon', null, false, '::1', null, null);
               update digoal.types set tx = tx || ' updated' where id = 1;
               commit;"#,
        )
        .await
        .unwrap();
    wait_tables_equal(&r, "digoal.types", "digoal.types", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_added_and_removed_while_running_need_no_restart() {
    let mut r = Replication::new().await;
    r.start_agents().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'a', now(), now())")
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
    r.src
        .batch_execute("create table digoal.later (id int primary key, v text)")
        .await
        .unwrap();
    r.dst
        .batch_execute("create table digoal.later (id int primary key, v text); alter table digoal.later owner to applier")
        .await
        .unwrap();
    support::setup::source_agent(&["add-table", "--source-db", &r.source_db, "digoal.later"]).await;
    r.src
        .batch_execute("insert into digoal.later values (1, 'x'), (2, 'y')")
        .await
        .unwrap();
    support::setup::wait_for_sql(&r.dst, "select count(*) = 2 from digoal.later", SYNC).await;
    support::setup::source_agent(&["remove-table", "--source-db", &r.source_db, "digoal.later"])
        .await;
    r.src
        .batch_execute("insert into digoal.later values (3, 'not replicated')")
        .await
        .unwrap();
    r.src
        .batch_execute("insert into digoal.loc_test values (2, 'b', now(), now())")
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
    let later: i64 = r
        .dst
        .query_one("select count(*) from digoal.later", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(later, 2, "changes after remove-table are not captured");
    let tables = r.status().await["tables"].as_array().unwrap().len();
    assert_eq!(
        tables, 1,
        "the removed table is gone once its changes shipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_streams_replicate_alike() {
    let mut r = Replication::new().await;
    r.start_target_agent().await;
    for (round, compression) in ["zstd", "gzip"].into_iter().enumerate() {
        r.source_args = vec!["--compression".into(), compression.into()];
        r.start_source_agent().await;
        let base = round * 1000;
        r.src
            .batch_execute(&format!(
                "insert into digoal.loc_test select g, md5(g::text), now(), now()
                 from generate_series({}, {}) g;
                 update digoal.loc_test set info = upper(info) where id % 3 = 0;",
                base + 1,
                base + 500
            ))
            .await
            .unwrap();
        let (rows, _) = r.wait_in_sync(SYNC).await;
        assert_eq!(rows, 500 * (round as i64 + 1), "{compression}");
        assert!(r.source_agent().terminate(Duration::from_secs(10)).await);
    }
}
