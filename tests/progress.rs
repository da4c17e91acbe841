//! Progress people can see: `add-table --wait` shows the initial copy and
//! returns once the table replicates (or fails, exiting 1, when the copy
//! needs an operator); `status --watch` follows copies and each target's
//! backlog until interrupted. Through a pipe both print plain lines; through
//! a pseudo-terminal (util-linux `script`) they draw live progress bars.

use std::process::Stdio;
use std::time::Duration;

use support::setup::source_agent;
use support::{Replication, bin, run_command};

/// `source-agent ARGS` run in a pseudo-terminal; what the terminal showed.
async fn in_terminal(args: &[&str], kill_after: Option<Duration>) -> (Option<i32>, String) {
    let quoted: Vec<String> = std::iter::once(bin("source-agent").display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let child = tokio::process::Command::new("script")
        .args(["-qefc", &quoted.join(" "), "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("util-linux script runs");
    if let Some(after) = kill_after {
        tokio::time::sleep(after).await;
        let pid = child.id().expect("script runs").to_string();
        // script hands the signal on to the agent in its terminal.
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("ends")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A replicating pair and a 100,000-row table on the source not yet added.
async fn pair_with_a_big_table() -> Replication {
    let mut r = Replication::new().await;
    r.start_agents().await;
    r.src
        .batch_execute(
            "create table digoal.big (id int primary key, info text);
             insert into digoal.big select g, repeat('x', 100) from generate_series(1, 100000) g;
             analyze digoal.big;",
        )
        .await
        .unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_table_wait_shows_the_copy_and_returns_once_it_replicates_in_a_pipe_and_a_terminal() {
    let r = pair_with_a_big_table().await;
    let db = r.source_db.clone();
    let out = run_command(
        "source-agent",
        &[
            "add-table",
            "--source-db",
            &db,
            "digoal.big",
            "--create-target",
            "--wait",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("digoal.big -> default: replicating, 100000/~100000 rows"),
        "plain lines: {stdout}"
    );
    assert!(stdout.trim_end().ends_with("replicating"), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no terminal codes in a pipe: {stdout}"
    );

    r.src
        .batch_execute("create table digoal.big2 (like digoal.big including all); insert into digoal.big2 select * from digoal.big;")
        .await
        .unwrap();
    let args = [
        "add-table",
        "--source-db",
        &db,
        "digoal.big2",
        "--create-target",
        "--wait",
    ];
    let (code, shown) = in_terminal(&args, None).await;
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("rows") && shown.contains('\x1b'),
        "a live bar: {shown:?}"
    );
    assert!(
        shown.contains("digoal.big2 -> default replicating"),
        "{shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_table_wait_exits_1_naming_the_table_when_its_copy_needs_an_operator() {
    let r = pair_with_a_big_table().await;
    // No such table on the target, and no --create-target.
    let out = run_command(
        "source-agent",
        &[
            "add-table",
            "--source-db",
            &r.source_db,
            "digoal.big",
            "--wait",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("table digoal.big -> default: its initial copy failed: needs an operator"),
        "{stderr}"
    );
    assert!(stderr.contains("digoal.big"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_follows_copies_and_targets_until_interrupted() {
    let mut r = Replication::new().await;
    // Agents stopped: the copy waits, and the watch shows it waiting.
    r.src
        .batch_execute("create table digoal.big (id int primary key, info text)")
        .await
        .unwrap();
    let db = r.source_db.clone();
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        "digoal.big",
        "--create-target",
    ])
    .await;
    let mut watch = tokio::process::Command::new(bin("source-agent"))
        .args(["status", "--watch", "--source-db", &db])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = watch.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), watch.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut stdout = String::new();
    use tokio::io::AsyncReadExt;
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    assert!(
        stdout.contains("digoal.big -> default: copy_pending, 0/~0 rows"),
        "{stdout}"
    );
    assert!(
        stdout.contains("default: pending 0, delay 0.0s"),
        "{stdout}"
    );

    let args = ["status", "--watch", "--source-db", &db];
    let (code, shown) = in_terminal(&args, Some(Duration::from_secs(2))).await;
    assert_eq!(code, Some(0), "{shown:?}");
    assert!(
        shown.contains("digoal.big -> default copy_pending") && shown.contains('\x1b'),
        "{shown:?}"
    );
    r.start_agents().await;
}
