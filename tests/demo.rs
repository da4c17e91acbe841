//! The demo: two throwaway local clusters, both agents replicating
//! `digoal.loc_test` into `digoal.rmt_test`, the seed article's scenario
//! replayed, and both sides' checksums printed after every step.

use std::time::Duration;

use support::Replication;
use support::setup::checksum;

#[tokio::main]
async fn main() {
    println!("starting two throwaway PostgreSQL clusters and both agents...");
    let mut r = Replication::new().await;
    r.start_agents().await;
    println!("source: {}", r.source_db);
    println!(
        "target: {} (target agent on 127.0.0.1:{})",
        r.target_db, r.target_port
    );
    let steps = [
        (
            "insert",
            "insert into digoal.loc_test values (1, 'digoal', now(), now())",
        ),
        ("update", "update digoal.loc_test set info = 'DIGOAL'"),
        ("delete", "delete from digoal.loc_test"),
        (
            "bulk insert 100",
            "insert into digoal.loc_test select generate_series(1, 100), 'DIGOAL', now(), now()",
        ),
        (
            "insert 100 derived",
            "insert into digoal.loc_test select id + 1000, 'TEST', now(), now() from digoal.loc_test",
        ),
        ("truncate", "truncate table digoal.loc_test"),
    ];
    println!(
        "\n{:<20} {:>28} {:>28}",
        "step", "source count, sum(hashtext)", "target count, sum(hashtext)"
    );
    for (name, sql) in steps {
        r.src.batch_execute(sql).await.expect(sql);
        r.wait_in_sync(Duration::from_secs(30)).await;
        let source = checksum(&r.src, "digoal.loc_test").await;
        let target = checksum(&r.dst, "digoal.rmt_test").await;
        println!(
            "{name:<20} {:>28} {:>28}",
            format!("{}, {}", source.0, source.1),
            format!("{}, {}", target.0, target.1)
        );
    }
    let status = r.status().await;
    println!(
        "\nsource-agent status --json:\n{}",
        serde_json::to_string_pretty(&status).expect("json")
    );
    r.source_agent().terminate(Duration::from_secs(15)).await;
    r.target_agent().terminate(Duration::from_secs(15)).await;
    println!("\nboth agents stopped; clusters removed");
}
