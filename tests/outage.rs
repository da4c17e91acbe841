//! The seed's outage test, made exact: while the target refuses the
//! applier's login, or the target agent or database is down, source writes
//! commit as usual, `status` shows what waits and why, and once the target
//! is back everything arrives in order and the queue drains to zero.

use std::time::{Duration, Instant};

use support::setup::{
    APPLIER, APPLIER_PASSWORD, counter, free_port, health, metrics, wait_serving,
};
use support::{Replication, wait_until};
use tonic_health::pb::health_check_response::ServingStatus;

const SYNC: Duration = Duration::from_secs(60);

/// Writes while the target is unavailable: 50 transactions that insert rows
/// and update the same rows over and over (order matters for the result).
/// Returns how long the writes took.
async fn write_during_outage(r: &Replication) -> Duration {
    let started = Instant::now();
    for round in 0..50 {
        r.src
            .batch_execute(&format!(
                "begin;
                 insert into digoal.loc_test values ({round} + 100, 'outage', now(), now());
                 update digoal.loc_test set info = 'round {round}', modify_time = now() where id <= 100 + {round};
                 commit;"
            ))
            .await
            .expect("source writes commit during the outage");
    }
    started.elapsed()
}

/// Waits until `status` reports pending changes, their age and an error
/// containing `error_part`.
async fn wait_for_status_error(r: &Replication, error_part: &str) -> serde_json::Value {
    wait_until(
        &format!("status shows an error with `{error_part}`"),
        SYNC,
        || async {
            let status = r.target_status().await;
            let error = status["last_error"].as_str().unwrap_or_default().to_owned();
            let pending = status["pending_changes"].as_i64().unwrap_or(0);
            let age = status["oldest_pending_age_secs"].as_f64().unwrap_or(0.0);
            (error.contains(error_part) && pending > 0 && age > 0.0).then_some(status)
        },
    )
    .await
}

/// Waits until the target agent's health says NOT_SERVING.
async fn wait_for_not_serving(r: &Replication) {
    let address = format!("http://127.0.0.1:{}", r.target_port);
    wait_until("the target agent reports NOT_SERVING", SYNC, || async {
        (health(&address).await == Some(ServingStatus::NotServing)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applier_password_change_queues_changes_until_it_is_fixed() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'before', now(), now())")
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_in_sync(SYNC).await;

    // The seed's test: the applier's password changes on the target, and its
    // sessions end.
    r.dst
        .batch_execute(&format!(
            "alter role {APPLIER} password 'changed';
             select pg_terminate_backend(pid) from pg_stat_activity where usename = '{APPLIER}';"
        ))
        .await
        .unwrap();
    let took = write_during_outage(&r).await;
    println!("50 source transactions during the outage took {took:?}");
    let status = wait_for_status_error(&r, "password authentication failed").await;
    println!("status during the outage: {status}");
    wait_for_not_serving(&r).await;

    r.dst
        .batch_execute(&format!(
            "alter role {APPLIER} password '{APPLIER_PASSWORD}'"
        ))
        .await
        .unwrap();
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 51);
    let status = r.target_status().await;
    assert_eq!(status["pending_changes"], 0);
    assert!(
        status["last_error"].is_null(),
        "the error clears once batches flow: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_agent_down_queues_changes_until_it_returns() {
    let mut r = Replication::new().await;
    let metrics_port = free_port();
    r.source_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    r.start_agents().await;
    r.target_agent().kill9().await;
    write_during_outage(&r).await;
    wait_for_status_error(&r, "target agent").await;
    // The delay metric shows the outage: a batch waits, older and older.
    wait_until("the delay metric passes 2 s", SYNC, || async {
        let page = metrics(metrics_port).await;
        (counter(&page, "pgferry_delay_seconds") > 2.0
            && counter(&page, "pgferry_batches_unacked") >= 1.0)
            .then_some(())
    })
    .await;
    r.target_agent().restart();
    let port = r.target_port;
    wait_serving(r.target_agent(), port).await;
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 50);
    wait_until("the delay metric is back to 0", SYNC, || async {
        let page = metrics(metrics_port).await;
        (counter(&page, "pgferry_delay_seconds") == 0.0
            && counter(&page, "pgferry_batches_unacked") == 0.0)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_database_down_queues_changes_until_it_returns() {
    let mut r = Replication::new().await;
    r.start_agents().await;
    r.target.stop_server();
    write_during_outage(&r).await;
    wait_for_status_error(&r, "target").await;
    wait_for_not_serving(&r).await;
    r.target.start_server();
    r.reconnect_target().await;
    let (rows, _) = r.wait_in_sync(SYNC).await;
    assert_eq!(rows, 50);
}
