//! The guard: on the target, only the applier role writes replicated tables.
//! Everyone else is refused with an error naming the table, whatever
//! application_name or session_replication_role they set.

use std::time::Duration;

use futures_util::SinkExt;
use support::Replication;
use support::setup::{checksum, wait_for_sql};
use tokio_postgres::NoTls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_refuses_every_other_writer_and_names_the_table() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'x', now(), now())")
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_in_sync(Duration::from_secs(30)).await;
    wait_for_sql(
        &r.dst,
        "select exists (select from pg_trigger where tgname = 'pgferry_guard' and tgenabled = 'A')",
        Duration::from_secs(10),
    )
    .await;
    let applier_is_superuser: bool = r
        .dst
        .query_one(
            "select rolsuper from pg_roles where rolname = 'applier'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!applier_is_superuser, "the applier is an ordinary role");
    let before = checksum(&r.dst, "digoal.rmt_test").await;

    let writes = [
        "insert into digoal.rmt_test values (2, 'y', now(), now())",
        "update digoal.rmt_test set info = 'z'",
        "delete from digoal.rmt_test",
        "truncate digoal.rmt_test",
    ];
    // A superuser, as itself, pretending to be the applier, and switching
    // replica mode on: all refused by the trigger.
    for setting in [
        "",
        "set application_name = 'pgferry-target-agent'",
        "set session_replication_role = replica",
    ] {
        let superuser = r.target.connect("digoal").await;
        if !setting.is_empty() {
            superuser.batch_execute(setting).await.unwrap();
        }
        for write in writes {
            let err = superuser.batch_execute(write).await.expect_err(write);
            let message = err
                .as_db_error()
                .map(|e| e.message().to_owned())
                .unwrap_or_default();
            assert!(
                message.contains("digoal.rmt_test") && message.contains("applier"),
                "`{write}` after `{setting}`: {message}"
            );
        }
        let copy = superuser
            .copy_in::<_, bytes::Bytes>("copy digoal.rmt_test from stdin")
            .await
            .unwrap();
        futures_util::pin_mut!(copy);
        copy.send(bytes::Bytes::from_static(b"3\tcopied\t\\N\t\\N\n"))
            .await
            .unwrap();
        let err = copy.finish().await.expect_err("copy is refused");
        assert!(format!("{err:?}").contains("rmt_test"), "copy: {err:?}");
    }

    // An ordinary role that had been granted writes lost them to the guard.
    let conninfo = r.target.conninfo("digoal", "other_writer", "other");
    let (other, connection) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
    tokio::spawn(connection);
    other
        .batch_execute("set application_name = 'pgferry-target-agent'")
        .await
        .unwrap();
    let err = other
        .batch_execute(writes[0])
        .await
        .expect_err("other role refused");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("rmt_test"), "{message}");

    assert_eq!(
        checksum(&r.dst, "digoal.rmt_test").await,
        before,
        "nothing changed"
    );
    // And the applier itself still writes: replication goes on.
    r.src
        .batch_execute("insert into digoal.loc_test values (4, 'after', now(), now())")
        .await
        .unwrap();
    r.wait_in_sync(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_written_behind_the_guards_back_is_overwritten_not_stuck() {
    let mut r = Replication::new().await;
    r.start_agents().await;
    r.wait_in_sync(Duration::from_secs(30)).await;
    // A superuser switches the guard off and writes a row the source has
    // not got: the applier's plain insert of that key will meet it.
    r.dst
        .batch_execute(
            "alter table digoal.rmt_test disable trigger pgferry_guard;
             insert into digoal.rmt_test values (2, 'stray', now(), now());
             alter table digoal.rmt_test enable always trigger pgferry_guard;",
        )
        .await
        .unwrap();
    r.src
        .batch_execute(
            "insert into digoal.loc_test values (1, 'source', now(), now()), (2, 'source', now(), now())",
        )
        .await
        .unwrap();
    let (rows, _) = r.wait_in_sync(Duration::from_secs(30)).await;
    assert_eq!(rows, 2);
    let info: String = r
        .dst
        .query_one("select info from digoal.rmt_test where id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(info, "source", "the source's row replaced the stray one");
    let source_log = r.source_agent().log();
    assert!(
        source_log.contains("an inserted key is already on the target"),
        "the conflict was reported: {source_log}"
    );
    let target_log = r.target_agent().log();
    assert!(
        target_log.contains("applying a batch again after a constraint failed")
            && target_log.contains("upserts=true"),
        "{target_log}"
    );
}
