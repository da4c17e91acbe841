//! The seed article's scenario, step by step, with its checksum after each.

use std::time::Duration;

use support::Replication;

const SYNC: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_replicates_every_statement_kind() {
    let mut r = Replication::new().await;
    r.record_progress_history().await;
    // Small chunks, so the bulk steps' batches span many messages and still
    // commit whole.
    r.source_args = vec!["--chunk-rows".into(), "16".into()];
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
    assert!(
        r.source_agent().terminate(Duration::from_secs(15)).await,
        "source agent shuts down cleanly on SIGTERM"
    );
    assert!(
        r.target_agent().terminate(Duration::from_secs(15)).await,
        "target agent shuts down cleanly on SIGTERM"
    );
}
