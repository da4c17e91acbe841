//! Net changes: a batch's changes that a later change of the same row
//! overwrites are dropped on the target, for tables whose rows nothing ties
//! together; a table a foreign key ties to another gets every change in
//! order.

use std::time::Duration;

use support::Replication;
use support::setup::{checksum, counter, free_port, metrics};

const SYNC: Duration = Duration::from_secs(60);

/// Starts both agents, the target's metrics on a free port, which it returns.
async fn start_with_target_metrics(r: &mut Replication) -> u16 {
    let port = free_port();
    r.target_args = vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")];
    r.start_agents().await;
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_rewritten_inside_a_batch_land_as_their_last_version() {
    let mut r = Replication::new().await;
    r.copy_then_stop_agents().await;
    // Queued while no agent runs, so one batch carries them all: rows
    // inserted, updated, moved to other keys, deleted and inserted again,
    // by statements of many rows and of one.
    r.src
        .batch_execute(
            "insert into digoal.loc_test select g, 'new', now(), now()
             from generate_series(1, 3000) g;
             update digoal.loc_test set info = 'updated' where id <= 2000;
             update digoal.loc_test set info = 'once more' where id = 7;
             update digoal.loc_test set id = id + 10000 where id between 11 and 20;
             delete from digoal.loc_test where id <= 1000;
             insert into digoal.loc_test values (5, 'back', now(), now());
             update digoal.loc_test set id = 15 where id = 10015;",
        )
        .await
        .unwrap();
    let port = start_with_target_metrics(&mut r).await;
    let (count, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(count, 2011);
    let rows = r
        .dst
        .query(
            "select id, info from digoal.rmt_test where id in (5, 15, 1500, 2500, 10016)
             order by id",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(i32, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        rows,
        [
            (5, "back".to_string()),
            (15, "updated".to_string()),
            (1500, "updated".to_string()),
            (2500, "new".to_string()),
            (10016, "updated".to_string()),
        ]
    );
    let compacted = counter(&metrics(port).await, "pgferry_changes_compacted_total");
    assert!(
        compacted >= 2000.0,
        "the rows' earlier versions were dropped: {compacted}"
    );
}

/// `digoal.parent` and `digoal.child` on both sides, a foreign key from the
/// child to the parent on the target only, both replicated and copied.
async fn parent_and_child_tied_on_the_target() -> Replication {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.parent (id int primary key, v int);
             create table digoal.child (id int primary key, parent_id int);",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute(
            "create table digoal.parent (id int primary key, v int);
             create table digoal.child (id int primary key, parent_id int);
             alter table digoal.parent owner to applier;
             alter table digoal.child owner to applier;
             alter table digoal.child add foreign key (parent_id) references digoal.parent;",
        )
        .await
        .unwrap();
    for table in ["digoal.parent", "digoal.child"] {
        support::setup::source_agent(&["add-table", "--source-db", &r.source_db, table]).await;
    }
    r.copy_then_stop_agents().await;
    r
}

/// Waits until both tables hold `rows` rows each and equal the source's.
async fn wait_parent_and_child_equal(r: &Replication, rows: i64) {
    support::wait_until("parent and child equal on both sides", SYNC, || async {
        let mut equal = true;
        for table in ["digoal.parent", "digoal.child"] {
            let source = checksum(&r.src, table).await;
            equal &= source.0 == rows && checksum(&r.dst, table).await == source;
        }
        equal.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_a_foreign_key_ties_gets_every_change_in_order() {
    let mut r = parent_and_child_tied_on_the_target().await;
    // Applied net of the parent's insert, the child's row would come before
    // its parent's: the foreign key would refuse the batch for ever.
    r.src
        .batch_execute(
            "insert into digoal.parent values (1, 0);
             insert into digoal.child values (1, 1);
             update digoal.parent set v = 1;
             insert into digoal.parent select g, 0 from generate_series(2, 100) g;
             insert into digoal.child select g, g from generate_series(2, 100) g;
             update digoal.parent set v = v + 1;",
        )
        .await
        .unwrap();
    let port = start_with_target_metrics(&mut r).await;
    wait_parent_and_child_equal(&r, 100).await;
    let compacted = counter(&metrics(port).await, "pgferry_changes_compacted_total");
    assert_eq!(compacted, 0.0, "no change of a tied table was dropped");
}

/// PostgreSQL truncates a table a foreign key references only together with
/// the referencing table: truncates next to each other in a batch go as one
/// statement, as the source's did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_a_foreign_key_ties_truncated_together_stay_replicated() {
    let mut r = parent_and_child_tied_on_the_target().await;
    r.start_agents().await;
    r.src
        .batch_execute(
            "insert into digoal.parent select g, 0 from generate_series(1, 10) g;
             insert into digoal.child select g, g from generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    wait_parent_and_child_equal(&r, 10).await;
    r.src
        .batch_execute(
            "truncate digoal.parent, digoal.child;
             insert into digoal.parent values (1, 1);
             insert into digoal.child values (1, 1);",
        )
        .await
        .unwrap();
    wait_parent_and_child_equal(&r, 1).await;
}
