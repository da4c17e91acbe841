//! Versioned install: a later version's `install` upgrades in place, keeping
//! data; running it again changes nothing; an older binary refuses a newer
//! schema.

use pgferry_proto::install::{InstallError, install};
use support::PgCluster;

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
    assert_eq!(
        install(&mut client, v2).await.unwrap(),
        (1, 2),
        "v2 runs only its new script"
    );
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
