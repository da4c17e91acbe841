//! The change queue's upkeep: the disk a burst took comes back once the
//! burst has drained, with no operator; and what an update queues: the
//! columns it changed, not a large value it left alone.

use std::time::Duration;

use support::Replication;
use support::setup::{checksum, source_agent, wait_for_sql};

const SYNC: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_burst_of_large_values_gives_the_queue_its_disk_back() {
    let mut r = Replication::new().await;
    r.create_table(
        "digoal.docs",
        "digoal.docs",
        "(id int primary key, n int, body text)",
    )
    .await;
    source_agent(&["add-table", "--source-db", &r.source_db, "digoal.docs"]).await;
    // 2 MB of hex digits, which compression hardly shrinks.
    r.src
        .batch_execute(
            "insert into digoal.docs
             select 1, 0, string_agg(md5(g::text), '') from generate_series(1, 65536) g",
        )
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_tables_in_sync(&[("digoal.docs", "digoal.docs")], SYNC)
        .await;
    let before = queue_bytes(&r.src).await;
    // The burst piles up while the source agent is away: each update
    // rewrites the large value (rotated by one character).
    r.source_agent().kill9().await;
    for _ in 0..50 {
        r.src
            .batch_execute(
                "update digoal.docs set n = n + 1, body = substr(body, 2) || substr(body, 1, 1)",
            )
            .await
            .unwrap();
    }
    let burst = queue_bytes(&r.src).await;
    assert!(
        burst > before + (64 << 20),
        "the burst grew the queue from {before} to only {burst} bytes"
    );
    r.start_source_agent().await;
    r.wait_tables_in_sync(&[("digoal.docs", "digoal.docs")], SYNC)
        .await;
    wait_for_sql(
        &r.src,
        &format!(
            "select pg_total_relation_size('pgferry.queue') < {}",
            before + (8 << 20)
        ),
        SYNC,
    )
    .await;
    // Replication goes on after the rewrite.
    r.src
        .batch_execute("update digoal.docs set n = -1")
        .await
        .unwrap();
    r.wait_tables_in_sync(&[("digoal.docs", "digoal.docs")], SYNC)
        .await;
    assert_eq!(
        checksum(&r.src, "digoal.docs").await,
        checksum(&r.dst, "digoal.docs").await
    );
}

/// The queue's size on disk: table, TOAST and indexes.
async fn queue_bytes(src: &tokio_postgres::Client) -> i64 {
    src.query_one("select pg_total_relation_size('pgferry.queue')", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_update_of_a_row_holding_5_mb_queues_only_the_changed_column() {
    let mut r = Replication::new().await;
    r.create_table(
        "digoal.docs",
        "digoal.docs",
        "(id int primary key, n int, note text, body text)",
    )
    .await;
    source_agent(&["add-table", "--source-db", &r.source_db, "digoal.docs"]).await;
    // 5 MB of hex digits, which compression hardly shrinks.
    r.src
        .batch_execute(
            "insert into digoal.docs
             select 1, 0, 'first', string_agg(md5(g::text), '') from generate_series(1, 163840) g;
             insert into digoal.docs values (2, 0, 'small', 'small');",
        )
        .await
        .unwrap();
    r.start_agents().await;
    let docs = [("digoal.docs", "digoal.docs")];
    r.wait_tables_in_sync(&docs, SYNC).await;
    // The updates wait in the queue while the source agent is away: a
    // thousand of the small column, one statement each.
    r.source_agent().kill9().await;
    for _ in 0..1000 {
        r.src
            .batch_execute("update digoal.docs set n = n + 1 where id = 1")
            .await
            .unwrap();
    }
    let (rows, bytes): (i64, i64) = {
        let row = r
            .src
            .query_one(
                "select count(*), coalesce(sum(pg_column_size(q.*)), 0)::bigint from pgferry.queue q",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(rows, 1000);
    assert!(
        bytes / rows < 300,
        "an update of the small column queued {} bytes",
        bytes / rows
    );
    // Then the large value itself, the note beside it, a statement of
    // both rows, and an update that changes nothing.
    r.src
        .batch_execute(
            "update digoal.docs set body = substr(body, 2) || substr(body, 1, 1) where id = 1;
             update digoal.docs set note = 'second', n = n + 1;
             update digoal.docs set n = n;",
        )
        .await
        .unwrap();
    r.start_source_agent().await;
    r.wait_tables_in_sync(&docs, SYNC).await;
    assert_eq!(row_digests(&r.src).await, row_digests(&r.dst).await);
}

/// Each row of digoal.docs as its id and the md5 of its text.
async fn row_digests(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query(
            "select id, md5(t::text) from digoal.docs t order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}
