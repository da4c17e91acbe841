//! kill -9 of either agent or either database under a running workload:
//! the target ends equal to the source and its progress moves one batch at
//! a time (no batch applied twice or skipped).

use std::time::Duration;

use support::Replication;
use support::setup::{Writer, counter, free_port, metrics};

const SYNC: Duration = Duration::from_secs(90);

/// A pause of 150-650 ms that differs from kill to kill, drawn from
/// `PGFERRY_SEED` (printed with the test's output) so that a failing run's
/// pauses can be replayed.
fn pause(i: u64) -> Duration {
    use proptest::prelude::Rng;
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let (seed, _) = support::seeded();
        println!("kill tests: PGFERRY_SEED={seed}");
        seed
    });
    let mut rng = support::rng(seed, i);
    Duration::from_millis(150 + rng.next_u64() % 500)
}

async fn replicating_under_load() -> (Replication, Writer) {
    let mut r = Replication::new().await;
    r.record_progress_history().await;
    r.start_agents().await;
    let writer = Writer::start(r.source_db.clone());
    (r, writer)
}

async fn finish(r: &mut Replication, writer: Writer) {
    let committed = writer.stop().await;
    assert!(committed > 0, "the writer committed nothing");
    r.wait_in_sync(SYNC).await;
    let batches = r.assert_progress_moved_one_batch_at_a_time().await;
    assert!(batches > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_source_agent_mid_stream_loses_nothing() {
    let (mut r, writer) = replicating_under_load().await;
    for i in 0..5 {
        tokio::time::sleep(pause(i)).await;
        r.kill9_and_restart_source_agent().await;
    }
    finish(&mut r, writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_target_agent_mid_batch_loses_nothing() {
    let (mut r, writer) = replicating_under_load().await;
    for i in 0..5 {
        tokio::time::sleep(pause(i)).await;
        r.kill9_and_restart_target_agent().await;
    }
    finish(&mut r, writer).await;
}

/// The restarted source sends batches from its last acked one on without
/// waiting for the target's answer: the target skips those it applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_source_agent_after_target_commit_before_ack_applies_once() {
    let mut r = Replication::new().await;
    r.record_progress_history().await;
    let metrics_port = free_port();
    r.target_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    r.start_agents().await;
    let writer = Writer::start(r.source_db.clone());
    // Past the initial copy: batches are then sent ahead of the target's
    // answer, which is what a restart here should meet.
    support::wait_until("the initial copy acked", SYNC, || async {
        (r.source_acked().await >= 1).then_some(())
    })
    .await;
    let mut hits = 0;
    for attempt in 0..200 {
        // Freeze the source agent: a batch in flight still commits on the
        // target, but its ack is never processed.
        r.source_agent().signal("-STOP");
        let acked = r.source_acked().await;
        let mut caught = false;
        for _ in 0..20 {
            if r.target_progress().await > acked {
                caught = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !caught {
            // Nothing was in flight at that instant: let it run and try again.
            r.source_agent().signal("-CONT");
            tokio::time::sleep(pause(attempt) / 10).await;
            continue;
        }
        r.kill9_and_restart_source_agent().await;
        hits += 1;
        if hits == 3 {
            break;
        }
    }
    assert_eq!(
        hits, 3,
        "never caught a batch committed on the target and not acked on the source"
    );
    finish(&mut r, writer).await;
    let skipped = counter(
        &metrics(metrics_port).await,
        "pgferry_batches_skipped_total",
    );
    assert!(skipped >= 1.0, "no batch was sent again and skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_target_database_mid_stream_loses_nothing() {
    let (mut r, writer) = replicating_under_load().await;
    for i in 0..2 {
        tokio::time::sleep(pause(i)).await;
        r.target.kill9();
        // The target commits batches asynchronously, so the kill may take
        // the newest ones with it; the source must have deleted none of them.
        let acked = r.source_acked().await;
        tokio::time::sleep(pause(i + 1)).await;
        r.target.start_server();
        r.reconnect_target().await;
        let recovered = r.target_progress().await;
        assert!(
            recovered >= acked,
            "the source deleted batch {acked}, the target recovered only up to {recovered}"
        );
    }
    finish(&mut r, writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_source_database_mid_stream_loses_nothing() {
    let (mut r, writer) = replicating_under_load().await;
    for i in 0..2 {
        tokio::time::sleep(pause(i)).await;
        r.source.kill9();
        tokio::time::sleep(pause(i + 1)).await;
        r.source.start_server();
    }
    r.reconnect_source().await;
    finish(&mut r, writer).await;
}
