//! Adding populated tables: the initial copy takes its place in the batch
//! sequence, so no row is missed or doubled while the table is written
//! during the copy, through kill -9 of either agent, with bounded memory.

use std::time::Duration;

use support::setup::{Writer, checksum, source_agent};
use support::{Replication, wait_until};

const COPY_SYNC: Duration = Duration::from_secs(300);
const BIG_ROWS: i64 = 1_000_000;

/// Creates `digoal.big` with `rows` rows of about `width` bytes on the
/// source and an empty twin on the target.
async fn big_table(r: &Replication, rows: i64, width: i64) {
    let definition = "(id bigint primary key, v int not null, info text, ts timestamptz)";
    r.src
        .batch_execute(&format!(
            "create table digoal.big {definition};
             insert into digoal.big
               select g, g % 1000, repeat(md5(g::text), {width} / 32 + 1), now() from generate_series(1, {rows}) g;
             analyze digoal.big;"
        ))
        .await
        .unwrap();
    r.dst
        .batch_execute(&format!(
            "create table digoal.big {definition}; alter table digoal.big owner to applier;"
        ))
        .await
        .unwrap();
}

/// pgbench-style writers on `digoal.big`: each transaction updates two
/// random rows, inserts one and deletes one. Writer `w` of `n` only touches
/// ids that are `w` modulo `n`, so writers never deadlock each other.
fn big_writers(r: &Replication, n: i64) -> Vec<Writer> {
    (0..n)
        .map(|w| {
            Writer::start_with(r.source_db.clone(), move |round| {
                let pick = |salt: i64| ((round * 7919 + salt * 104_729) % (BIG_ROWS / n)) * n + w + 1;
                format!(
                    "begin;
                     update digoal.big set v = v + 1, ts = now() where id = {};
                     update digoal.big set info = 'changed' where id = {};
                     insert into digoal.big values ({}, {round}, 'new', now()) on conflict (id) do nothing;
                     delete from digoal.big where id = {};
                     commit;",
                    pick(1),
                    pick(2),
                    BIG_ROWS * 10 + round * n + w,
                    pick(3)
                )
            })
        })
        .collect()
}

async fn add_big(r: &Replication) {
    source_agent(&["add-table", "--source-db", &r.source_db, "digoal.big"]).await;
}

/// Waits until `status` shows the copy of digoal.big under way.
async fn wait_for_copy_progress(r: &Replication) {
    wait_until("the copy of digoal.big is under way", COPY_SYNC, || async {
        let status = r.status().await;
        let table = status["tables"]
            .as_array()?
            .iter()
            .find(|t| t["source"] == "digoal.big")?
            .clone();
        (table["state"] == "copying" && table["copy"]["rows"].as_i64().unwrap_or(0) > 0)
            .then_some(())
    })
    .await;
}

/// Stops the writers, waits until the big table and the seed table match,
/// and returns the big table's row count.
async fn finish(r: &mut Replication, writers: Vec<Writer>) -> i64 {
    for writer in writers {
        assert!(writer.stop().await > 0, "a writer committed nothing");
    }
    let sum = wait_until(
        "digoal.big is the same on both sides",
        COPY_SYNC,
        || async {
            let source = checksum(&r.src, "digoal.big").await;
            let target = checksum(&r.dst, "digoal.big").await;
            (source == target).then_some(source)
        },
    )
    .await;
    r.wait_in_sync(COPY_SYNC).await;
    let status = r.status().await;
    let big = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["source"] == "digoal.big")
        .unwrap()
        .clone();
    assert_eq!(big["state"], "replicating", "{status}");
    println!("digoal.big: {} rows, copy {}", sum.0, big["copy"]);
    sum.0
}

/// Both agents running, two writers busy on a populated `digoal.big`, its
/// add-table done and the copy under way.
async fn copy_under_writers() -> (Replication, Vec<Writer>) {
    let mut r = Replication::new().await;
    big_table(&r, BIG_ROWS, 40).await;
    r.record_progress_history().await;
    r.start_agents().await;
    let writers = big_writers(&r, 2);
    add_big(&r).await;
    wait_for_copy_progress(&r).await;
    (r, writers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_populated_table_while_written_copies_every_row_once() {
    let (mut r, writers) = copy_under_writers().await;
    let rows = finish(&mut r, writers).await;
    assert!(rows >= BIG_ROWS - 100_000, "{rows} rows");
    let log = r.source_agent().log();
    assert!(
        log.contains("initial copy progress"),
        "the source agent logs copy progress"
    );
    r.assert_progress_moved_one_batch_at_a_time().await;
}

/// Which agent a kill test kills.
enum Victim {
    SourceAgent,
    TargetAgent,
}

async fn kill_during_copy_still_ends_exact(victim: Victim) {
    let (mut r, writers) = copy_under_writers().await;
    match victim {
        Victim::SourceAgent => r.kill9_and_restart_source_agent().await,
        Victim::TargetAgent => r.kill9_and_restart_target_agent().await,
    }
    finish(&mut r, writers).await;
    r.assert_progress_moved_one_batch_at_a_time().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_source_agent_during_copy_still_ends_exact() {
    kill_during_copy_still_ends_exact(Victim::SourceAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_target_agent_during_copy_still_ends_exact() {
    kill_during_copy_still_ends_exact(Victim::TargetAgent).await;
}

/// The bound the README states for either agent's peak RSS while copying.
const RSS_BOUND_MIB: u64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_a_large_table_keeps_agents_memory_bounded() {
    let mut r = Replication::new().await;
    // About 400 MB of table: 1.2M rows of about 330 bytes.
    big_table(&r, 1_200_000, 300).await;
    let size_mb: i64 = r
        .src
        .query_one("select pg_table_size('digoal.big') / 1000000", &[])
        .await
        .unwrap()
        .get(0);
    r.start_agents().await;
    add_big(&r).await;
    finish(&mut r, Vec::new()).await;
    let source = r.source_agent().peak_rss_mib();
    let target = r.target_agent().peak_rss_mib();
    println!(
        "copied a {size_mb} MB table; peak RSS: source agent {source} MiB, target agent {target} MiB"
    );
    assert!(
        size_mb > 300,
        "the table is several hundred MB ({size_mb} MB)"
    );
    assert!(source < RSS_BOUND_MIB, "source agent peak RSS {source} MiB");
    assert!(target < RSS_BOUND_MIB, "target agent peak RSS {target} MiB");
}

/// PostgreSQL refuses to truncate a table a foreign key references: the
/// copy empties such a table with a DELETE instead, and its changes apply
/// after it as to any other table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_a_target_foreign_key_references_is_copied() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.parent (id int primary key, v int);
             insert into digoal.parent select g, g from generate_series(1, 500) g;",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute(
            "create table digoal.parent (id int primary key, v int);
             alter table digoal.parent owner to applier;
             create table digoal.local_child (id int primary key,
                                              parent_id int references digoal.parent);",
        )
        .await
        .unwrap();
    source_agent(&["add-table", "--source-db", &r.source_db, "digoal.parent"]).await;
    r.start_agents().await;
    let parents_equal = || async {
        let source = checksum(&r.src, "digoal.parent").await;
        (checksum(&r.dst, "digoal.parent").await == source).then_some(())
    };
    wait_until(
        "the parent table copied",
        Duration::from_secs(60),
        parents_equal,
    )
    .await;
    // A row of a table only the target has now needs a copied row.
    r.dst
        .batch_execute("insert into digoal.local_child values (1, 7)")
        .await
        .unwrap();
    r.src
        .batch_execute("update digoal.parent set v = -v where id > 250")
        .await
        .unwrap();
    wait_until(
        "the parent's changes applied",
        Duration::from_secs(60),
        parents_equal,
    )
    .await;
}
