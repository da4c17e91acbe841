//! A database brought back from a backup behind the other side, or a
//! source carried into another cluster by a logical dump: the agents refuse
//! to replicate, saying why, rather than skip or never ship changes.

use std::time::Duration;

use support::cluster::pg_command;
use support::setup::wait_for_sql;
use support::{PgCluster, Replication, run_command};

const SYNC: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restored_from_a_backup_behind_the_target_is_refused_not_skipped() {
    let mut r = Replication::replicating_one_row("before the backup").await;
    // The backup has every batch acknowledged (acknowledgements commit
    // asynchronously: on disk before the server stops), so the restored
    // source may cut again at once.
    wait_for_sql(
        &r.src,
        "select acked_batch = (select max(batch_id) from pgferry.batch) from pgferry.targets",
        SYNC,
    )
    .await;
    r.src.batch_execute("checkpoint").await.unwrap();
    offline(&mut r, Side::Source, PgCluster::back_up).await;
    r.start_source_agent().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (2, 'after the backup', now(), now())")
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
    let applied = r.target_progress().await;
    // The source goes back to the backup: the target has applied batches
    // the source no longer has, and the source writes something new.
    offline(&mut r, Side::Source, PgCluster::restore).await;
    r.src
        .batch_execute("insert into digoal.loc_test values (3, 'after the restore', now(), now())")
        .await
        .unwrap();
    r.source_agent().restart();
    // The source's batch of the target's last id is another batch now: it
    // must not be sent (the target would skip it as applied), nor its
    // changes deleted.
    let status = r
        .wait_for_error(&["needs an operator", "another time and snapshot"])
        .await;
    assert!(
        status["pending_changes"].as_i64().unwrap_or(0) >= 1,
        "{status}"
    );
    assert_eq!(
        r.target_progress().await,
        applied,
        "the target applied nothing more"
    );
    let ids: Vec<i32> = r
        .dst
        .query("select id from digoal.rmt_test order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, [1, 2], "the target keeps what it had");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_moved_by_a_logical_dump_into_another_cluster_is_refused() {
    let mut r = Replication::new().await;
    // The old cluster has used more transaction ids than the new one.
    for _ in 0..300 {
        r.src
            .batch_execute("select pg_current_xact_id()")
            .await
            .unwrap();
    }
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'moved', now(), now())")
        .await
        .unwrap();
    // Cut into a batch (no target agent needed for that).
    r.start_source_agent().await;
    wait_for_sql(&r.src, "select count(*) > 1 from pgferry.batch", SYNC).await;
    r.source_agent().terminate(Duration::from_secs(10)).await;
    // pg_dump of the source database, restored into a new database of the
    // target's cluster: pgferry's tables come along with their snapshots.
    let dump = r.source.dir().join("digoal.dump");
    let mut pg_dump = pg_command("pg_dump");
    pg_dump
        .args(["-Fc", "-f"])
        .arg(&dump)
        .args(["-d", &r.source.conninfo("digoal", "postgres", "")]);
    assert!(pg_dump.status().unwrap().success(), "pg_dump");
    r.dst.batch_execute("create database moved").await.unwrap();
    let moved = r.target.conninfo("moved", "postgres", "");
    let mut pg_restore = pg_command("pg_restore");
    pg_restore.args(["-d", &moved]).arg(&dump);
    assert!(pg_restore.status().unwrap().success(), "pg_restore");
    let args = [
        "run",
        "--source-db",
        &moved,
        "--target",
        "http://127.0.0.1:1",
        "--source-id",
        "dc1",
    ];
    let run = run_command("source-agent", &args);
    let out = tokio::time::timeout(SYNC, run)
        .await
        .expect("the source agent refuses at once rather than run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("transaction ids"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_restored_from_a_backup_behind_the_source_is_refused() {
    let mut r = Replication::replicating_one_row("before the backup").await;
    offline(&mut r, Side::Target, PgCluster::back_up).await;
    r.target_agent().restart();
    for id in 2..=3 {
        r.src
            .execute(
                "insert into digoal.loc_test values ($1, 'after the backup', now(), now())",
                &[&id],
            )
            .await
            .unwrap();
        // One batch each, acknowledged: the source deletes what it shipped.
        r.wait_in_sync(SYNC).await;
    }
    // The target goes back to the backup: it lacks batches the source has
    // deleted as acknowledged.
    offline(&mut r, Side::Target, PgCluster::restore).await;
    r.target_agent().restart();
    r.wait_for_error(&["refusing to send"]).await;
    let rows: i64 = r
        .dst
        .query_one("select count(*) from digoal.rmt_test", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 1,
        "the restored target gets nothing it cannot get whole"
    );
}

/// Which side [`offline`] works on.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
}

/// Stops one side's agent and database server, does `step` to the stopped
/// data directory (a backup, a restore), and starts the server again; the
/// agent stays stopped.
async fn offline(r: &mut Replication, side: Side, step: fn(&PgCluster)) {
    let agent = match side {
        Side::Source => r.source_agent(),
        Side::Target => r.target_agent(),
    };
    agent.terminate(Duration::from_secs(10)).await;
    let cluster = match side {
        Side::Source => &r.source,
        Side::Target => &r.target,
    };
    cluster.stop_server();
    step(cluster);
    cluster.start_server();
    match side {
        Side::Source => r.reconnect_source().await,
        Side::Target => r.reconnect_target().await,
    }
}
