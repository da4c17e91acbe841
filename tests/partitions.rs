//! Partitioned tables: a target table partitioned where the source's is
//! not takes every change, and `verify` reads it whole.

use std::time::Duration;

use support::Replication;
use support::run_command;
use support::setup::{checksum, source_agent};

const SYNC: Duration = Duration::from_secs(60);
const ORDERS: (&str, &str) = ("digoal.orders", "digoal.orders_p");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_target_table_takes_every_change_of_a_plain_source_table() {
    let mut r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.orders (id int, region text, v text, primary key (id, region));
             insert into digoal.orders
             select g, (array['eu', 'us', 'ap'])[g % 3 + 1], 'first ' || g
             from generate_series(1, 300) g;",
        )
        .await
        .unwrap();
    r.dst
        .batch_execute(
            "create table digoal.orders_p (id int, region text, v text, primary key (id, region))
                 partition by list (region);
             create table digoal.orders_p_eu partition of digoal.orders_p for values in ('eu');
             create table digoal.orders_p_us partition of digoal.orders_p for values in ('us');
             create table digoal.orders_p_rest partition of digoal.orders_p default;
             alter table digoal.orders_p owner to applier;
             alter table digoal.orders_p_eu owner to applier;
             alter table digoal.orders_p_us owner to applier;
             alter table digoal.orders_p_rest owner to applier;",
        )
        .await
        .unwrap();
    source_agent(&[
        "add-table",
        "--source-db",
        &r.source_db,
        ORDERS.0,
        "--as",
        ORDERS.1,
    ])
    .await;
    r.start_agents().await;
    r.wait_tables_in_sync(&[ORDERS], SYNC).await;
    // Updates in place, rows moving to another of the target's partitions
    // (their key changes), deletes and inserts, in one transaction and
    // alone.
    r.src
        .batch_execute(
            "update digoal.orders set v = 'updated ' || id where id % 4 = 0;
             update digoal.orders set region = 'us' where region = 'eu' and id % 5 = 0;
             delete from digoal.orders where id % 7 = 0;
             begin;
             insert into digoal.orders select g, 'eu', 'later ' || g from generate_series(301, 350) g;
             update digoal.orders set v = v || ' again' where id % 11 = 0;
             commit;",
        )
        .await
        .unwrap();
    r.wait_tables_in_sync(&[ORDERS], SYNC).await;
    let out = run_command(
        "source-agent",
        &["verify", "--source-db", &r.source_db, "--timeout", "60s"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for partition in ["orders_p_eu", "orders_p_us", "orders_p_rest"] {
        let rows: i64 = r
            .dst
            .query_one(
                &format!("select count(*) from only digoal.{partition}"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(rows > 0, "{partition} holds its rows");
    }
    r.src
        .batch_execute(
            "truncate digoal.orders;
             insert into digoal.orders values (1, 'eu', 'after the truncate'), (2, 'ap', 'too');",
        )
        .await
        .unwrap();
    r.wait_tables_in_sync(&[ORDERS], SYNC).await;
    assert_eq!(checksum(&r.dst, ORDERS.1).await.0, 2);
}
