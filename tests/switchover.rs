//! Switchover: the target takes the source role with nothing lost and
//! nothing copied while an application writes; the old source is fenced,
//! and a copy of it from before the switchover is refused by its epoch;
//! the roles go back and forth; a target that takes part of a table is
//! refused.

use std::time::Duration;

use proptest::prelude::Rng;
use support::pair::{Pair, Written, has_every_write};
use support::run_command;

const SYNC: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_writes_moves_the_source_role_with_nothing_lost_and_fences_the_old_side()
{
    let mut pair = Pair::replicating().await;
    let app = pair.app();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = pair.hand_over(0).await;
    assert!(out.contains("switchover done"), "{out}");
    // The old source refuses every write: fenced, naming the switchover,
    // until its target agent guards the tables for the new source.
    let refused = pair.sides[0]
        .db
        .batch_execute("insert into app.ledger (id, side) values (-1, 0)")
        .await
        .expect_err("a write to the old source");
    let message = refused.as_db_error().expect("a database error").message();
    assert!(
        message.contains("is fenced: pgferry switched it over to target \"b\" (epoch 2)")
            || message.contains("is replicated by pgferry"),
        "{message}"
    );
    // The final batch carried the sequences: the new source's events
    // sequence is at least where the old source's stopped.
    let last_value = |side: usize| {
        let db = &pair.sides[side].db;
        async move {
            db.query_one("select last_value from app.events_id_seq", &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let (old, new) = (last_value(0).await, last_value(1).await);
    assert!(
        new >= old,
        "the new source's sequence at {new}, the old one's at {old}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = app.stop().await;
    assert!(written.refused > 0, "{written:?}");
    for side in [0, 1] {
        assert!(
            written.committed.iter().any(|(_, s)| *s == side),
            "no write committed on side {side}: {written:?}"
        );
    }
    println!("{written}");
    // Every write the application saw committed is on both sides, and
    // the sides hold the same rows.
    pair.settle(&written, 1).await;
    // The old source's agent started again cuts nothing: its database is
    // a target now.
    let out = run_command(
        "source-agent",
        &[
            "run",
            "--source-db",
            &pair.sides[0].source_db,
            "--source-id",
            "a",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("every target of this source (at epoch 1) was switched over (b at epoch 2)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_old_source_from_before_the_switchover_is_refused_by_its_epoch_and_changes_nothing()
 {
    let mut pair = Pair::replicating().await;
    pair.sides[0]
        .db
        .batch_execute("insert into app.ledger (id, side) values (1, 0)")
        .await
        .unwrap();
    pair.wait_equal(SYNC).await;
    // A file-level copy of `a` as it is before the switchover.
    pair.sides[0].stop_source_agent().await;
    pair.sides[0].cluster.stop_server();
    pair.sides[0].cluster.back_up();
    pair.sides[0].cluster.start_server();
    pair.sides[0].db = pair.sides[0].cluster.connect("app").await;
    pair.sides[0].start_source_agent().await;
    pair.hand_over(0).await;
    pair.sides[1]
        .db
        .batch_execute("insert into app.ledger (id, side) values (2, 1)")
        .await
        .unwrap();
    pair.wait_equal(SYNC).await;
    let before = pair.sides[1].rows().await;
    // `a` comes back from the copy: a source at epoch 1 with batches the
    // new source `b` applied, and writable. Its agent streams to `b`'s
    // target agent, which refuses it for good.
    pair.sides[0].target_agent = None;
    pair.sides[0].cluster.stop_server();
    pair.sides[0].cluster.restore();
    pair.sides[0].cluster.start_server();
    pair.sides[0].db = pair.sides[0].cluster.connect("app").await;
    pair.sides[0]
        .db
        .batch_execute("insert into app.ledger (id, side) values (3, 0)")
        .await
        .unwrap();
    pair.sides[0].start_source_agent().await;
    let status = support::wait_until(
        "the stale source's status shows the refusal",
        SYNC,
        || async {
            let out = run_command(
                "source-agent",
                &["status", "--json", "--source-db", &pair.sides[0].source_db],
            )
            .await;
            let status = String::from_utf8_lossy(&out.stdout).into_owned();
            status.contains("at epoch 2").then_some(status)
        },
    )
    .await;
    assert!(status.contains("this source at epoch 1"), "{status}");
    let log = pair.sides[0].source_agent.as_ref().unwrap().log();
    assert!(
        log.contains("at epoch 2 and this source at epoch 1"),
        "{log}"
    );
    // `b` changed nothing, and is still writable.
    assert_eq!(pair.sides[1].rows().await, before);
    pair.sides[1]
        .db
        .batch_execute("insert into app.ledger (id, side) values (4, 1)")
        .await
        .expect("the new source stays writable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_role_goes_back_and_forth_three_times_under_writes_and_schema_changes() {
    let mut pair = Pair::replicating().await;
    let app = pair.app();
    for (round, from) in [0, 1, 0].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let out = pair.hand_over(from).await;
        assert!(
            out.contains(&format!("at epoch {}", round + 2)),
            "round {round}: {out}"
        );
        // An ordinary ALTER TABLE on the new source, mid-stream, reaches
        // the old one.
        pair.sides[1 - from]
            .db
            .batch_execute(&format!(
                "alter table app.ledger add column note_{round} text default 'added in round {round}'"
            ))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let written = app.stop().await;
    println!("{written}");
    pair.settle(&written, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_to_a_target_that_takes_part_of_a_table_is_refused_and_the_source_stays_writable()
 {
    let mut pair = Pair::new().await;
    let a = &pair.sides[0];
    a.db.batch_execute("create table app.part (id int primary key, v text, hidden text)")
        .await
        .unwrap();
    pair.sides[1]
        .db
        .batch_execute(
            "create table app.part (id int primary key, v text); alter table app.part owner to applier",
        )
        .await
        .unwrap();
    support::setup::source_agent(&[
        "add-table",
        "app.part",
        "--target",
        "b",
        "--columns",
        "id,v",
        "--source-db",
        &a.source_db,
    ])
    .await;
    // Refused before anything else: no agent runs yet either.
    let args = pair.switchover_args(0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_command("source-agent", &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("it takes app.part with --columns or --where"),
        "{stderr}"
    );
    // Without it, the agents not running are what stands in the way.
    support::setup::source_agent(&[
        "remove-table",
        "app.part",
        "--target",
        "b",
        "--source-db",
        &pair.sides[0].source_db,
    ])
    .await;
    let out = run_command("source-agent", &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no source-agent run streams to it"),
        "{stderr}"
    );
    pair.sides[1].start_target_agent().await;
    pair.sides[0].start_source_agent().await;
    pair.wait_equal(SYNC).await;
    // Nothing was fenced: the source takes writes, which replicate.
    pair.sides[0]
        .db
        .batch_execute("insert into app.ledger (id, side) values (1, 0)")
        .await
        .expect("the source stays writable");
    pair.wait_equal(SYNC).await;
}

/// What a round of the kill test kills, while its switchover runs.
#[derive(Debug, Clone, Copy)]
enum Victim {
    OldSourcesAgent,
    NewSourcesTargetAgent,
    OldSourcesDatabase,
    NewSourcesDatabase,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_of_either_agent_or_database_during_a_switchover_completes_it_with_nothing_lost()
{
    let (seed, mut rng) = support::seeded();
    println!("PGFERRY_SEED={seed}");
    let mut pair = Pair::replicating().await;
    let app = pair.app();
    let victims = [
        Victim::OldSourcesAgent,
        Victim::NewSourcesTargetAgent,
        Victim::OldSourcesDatabase,
        Victim::NewSourcesDatabase,
    ];
    for (round, victim) in victims.into_iter().enumerate() {
        let from = round % 2;
        tokio::time::sleep(Duration::from_millis(500)).await;
        pair.wait_copied(from).await;
        let mut switchover = support::Agent::spawn("source-agent", &pair.switchover_args(from));
        let pause = rng.next_u64() % 150;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        println!("round {round}: kill -9 of {victim:?} after {pause} ms");
        let [a, b] = &mut pair.sides;
        let (old, new) = if from == 0 { (a, b) } else { (b, a) };
        match victim {
            Victim::OldSourcesAgent => {
                let agent = old.source_agent.as_mut().expect("old source's agent");
                agent.kill9().await;
                agent.restart();
            }
            Victim::NewSourcesTargetAgent => {
                let agent = new
                    .target_agent
                    .as_mut()
                    .expect("new source's target agent");
                agent.kill9().await;
                agent.restart();
            }
            Victim::OldSourcesDatabase => old.restart_database_after_kill9().await,
            Victim::NewSourcesDatabase => new.restart_database_after_kill9().await,
        }
        // The command ends once the switchover is done; one whose session
        // the kill took is run again and waits for the switchover under way.
        let deadline = tokio::time::Instant::now() + SYNC;
        let status = loop {
            if let Some(status) = switchover.exit_status() {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: the switchover did not end:\n{}",
                switchover.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !status.success() {
            println!(
                "round {round}: the switchover command stopped:\n{}",
                switchover.log()
            );
            pair.switchover(from).await;
        }
        pair.hand_over(from).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = app.stop().await;
    println!("{written}");
    // One side took the writes at a time: they moved side at most once a
    // switchover.
    let moves = written
        .committed
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .count();
    assert!(moves <= victims.len(), "writes moved side {moves} times");
    pair.settle(&written, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_promote_the_target_then_rejoin_the_old_source_with_its_lost_transactions_in_a_file()
 {
    let mut pair = Pair::replicating().await;
    let app = pair.app();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // `a` is lost under load; `b` takes over at the last batch it applied.
    pair.sides[0].cluster.kill9();
    let out = support::setup::expect_success(
        "promote",
        &run_command(
            "target-agent",
            &[
                "promote",
                "--target-db",
                &pair.sides[1].target_db,
                "--source-id",
                "a",
                "--reverse-address",
                &pair.sides[0].url(),
            ],
        )
        .await,
    );
    assert!(out.contains("at epoch 2"), "{out}");
    let from_a = ledger_ids(&pair.sides[1].db, 0).await;
    pair.sides[1].start_source_agent().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // `a` comes back (its source agent still running, refused by `b`'s
    // epoch) with the transactions `b` never got.
    pair.sides[0].cluster.start_server();
    pair.sides[0].db = pair.sides[0].cluster.connect("app").await;
    let on_a = ledger_ids(&pair.sides[0].db, 0).await;
    let lost: std::collections::BTreeSet<i64> = on_a.difference(&from_a).copied().collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = support::setup::expect_success(
        "rejoin",
        &run_command(
            "source-agent",
            &[
                "rejoin",
                "--source-db",
                &pair.sides[0].source_db,
                "--target",
                "b",
                "--source-id",
                "a",
                "--lost-file",
                file.path().to_str().unwrap(),
            ],
        )
        .await,
    );
    println!("{out}");
    // The file holds exactly those transactions, one per line, each with
    // its ledger row, event and balance move.
    let text = std::fs::read_to_string(file.path()).unwrap();
    let mut in_file = std::collections::BTreeSet::new();
    for line in text.lines() {
        let transaction: serde_json::Value = serde_json::from_str(line).unwrap();
        let changes = transaction["changes"].as_array().unwrap();
        let ledger: Vec<i64> = changes
            .iter()
            .filter(|c| c["table"] == "app.ledger" && c["op"] == "insert")
            // A table with a json column travels in text forms: "id": "7".
            .map(|c| match &c["row"]["id"] {
                serde_json::Value::String(id) => id.parse().unwrap(),
                id => id.as_i64().unwrap(),
            })
            .collect();
        assert_eq!(ledger.len(), 1, "{line}");
        assert_eq!(changes.len(), 3, "{line}");
        in_file.insert(ledger[0]);
    }
    assert_eq!(
        in_file, lost,
        "the file's transactions against those b lacked"
    );
    println!("{} transactions lost with a, all in the file", lost.len());
    // `a` becomes `b`'s target; a repair makes it exact.
    pair.sides[0].stop_source_agent().await;
    pair.sides[0].start_target_agent().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = app.stop().await;
    assert!(
        written.committed.iter().any(|(_, side)| *side == 1),
        "{written:?}"
    );
    has_every_write(
        &pair.sides[0],
        &Written {
            committed: written
                .committed
                .iter()
                .filter(|(_, side)| *side == 1)
                .copied()
                .collect(),
            ..Default::default()
        },
    )
    .await;
    support::setup::source_agent(&[
        "repair",
        "--source-db",
        &pair.sides[1].source_db,
        "--target",
        "a",
    ])
    .await;
    pair.wait_equal(SYNC).await;
    pair.verify_from(1).await;
}

/// The ledger ids written on side `side` that `db` holds.
async fn ledger_ids(db: &tokio_postgres::Client, side: i32) -> std::collections::BTreeSet<i64> {
    db.query("select id from app.ledger where side = $1", &[&side])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_target_of_the_switched_tables_follows_the_new_source_through_the_old_one() {
    let mut pair = Pair::new().await;
    // Target `c` takes two of the tables from `a`, the ledger by a filter.
    let c = tokio::task::spawn_blocking(support::PgCluster::start)
        .await
        .unwrap();
    c.connect("postgres")
        .await
        .batch_execute("create database app")
        .await
        .unwrap();
    let c_db = c.connect("app").await;
    c_db.batch_execute(&format!(
        "create role applier login password 'applier-pw';
         grant create on database app to applier;
         create schema app authorization applier;
         {}
         alter table app.accounts owner to applier; alter table app.ledger owner to applier;",
        support::pair::TABLES
    ))
    .await
    .unwrap();
    let c_target_db = c.conninfo("app", "applier", "applier-pw");
    support::setup::expect_success(
        "target install",
        &run_command("target-agent", &["install", "--target-db", &c_target_db]).await,
    );
    let (_c_agent, c_url) = support::setup::serving_target_agent(&c_target_db).await;
    let a_db = pair.sides[0].source_db.clone();
    for args in [
        vec!["add-target", "c", "--address", &c_url],
        vec!["add-table", "app.accounts", "--target", "c"],
        vec![
            "add-table",
            "app.ledger",
            "--target",
            "c",
            "--where",
            "id % 2 = 0",
        ],
    ] {
        support::setup::source_agent(&[args, vec!["--source-db", &a_db]].concat()).await;
    }
    pair.sides[1].start_target_agent().await;
    pair.sides[0].start_source_agent().await;
    pair.wait_equal(SYNC).await;
    let app = pair.app();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // `a`'s agent keeps running: it still streams to `c`.
    pair.switchover(0).await;
    pair.sides[0].start_target_agent().await;
    pair.sides[1].start_source_agent().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let written = app.stop().await;
    assert!(
        written.committed.iter().any(|(_, side)| *side == 1),
        "{written:?}"
    );
    for side in &pair.sides {
        has_every_write(side, &written).await;
    }
    pair.wait_equal(SYNC).await;
    // `c` has `b`'s rows, through `a`: accounts whole, the even ledger ids.
    let b = &pair.sides[1].db;
    let c_db = &c_db;
    let accounts = "select coalesce(string_agg(t::text, ',' order by id), '') from app.accounts t";
    let even = "select coalesce(string_agg(t::text, ',' order by id), '') from app.ledger t where id % 2 = 0";
    support::wait_until("c has b's rows", SYNC, || async {
        let same = text_of(c_db, accounts).await == text_of(b, accounts).await
            && text_of(c_db, even).await == text_of(b, even).await;
        same.then_some(())
    })
    .await;
    let out = run_command(
        "source-agent",
        &["verify", "--source-db", &a_db, "--target", "c"],
    )
    .await;
    support::setup::expect_success("verify a to c", &out);
}

/// The one text value `sql` selects on `db`.
async fn text_of(db: &tokio_postgres::Client, sql: &str) -> String {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_that_waits_past_its_timeout_is_lifted_and_the_source_stays_writable() {
    let pair = Pair::replicating().await;
    pair.wait_copied(0).await;
    // A transaction that wrote the ledger and does not end.
    let blocker = pair.sides[0].cluster.connect("app").await;
    blocker
        .batch_execute("begin; insert into app.ledger (id, side) values (1, 0)")
        .await
        .unwrap();
    let args = [
        pair.switchover_args(0),
        vec!["--timeout".into(), "1s".into()],
    ]
    .concat();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_command("source-agent", &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("did not finish within 1s (setting `timeout`); the fence is lifted"),
        "{stderr}"
    );
    blocker.batch_execute("commit").await.unwrap();
    // Nothing was fenced: the source takes writes, which replicate.
    pair.sides[0]
        .db
        .batch_execute("insert into app.ledger (id, side) values (2, 0)")
        .await
        .expect("the source stays writable");
    pair.wait_equal(SYNC).await;
    let fences: i64 = pair.sides[0]
        .db
        .query_one(
            "select count(*) from pg_trigger where tgname = 'pgferry_fence'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fences, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_of_the_old_source_agent_between_the_take_over_and_its_acknowledgement_completes_the_switchover()
 {
    let mut pair = Pair::replicating().await;
    let app = pair.app();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Acknowledgements on `a` wait behind this lock: `b` will apply the
    // final batch, and `a` will not have recorded it.
    let holder = pair.sides[0].cluster.connect("app").await;
    holder
        .batch_execute("begin; select * from pgferry.targets for no key update")
        .await
        .unwrap();
    let mut switchover = support::Agent::spawn("source-agent", &pair.switchover_args(0));
    support::wait_until("b took over", SYNC, || async {
        let epoch: i64 = pair.sides[1]
            .db
            .query_one(
                "select epoch from pgferry.progress where source_id = 'a'",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (epoch == 2).then_some(())
    })
    .await;
    let old_agent = pair.sides[0].source_agent.as_mut().unwrap();
    old_agent.kill9().await;
    holder.batch_execute("rollback").await.unwrap();
    // Started again, the agent hears from `b` that its final batch is
    // applied there (and nothing more from it is taken) and acknowledges it.
    old_agent.restart();
    let status = loop {
        if let Some(status) = switchover.exit_status() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{}", switchover.log());
    let log = pair.sides[0].source_agent.as_ref().unwrap().log();
    assert!(
        log.contains("the target took over in a switchover; this stream is done"),
        "{log}"
    );
    pair.sides[0].stop_source_agent().await;
    pair.sides[0].start_target_agent().await;
    pair.sides[1].start_source_agent().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = app.stop().await;
    println!("{written}");
    pair.settle(&written, 1).await;
}
