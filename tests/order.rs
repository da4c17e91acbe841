//! Commit order and exactly-once against the wrong rules that
//! docs/architecture.md ("Batches") names: a long transaction holding a small seq and xid, shorter ones
//! committing past it, and updates to the same rows.

use std::time::Duration;

use support::Replication;
use support::setup::wait_for_sql;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_order_beats_seq_order_and_xmin_order() {
    let mut r = Replication::new().await;
    r.record_progress_history().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'start', now(), now()), (2, 'start', now(), now())")
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_in_sync(Duration::from_secs(30)).await;

    let long = r.source.connect("digoal").await;
    let early = r.source.connect("digoal").await;
    let late = r.source.connect("digoal").await;
    // `long` takes the smallest xid and seq and holds the snapshot xmin back
    // for the whole test.
    long.batch_execute("begin; insert into digoal.loc_test values (100, 'long', now(), now())")
        .await
        .unwrap();
    // `early` takes a smaller xid and seq than `late`, but commits after it.
    early
        .batch_execute("begin; insert into digoal.loc_test values (200, 'early', now(), now())")
        .await
        .unwrap();
    late.batch_execute("begin; update digoal.loc_test set info = 'late' where id = 1; commit")
        .await
        .unwrap();
    // The later-numbered transaction ships while the earlier ones are open:
    // a "seq <= max acked" cleanup would now lose their rows.
    wait_for_sql(
        &r.dst,
        "select exists (select from digoal.rmt_test where id = 1 and info = 'late')",
        Duration::from_secs(30),
    )
    .await;
    // `early` now writes the row `late` wrote, and commits second: commit
    // order says its value wins; xid order would apply it first.
    early
        .batch_execute("update digoal.loc_test set info = 'early' where id = 1; commit")
        .await
        .unwrap();
    wait_for_sql(
        &r.dst,
        "select exists (select from digoal.rmt_test where id = 200)",
        Duration::from_secs(30),
    )
    .await;
    let on_target: String = r
        .dst
        .query_one("select info from digoal.rmt_test where id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_target, "early", "the later commit's value must win");
    // `long` finally touches both rows and commits last of all.
    long.batch_execute(
        "update digoal.loc_test set info = info || '+long' where id in (1, 2); commit",
    )
    .await
    .unwrap();
    let (rows, _) = r.wait_in_sync(Duration::from_secs(30)).await;
    assert_eq!(rows, 4);
    let final_info: String = r
        .dst
        .query_one("select info from digoal.rmt_test where id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(final_info, "early+long");
    r.assert_progress_moved_one_batch_at_a_time().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_changes_leave_nothing_in_the_queue() {
    let r = Replication::new().await;
    r.src
        .batch_execute(
            "begin; insert into digoal.loc_test values (1, 'gone', now(), now()); rollback;
             begin; insert into digoal.loc_test values (2, 'kept', now(), now());
               savepoint s; insert into digoal.loc_test values (3, 'gone', now(), now());
               rollback to savepoint s; commit;",
        )
        .await
        .unwrap();
    let queued: Vec<String> = r
        .src
        .query(
            &format!(
                "select r->>'info' from pgferry.queue q, {} order by seq",
                support::queued_rows("q")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(queued, vec!["kept".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statements_rows_travel_in_arrays_and_land_whole() {
    let mut r = Replication::new().await;
    r.copy_then_stop_agents().await;
    // Queued while no agent runs, so one batch carries them all.
    r.src
        .batch_execute(
            "insert into digoal.loc_test select g, repeat('x', 100), now(), now()
             from generate_series(1, 5000) g;
             update digoal.loc_test set info = 'even' where id % 2 = 0;
             update digoal.loc_test set id = -id where id in (1, 2);
             update digoal.loc_test set id = id + 10000 where id > 4990;
             delete from digoal.loc_test where id between 100 and 199;",
        )
        .await
        .unwrap();
    let (entries, rows): (i64, i64) = {
        let row = r
            .src
            .query_one(
                "select count(*), sum(coalesce(statement_rows, 1))::bigint from pgferry.queue",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        entries < rows / 100,
        "{entries} queue rows for {rows} row changes"
    );
    r.start_agents().await;
    let (count, _) = r.wait_in_sync(Duration::from_secs(60)).await;
    assert_eq!(count, 4900);
    let moved: String = r
        .dst
        .query_one("select info from digoal.rmt_test where id = -2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(moved, "even", "row 2 moved to key -2");
}
