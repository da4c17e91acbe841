//! Versioned install: a later version's `install` upgrades in place, keeping
//! data; running it again changes nothing; an older binary refuses a newer
//! schema.

use pgferry_proto::install::{InstallError, install, is_current};
use support::setup::expect_success;
use support::{PgCluster, run_command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_install_upgrades_in_place_and_an_older_one_refuses() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let mut client = cluster.connect("postgres").await;
    let v1: &[(i32, &str)] = &[(
        1,
        "create table pgferry.kept (x int); insert into pgferry.kept values (1);",
    )];
    let v2: &[(i32, &str)] = &[
        v1[0],
        (2, "alter table pgferry.kept add column y int default 2;"),
    ];

    assert_eq!(install(&mut client, v1).await.unwrap(), (0, 1));
    assert_eq!(
        install(&mut client, v1).await.unwrap(),
        (1, 1),
        "a second install is a no-op"
    );
    assert!(matches!(
        is_current(&client, v2).await,
        Err(InstallError::Outdated { found: 1, known: 2 })
    ));
    assert_eq!(
        install(&mut client, v2).await.unwrap(),
        (1, 2),
        "v2 runs only its new script"
    );
    assert!(is_current(&client, v2).await.unwrap());
    let row = client
        .query_one("select x, y from pgferry.kept", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, i32>(1)),
        (1, 2),
        "data survives the upgrade"
    );
    assert!(matches!(
        install(&mut client, v1).await,
        Err(InstallError::TooNew { found: 2, known: 1 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_refuse_a_schema_older_than_theirs_until_install_upgrades_it() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let mut client = cluster.connect("postgres").await;
    let source_v1: &[(i32, &str)] = &[(1, include_str!("../source-agent/sql/001_schema.sql"))];
    install(&mut client, source_v1).await.unwrap();
    client
        .batch_execute("create table t (id int primary key); insert into t values (1);")
        .await
        .unwrap();
    let db = cluster.conninfo("postgres", "postgres", "");

    let refused = run_command(
        "source-agent",
        &["add-table", "--source-db", &db, "public.t"],
    )
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("schema version 1 is older") && stderr.contains("install"),
        "{stderr}"
    );

    let upgraded = run_command("source-agent", &["install", "--source-db", &db]).await;
    expect_success("install", &upgraded);
    expect_success(
        "add-table",
        &run_command(
            "source-agent",
            &["add-table", "--source-db", &db, "public.t"],
        )
        .await,
    );
    let version: i32 = client
        .query_one("select max(version) from pgferry.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 5, "upgraded to the newest version");
}
