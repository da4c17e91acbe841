//! The change queue's upkeep: the disk a burst took comes back once the
//! burst has drained, with no operator.

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
    // The burst piles up while the source agent is away: each update of
    // the small column queues the whole row.
    r.source_agent().kill9().await;
    for _ in 0..50 {
        r.src
            .batch_execute("update digoal.docs set n = n + 1")
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
