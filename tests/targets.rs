//! Named targets: `add-target` records a target agent `run` streams to
//! when it is given no `--target`; the first one named takes over the
//! unnamed target of an installation run with `--target`, tables and all.

use std::time::Duration;

use support::setup::{free_port, source_agent, wait_serving};
use support::{Agent, Replication, run_command};

async fn fails(args: &[&str]) -> (i32, String) {
    let out = run_command("source-agent", args).await;
    assert!(!out.status.success(), "source-agent {args:?} should fail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_target_takes_over_the_unnamed_one_and_is_streamed_to_without_a_target_flag() {
    let mut r = Replication::new().await;
    r.start_target_agent().await;
    let db = r.source_db.clone();
    let url = r.target_url.clone();

    let add_target = |name: &str, address: &str, extra: &[&str]| {
        let mut args = vec!["add-target", "--source-db", &db, name, "--address", address];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let refused = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&args).await
    };

    let (code, stderr) = refused(add_target("dc2", "no url", &[])).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("setting `target`"), "{stderr}");
    let no_token = ["--auth-token-file", "/nonexistent/token"];
    let (code, stderr) = refused(add_target("dc2", &url, &no_token)).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("auth-token-file"), "{stderr}");

    let args = add_target("dc2", &url, &[]);
    source_agent(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (_, stderr) = refused(add_target("dc2", &url, &[])).await;
    assert!(
        stderr.contains("target dc2 is already recorded"),
        "{stderr}"
    );

    // `run` without --target streams to the recorded one.
    let health = free_port();
    let health_listen = format!("127.0.0.1:{health}");
    let args = [
        "run",
        "--source-db",
        &db,
        "--source-id",
        "dc1",
        "--health-listen",
        &health_listen,
    ];
    let mut agent = Agent::spawn("source-agent", &args.map(String::from));
    wait_serving(&mut agent, health).await;
    r.source_agent = Some(agent);
    r.src
        .execute(
            "insert into digoal.loc_test values (1, 'to dc2', now(), now())",
            &[],
        )
        .await
        .unwrap();
    r.wait_in_sync(Duration::from_secs(60)).await;
    let status = r.target_status().await;
    assert_eq!(status["name"], "dc2", "{status}");
    assert_eq!(status["address"], url, "{status}");
    assert!(
        r.source_agent().terminate(Duration::from_secs(30)).await,
        "the source agent stops cleanly"
    );

    // With two targets, --target (the address of a source's only target)
    // is ambiguous.
    let other = format!("http://127.0.0.1:{}", free_port());
    let args = add_target("dc3", &other, &[]);
    source_agent(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (code, stderr) = fails(&[
        "run",
        "--source-db",
        &db,
        "--source-id",
        "dc1",
        "--target",
        &url,
    ])
    .await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("setting `target`"), "{stderr}");
    assert!(stderr.contains("dc2, dc3"), "{stderr}");

    source_agent(&["remove-target", "--source-db", &db, "dc3"]).await;
    source_agent(&["remove-target", "--source-db", &db, "dc2"]).await;
    let (_, stderr) = fails(&["remove-target", "--source-db", &db, "dc2"]).await;
    assert!(stderr.contains("no target named dc2"), "{stderr}");
    let (code, stderr) = fails(&["run", "--source-db", &db, "--source-id", "dc1"]).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("setting `target`"), "{stderr}");
}
