//! The compiled capture (extension pgferry_capture, which tests/test.sh
//! builds and installs) and the PL/pgSQL one queue the same changes, and
//! `install --capture` switches between them.

use support::PgCluster;
use support::setup::source_agent;
use tokio_postgres::Client;

const TABLES: &str = r#"
    create table pairs (a int, b text, n text, r numeric, at timestamptz, doc jsonb, raw bytea,
                        primary key (a, b));
    create table solo (id int primary key, v text);
    create table flat (id int, k text, n int, t text, f float8, primary key (id, k));
"#;

/// Every path of both captures: single- and multi-row statements, several
/// arrays for one statement, a key change, updates of some columns (of
/// different ones in different rows, to NULL, of none), quotes and
/// backslashes, NULLs, a transaction that inserts and deletes, a TRUNCATE.
const WORKLOAD: &str = r#"
    insert into pairs values (1, 'x', 'it''s', 1.5, '2026-01-01 00:00+00', '{"k": [1, 2]}', '\x0102');
    insert into pairs select g, 'y\z', null, g / 3.0, null, null, null from generate_series(2, 4) g;
    insert into solo select g, repeat('w', 500) from generate_series(1, 300) g;
    update pairs set n = 'changed' where a = 1;
    update pairs set r = r + 1 where a > 1;
    update pairs set b = 'moved' where a = 2;
    update solo set v = 'v' where id <= 2;
    update solo set v = v where id = 5;
    update pairs set n = case when a = 2 then 'n2' else n end, r = case when a = 4 then 0 else r end where a > 1;
    update pairs set doc = null, raw = '\x03' where a = 1;
    insert into flat select g, 'k' || g, g, repeat('t', 3000), g / 4.0 from generate_series(1, 5) g;
    update flat set n = n + 1 where id = 1;
    update flat set t = null, f = -0.0 where id = 2;
    update flat set n = case when id = 3 then 0 else n end, f = case when id = 4 then 1.5 else f end where id > 2;
    update flat set n = n where id = 1;
    update flat set k = 'moved' where id = 5;
    delete from pairs where a = 3;
    delete from pairs where a in (1, 4);
    delete from solo where id > 100;
    insert into solo values (1000, 'a'), (1001, 'b');
    begin; insert into solo values (2000, 'in tx'); delete from solo where id = 2000; commit;
    truncate solo;
"#;

type QueueRow = (i32, String, Option<String>, Option<String>, Option<i32>);

async fn queue(client: &Client) -> Vec<QueueRow> {
    client
        .query(
            "select table_id, op::text, old_key::jsonb::text, new_row::jsonb::text, statement_rows
             from pgferry.queue order by seq",
            &[],
        )
        .await
        .expect("queue")
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

async fn compiled_triggers(client: &Client) -> i64 {
    client
        .query_one(
            "select count(*) from pg_trigger t join pg_proc p on p.oid = t.tgfoid
             where p.proname in ('compiled_capture_rows', 'compiled_capture_updates', 'compiled_capture_deletes')",
            &[],
        )
        .await
        .expect("triggers")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_and_plpgsql_capture_queue_the_same_changes() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let admin = cluster.connect("postgres").await;
    for db in ["compiled", "plpgsql"] {
        admin
            .batch_execute(&format!("create database {db}"))
            .await
            .unwrap();
    }
    let mut queues = Vec::new();
    for (db, choice, said) in [
        ("compiled", "compiled", "capture: compiled"),
        ("plpgsql", "plpgsql", "capture: PL/pgSQL"),
    ] {
        let conninfo = cluster.conninfo(db, "postgres", "");
        let out = source_agent(&["install", "--source-db", &conninfo, "--capture", choice]).await;
        assert!(out.contains(said), "{out}");
        let client = cluster.connect(db).await;
        client.batch_execute(TABLES).await.unwrap();
        for table in ["public.pairs", "public.solo", "public.flat"] {
            source_agent(&["add-table", "--source-db", &conninfo, table]).await;
        }
        assert_eq!(compiled_triggers(&client).await > 0, db == "compiled");
        let status = source_agent(&["status", "--source-db", &conninfo, "--json"]).await;
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["capture"], choice, "{status}");
        client.batch_execute(WORKLOAD).await.unwrap();
        queues.push(queue(&client).await);
    }
    assert!(
        queues[0].iter().any(|row| row.4.is_some_and(|n| n > 1))
            && queues[0]
                .iter()
                .filter(|row| row.0 == 2 && row.1 == "I")
                .count()
                > 2,
        "multi-row statements queued as several arrays: {:?}",
        queues[0]
    );
    // An update queues its rows' keys and the columns it changed.
    let updates: Vec<(&str, Option<i32>)> = queues[0]
        .iter()
        .filter(|row| row.1 == "U")
        .map(|row| (row.3.as_deref().unwrap_or_default(), row.4))
        .collect();
    for expected in [
        (r#"{"a": "1", "b": "x", "n": "changed"}"#, None),
        (r#"{"a": "1", "b": "x", "doc": null, "raw": "\\x03"}"#, None),
        (r#"{"k": "k1", "n": 2, "id": 1}"#, None),
        (r#"{"f": 0, "k": "k2", "t": null, "id": 2}"#, None),
        (
            r#"[{"f": 0.75, "k": "k3", "n": 0, "id": 3}, {"f": 1.5, "k": "k4", "n": 4, "id": 4}, {"f": 1.25, "k": "k5", "n": 5, "id": 5}]"#,
            Some(3),
        ),
    ] {
        assert!(
            updates.contains(&expected),
            "{expected:?} among {updates:#?}"
        );
    }
    // A key changed: the whole row.
    assert!(
        updates
            .iter()
            .any(|(row, _)| row.contains(r#""k": "moved""#) && row.contains(r#""t": "ttt"#)),
        "{updates:#?}"
    );
    assert_eq!(queues[0], queues[1]);

    // Back to PL/pgSQL: the extension goes, the triggers are made again and
    // capture goes on.
    let conninfo = cluster.conninfo("compiled", "postgres", "");
    let out = source_agent(&["install", "--source-db", &conninfo, "--capture", "plpgsql"]).await;
    assert!(out.contains("capture: PL/pgSQL"), "{out}");
    let client = cluster.connect("compiled").await;
    assert_eq!(compiled_triggers(&client).await, 0);
    let queued = queue(&client).await.len();
    client
        .batch_execute("insert into solo values (1, 'after')")
        .await
        .unwrap();
    assert_eq!(queue(&client).await.len(), queued + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_updates_an_extension_of_an_older_version_and_its_triggers_use_the_new_functions() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let client = cluster.connect("postgres").await;
    let conninfo = cluster.conninfo("postgres", "postgres", "");
    source_agent(&["install", "--source-db", &conninfo, "--capture", "plpgsql"]).await;
    // As an earlier pgferry left it: the extension's first version, whose
    // update capture was the whole-row one.
    client
        .batch_execute(
            "create extension pgferry_capture version '1' schema pgferry;
             create table t (id int primary key, v text);",
        )
        .await
        .unwrap();
    source_agent(&["add-table", "--source-db", &conninfo, "public.t"]).await;
    let update_capture = || async {
        client
            .query_one(
                "select (select extversion from pg_extension where extname = 'pgferry_capture'),
                        p.proname::text
                 from pg_trigger g join pg_proc p on p.oid = g.tgfoid
                 where g.tgrelid = 't'::regclass and g.tgname = 'pgferry_capture_update'",
                &[],
            )
            .await
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
            .unwrap()
    };
    assert_eq!(
        update_capture().await,
        ("1".to_string(), "capture_updates".to_string())
    );
    let out = source_agent(&["install", "--source-db", &conninfo]).await;
    assert!(out.contains("capture: compiled"), "{out}");
    assert_eq!(
        update_capture().await,
        ("2".to_string(), "compiled_capture_updates".to_string())
    );
}
