//! The batch-cut rule itself, against a real server: random interleavings of
//! transactions that write, commit or roll back, with cuts in between. Every
//! committed transaction must ship whole in exactly one batch, batches must
//! follow commit order, and nothing rolled back may ship. And targets cut
//! together share the cut's snapshot, each getting a batch only when its
//! own tables changed.

use std::collections::HashMap;

use proptest::prelude::Rng;
use support::PgCluster;
use support::setup::{expect_success, source_agent};
use tokio_postgres::Client;

/// One session's open transaction: its label and the rows it wrote.
struct Open {
    label: i64,
    rows: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_cuts_ship_each_committed_transaction_once_in_commit_order() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let admin = cluster.connect("postgres").await;
    for seed in 1..=4u64 {
        let db = format!("cut{seed}");
        admin
            .batch_execute(&format!("create database {db}"))
            .await
            .unwrap();
        let conninfo = cluster.conninfo(&db, "postgres", "");
        let setup = cluster.connect(&db).await;
        setup
            .batch_execute("create table t (id bigint primary key, label bigint)")
            .await
            .unwrap();
        let out =
            support::run_command("source-agent", &["install", "--source-db", &conninfo]).await;
        expect_success("install", &out);
        let out = support::run_command(
            "source-agent",
            &["add-table", "--source-db", &conninfo, "public.t"],
        )
        .await;
        expect_success("add-table", &out);
        check_seed(&cluster, &db, &setup, seed).await;
    }
}

/// A cut of the one target's next batch, as the agent's cutter makes it.
const CUT: &str = "select pgferry.cut_batches(array[(select min(target_id) from pgferry.targets)],
                                              array[null::bigint], null)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_cut_together_share_a_snapshot_and_only_a_target_whose_tables_changed_gets_a_batch()
{
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let db = cluster.connect("postgres").await;
    let conninfo = cluster.conninfo("postgres", "postgres", "");
    db.batch_execute("create table t (id int primary key); create table u (id int primary key)")
        .await
        .unwrap();
    let db_flag = ["--source-db", conninfo.as_str()];
    for args in [
        &["install"][..],
        &["add-target", "a", "--address", "http://127.0.0.1:1"],
        &["add-target", "b", "--address", "http://127.0.0.1:2"],
        &["add-table", "public.t", "--target", "a"],
        &["add-table", "public.u", "--target", "b"],
    ] {
        source_agent(&[&args[..1], &db_flag[..], &args[1..]].concat()).await;
    }
    let cut = || async {
        let cut: Vec<(i32, i64)> = db
            .query(
                "select cut_target, cut_batch from pgferry.cut_batches(
                     (select array_agg(target_id order by name) from pgferry.targets),
                     array[0, 0]::bigint[], 100)
                 where cut_batch is not null",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut named = Vec::new();
        for (target, batch) in cut {
            let row = db
                .query_one(
                    "select g.name, b.snapshot::text from pgferry.batch b
                     join pgferry.targets g using (target_id)
                     where b.target_id = $1 and b.batch_id = $2",
                    &[&target, &batch],
                )
                .await
                .unwrap();
            named.push((row.get::<_, String>(0), batch, row.get::<_, String>(1)));
        }
        named
    };

    // Both wait for their copies: one cut, one snapshot, a batch each.
    let both = cut().await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!((both[0].0.as_str(), both[1].0.as_str()), ("a", "b"));
    assert_eq!(both[0].2, both[1].2, "one snapshot for both: {both:?}");
    assert!(cut().await.is_empty(), "nothing changed since");

    db.batch_execute("insert into t values (1)").await.unwrap();
    let only_a = cut().await;
    assert_eq!(only_a.len(), 1, "{only_a:?}");
    assert_eq!(only_a[0].0, "a");
    assert_eq!(only_a[0].1, both[0].1 + 1, "a's next batch");
}

async fn check_seed(cluster: &PgCluster, db: &str, cutter: &Client, seed: u64) {
    let mut rng = support::rng(seed, 0);
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push((cluster.connect(db).await, None::<Open>));
    }
    let mut next_label = 0i64;
    let mut next_id = 0i64;
    // label -> (commit position, rows written)
    let mut committed: HashMap<i64, (usize, usize)> = HashMap::new();
    let mut rolled_back = Vec::new();
    for _ in 0..300 {
        let which = (rng.next_u64() % (sessions.len() as u64 + 1)) as usize;
        if which == sessions.len() {
            cutter.batch_execute(CUT).await.unwrap();
            continue;
        }
        let (client, open) = &mut sessions[which];
        match (open.as_mut(), rng.next_u64() % 4) {
            (None, _) => {
                next_label += 1;
                client.batch_execute("begin").await.unwrap();
                *open = Some(Open {
                    label: next_label,
                    rows: 0,
                });
            }
            (Some(tx), 0 | 1) => {
                next_id += 1;
                client
                    .execute(
                        "insert into t values ($1, -$2::bigint)",
                        &[&next_id, &tx.label],
                    )
                    .await
                    .unwrap();
                // Rewrite the same row (an update that changes nothing ships
                // nothing): the last value must win on the target.
                client
                    .execute(
                        "update t set label = $2 where id = $1",
                        &[&next_id, &tx.label],
                    )
                    .await
                    .unwrap();
                tx.rows += 2;
            }
            (Some(tx), 2) => {
                client.batch_execute("commit").await.unwrap();
                committed.insert(tx.label, (committed.len(), tx.rows));
                *open = None;
            }
            (Some(tx), _) => {
                client.batch_execute("rollback").await.unwrap();
                rolled_back.push(tx.label);
                *open = None;
            }
        }
    }
    for (client, open) in &mut sessions {
        if let Some(tx) = open.take() {
            client.batch_execute("commit").await.unwrap();
            committed.insert(tx.label, (committed.len(), tx.rows));
        }
    }
    cutter.batch_execute(CUT).await.unwrap();

    // Read every batch back as the agent does and attribute rows to labels.
    let newest: i64 = cutter
        .query_one("select max(batch_id) from pgferry.batch", &[])
        .await
        .unwrap()
        .get(0);
    let mut shipped: HashMap<i64, (i64, usize)> = HashMap::new();
    for batch in 1..=newest {
        let rows = cutter
            .query(
                &format!(
                    "select c.seq, abs((r->>'label')::bigint) from pgferry.batch_changes((select min(target_id) from pgferry.targets), $1) c, {}",
                    support::queued_rows("c")
                ),
                &[&batch],
            )
            .await
            .unwrap();
        let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "seed {seed}: batch {batch} out of seq order"
        );
        for row in rows {
            let label: i64 = row.get(1);
            let entry = shipped.entry(label).or_insert((batch, 0));
            assert_eq!(
                entry.0, batch,
                "seed {seed}: transaction {label} split across batches"
            );
            entry.1 += 1;
        }
    }
    for label in &rolled_back {
        assert!(
            !shipped.contains_key(label),
            "seed {seed}: rolled-back {label} shipped"
        );
    }
    let mut by_commit: Vec<(usize, i64, usize)> = committed
        .iter()
        .filter(|(_, (_, rows))| *rows > 0)
        .map(|(label, (position, rows))| (*position, *label, *rows))
        .collect();
    by_commit.sort();
    let mut last_batch = 0;
    for (_, label, rows) in by_commit {
        let (batch, count) = shipped
            .get(&label)
            .copied()
            .unwrap_or_else(|| panic!("seed {seed}: {label} never shipped"));
        assert_eq!(
            count, rows,
            "seed {seed}: transaction {label} shipped {count} of {rows} rows"
        );
        assert!(
            batch >= last_batch,
            "seed {seed}: transaction {label} in batch {batch} before batch {last_batch}"
        );
        last_batch = batch;
    }
}
