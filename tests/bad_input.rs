//! Bad input gets a clear error naming the table, column or setting at
//! fault, and changes nothing.

use std::time::Duration;

use pgferry_proto::wire::{self, replication_client::ReplicationClient};
use support::setup::{APPLIER, SEED_TABLE, expect_success};
use support::{Replication, run_command};

const SYNC: Duration = Duration::from_secs(30);

/// Runs an agent command that must fail; returns (exit code, stderr).
async fn fails(name: &str, args: &[&str]) -> (i32, String) {
    let out = run_command(name, args).await;
    assert!(!out.status.success(), "{name} {args:?} should fail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn registered_tables(r: &Replication) -> i64 {
    r.src
        .query_one("select count(*) from pgferry.tables", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_table_refuses_keyless_unlogged_partitioned_without_watch_missing_and_duplicate_tables()
{
    let r = Replication::new().await;
    r.src
        .batch_execute(
            "create table digoal.nokey (a int, b text);
             create table digoal.nullable_unique (a int unique, b text);
             create table digoal.full (id int primary key, info text);
             create unlogged table digoal.scratch (id int primary key);
             create table digoal.parted (id int, region text, primary key (id, region))
               partition by list (region);
             create table digoal.parted_eu partition of digoal.parted for values in ('eu');
             insert into digoal.full values (1);
             alter event trigger pgferry_watch_ddl disable;",
        )
        .await
        .unwrap();
    let db = r.source_db.as_str();
    let cases = [
        ("digoal.nokey", "no primary key"),
        ("digoal.nullable_unique", "no primary key"),
        ("digoal.nope", "does not exist"),
        ("digoal.scratch", "UNLOGGED"),
        (
            "digoal.parted",
            "is partitioned and this database has no DDL watch",
        ),
        ("digoal.loc_test", "already replicated"),
        ("a.b.c", "not a table name"),
    ];
    for (table, expected) in cases {
        let (code, stderr) = fails("source-agent", &["add-table", "--source-db", db, table]).await;
        assert_eq!(code, 1, "{table}: {stderr}");
        assert!(stderr.contains(expected), "{table}: {stderr}");
        if table != "a.b.c" {
            assert!(stderr.contains(table), "the error names {table}: {stderr}");
        }
    }
    let bad_options = [
        ("--columns", "info", "must include the key column(s) id"),
        ("--columns", "id,nope", "no such columns: nope"),
        (
            "--where",
            "id > 0; drop table digoal.loc_test",
            "cannot contain `;`",
        ),
        ("--where", "nope > 1", "column \"nope\" does not exist"),
        // A row filter is an expression over the row alone, as PostgreSQL
        // 15's publication row filters.
        (
            "--where",
            "id in (select id from digoal.loc_test)",
            "Only columns, constants, built-in operators",
        ),
        (
            "--where",
            "random() > 0.5",
            "mutable functions are not allowed",
        ),
        (
            "--where",
            "now() > '2020-01-01'",
            "mutable functions are not allowed",
        ),
        (
            "--where",
            "count(*) > 0",
            "aggregate functions are not allowed",
        ),
        (
            "--where",
            "row_number() over () > 1",
            "window functions are not allowed",
        ),
        ("--where", "id > 1) or (true", "syntax error"),
        ("--where", "id > 1 -- comment", "bad row filter"),
        ("--where", "id + 1", "must be type boolean"),
    ];
    for (flag, value, expected) in bad_options {
        let args = ["add-table", "--source-db", db, "digoal.full", flag, value];
        let (code, stderr) = fails("source-agent", &args).await;
        assert_eq!(code, 1, "{flag} {value}: {stderr}");
        assert!(
            stderr.contains("digoal.full") && stderr.contains(expected),
            "{flag} {value}: {stderr}"
        );
    }
    assert_eq!(registered_tables(&r).await, 1, "nothing registered");
    let triggers: i64 = r
        .src
        .query_one(
            "select count(*) from pg_trigger
             where tgname like 'pgferry%' and tgrelid <> 'digoal.loc_test'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0, "only loc_test has capture triggers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_twice_is_harmless_and_keeps_the_queue() {
    let r = Replication::new().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'kept', now(), now())")
        .await
        .unwrap();
    // The second time with the CONNINFO as a URL.
    let url = format!("postgres://postgres@127.0.0.1:{}/digoal", r.source.port);
    let out = run_command("source-agent", &["install", "--source-db", &url]).await;
    assert!(expect_success("second install", &out).contains("current"));
    let out = run_command("target-agent", &["install", "--target-db", &r.target_db]).await;
    assert!(expect_success("second install", &out).contains("current"));
    let queued: i64 = r
        .src
        .query_one("select count(*) from pgferry.queue", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 1);
}

/// Breaks the target with `sql`, starts the agents, writes one row, and
/// waits until `status` names every one of `parts`; nothing may be applied.
async fn refused_after(sql: &str, parts: &[&str]) -> Replication {
    let mut r = Replication::new().await;
    r.dst.batch_execute(sql).await.unwrap();
    r.start_agents().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'x', now(), now())")
        .await
        .unwrap();
    let error = r.wait_for_error(parts).await["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("status error: {error}");
    assert_eq!(r.target_progress().await, 0, "nothing applied");
    assert_eq!(
        r.status().await["pending_changes"],
        1,
        "the change stays queued"
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_table_with_other_columns_is_refused_by_name_and_nothing_applies() {
    let mut r = refused_after(
        "alter table digoal.rmt_test drop column info, alter column modify_time type timestamptz",
        &["digoal.rmt_test", "info", "modify_time"],
    )
    .await;
    // The DBA fixes the table; the queued change arrives.
    r.dst
        .batch_execute(&format!(
            "drop table digoal.rmt_test; create table digoal.rmt_test {SEED_TABLE};
             alter table digoal.rmt_test owner to applier;"
        ))
        .await
        .unwrap();
    r.wait_in_sync(SYNC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_target_table_is_reported_by_name() {
    refused_after(
        "drop table digoal.rmt_test",
        &["digoal.rmt_test", "does not exist"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_and_retried_not_skipped() {
    let mut r = Replication::new().await;
    r.target_args = vec!["--max-message-bytes".into(), "4096".into()];
    r.start_agents().await;
    // The (empty) initial copy goes first.
    r.wait_in_sync(SYNC).await;
    let before = r.target_progress().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (1, repeat('x', 20000), now(), now())")
        .await
        .unwrap();
    let error = r.wait_for_error(&["message length too large"]).await["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("status error: {error}");
    assert_eq!(r.target_progress().await, before, "nothing applied");
    assert_eq!(
        r.status().await["pending_changes"],
        1,
        "the change stays queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_speaking_another_protocol_version_is_refused() {
    let mut r = Replication::new().await;
    r.start_target_agent().await;
    let mut client = ReplicationClient::connect(format!("http://127.0.0.1:{}", r.target_port))
        .await
        .unwrap();
    let hello = wire::SourceMessage {
        kind: Some(wire::source_message::Kind::Hello(wire::Hello {
            protocol_version: 99,
            source_id: "future".into(),
            ..Default::default()
        })),
    };
    let status = client
        .replicate(tokio_stream::iter([hello]))
        .await
        .expect_err("version 99 is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("protocol version 99"),
        "{}",
        status.message()
    );
    let registered: i64 = r
        .dst
        .query_one("select count(*) from pgferry.progress", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(registered, 0, "the refused source left no trace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conninfo_that_does_not_connect_or_parse_is_named() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("host=127.0.0.1 port={closed} dbname=x user=x connect_timeout=2");
    let (code, stderr) = fails("source-agent", &["install", "--source-db", &unreachable]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot connect to the source database"),
        "{stderr}"
    );
    let (code, stderr) = fails("target-agent", &["install", "--target-db", &unreachable]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot connect to the target database"),
        "{stderr}"
    );
    let (code, stderr) = fails(
        "source-agent",
        &["status", "--source-db", "host=x port=notaport"],
    )
    .await;
    assert_eq!(code, 64, "bad configuration exits 64");
    assert!(stderr.contains("setting `source-db`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_flag_then_environment_then_file_and_bad_ones_are_named() {
    let r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "sourcedb = \"x\"\n").unwrap();
    let (code, stderr) = fails(
        "source-agent",
        &["status", "--config", bad.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 64);
    assert!(stderr.contains("unknown setting `sourcedb`"), "{stderr}");
    let args = [
        "run",
        "--source-db",
        "x",
        "--target",
        "http://x",
        "--source-id",
        "a",
        "--window",
        "many",
    ];
    let (code, stderr) = fails("source-agent", &args).await;
    assert_eq!(code, 64, "a malformed value is bad configuration");
    assert!(stderr.contains("--window"), "{stderr}");
    for (setting, zero) in [
        ("--window", "0"),
        ("--chunk-rows", "0"),
        ("--chunk-bytes", "0"),
    ] {
        let mut args = args.to_vec();
        args.truncate(args.len() - 2);
        args.extend([setting, zero]);
        let (code, stderr) = fails("source-agent", &args).await;
        assert_eq!(code, 64, "{setting} {zero} is bad configuration");
        assert!(stderr.contains(setting), "{stderr}");
    }

    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("source-db = \"{}\"\n", r.source_db)).unwrap();
    let status = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = tokio::process::Command::new(support::bin("source-agent"));
        cmd.args(["status", "--config", good.to_str().unwrap()]);
        if let Some(flag) = flag {
            cmd.args(["--source-db", flag]);
        }
        match env {
            Some(env) => cmd.env("PGFERRY_SOURCE_DB", env),
            None => cmd.env_remove("PGFERRY_SOURCE_DB"),
        };
        async move { cmd.output().await.unwrap().status.success() }
    };
    let broken = "host=127.0.0.1 port=1 connect_timeout=1";
    assert!(status(None, None).await, "the file alone works");
    assert!(
        !status(Some(broken), None).await,
        "the environment beats the file"
    );
    assert!(
        status(Some(broken), Some(&r.source_db)).await,
        "the flag beats the environment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_source_agent_for_the_same_target_exits_naming_it_and_the_first_goes_on() {
    let mut r = Replication::new().await;
    r.start_agents().await;
    let target = format!("http://127.0.0.1:{}", r.target_port);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        run_command(
            "source-agent",
            &[
                "run",
                "--source-db",
                &r.source_db,
                "--target",
                &target,
                "--source-id",
                "dc1",
            ],
        ),
    )
    .await
    .expect("the second agent gives up instead of running on");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "another source-agent is streaming to target default from this source database"
        ),
        "{stderr}"
    );
    r.source_agent().assert_running();
    r.src
        .execute(
            "insert into digoal.loc_test values (1, 'after the second agent', now(), now())",
            &[],
        )
        .await
        .unwrap();
    r.wait_in_sync(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_the_target_token_is_refused_and_one_with_it_replicates() {
    let mut r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "guess").unwrap();
    r.target_args = vec!["--auth-token-file".into(), token.to_str().unwrap().into()];
    r.source_args = vec!["--auth-token-file".into(), wrong.to_str().unwrap().into()];
    let right = vec!["--auth-token-file".into(), token.to_str().unwrap().into()];
    r.refused_until_the_source_gets(&["missing or wrong token"], right)
        .await;
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (certificate file,
/// key file, certificate PEM).
fn self_signed(dir: &std::path::Path, name: &str) -> (String, String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    (path(cert), path(key), certified.cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_does_not_trust_the_targets_certificate_is_refused_and_one_that_does_replicates()
 {
    let mut r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = self_signed(dir.path(), "target");
    let (stranger, _, _) = self_signed(dir.path(), "stranger");
    r.target_args = vec!["--tls-cert".into(), cert.clone(), "--tls-key".into(), key];
    r.target_url = format!("https://127.0.0.1:{}", r.target_port);
    r.target_ca = Some(pem);
    r.source_args = vec!["--tls-ca".into(), stranger];
    r.refused_until_the_source_gets(&["certificate"], vec!["--tls-ca".into(), cert])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_that_cannot_work_are_refused_by_name() {
    let r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = self_signed(dir.path(), "target");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.to_str().unwrap();
    let port = support::setup::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let target_db = r.target_db.as_str();
    for (args, setting) in [
        (
            vec!["--tls-cert", garbage, "--tls-key", garbage],
            "tls-cert",
        ),
        (vec!["--tls-cert", cert.as_str()], "--tls-key"),
        (vec!["--tls-client-ca", cert.as_str()], "--tls-cert"),
        (
            vec![
                "--tls-cert",
                cert.as_str(),
                "--tls-key",
                key.as_str(),
                "--tls-client-ca",
                garbage,
            ],
            "tls-client-ca",
        ),
    ] {
        let all = [
            vec!["run", "--target-db", target_db, "--listen", &listen],
            args,
        ]
        .concat();
        let (_, stderr) = fails("target-agent", &all).await;
        assert!(stderr.contains(setting), "{stderr}");
    }
    let source = |target: String, ca: Option<&str>| {
        let mut args = vec![
            "run".to_string(),
            "--source-db".into(),
            r.source_db.clone(),
            "--source-id".into(),
            "dc1".into(),
            "--target".into(),
            target,
        ];
        args.extend(
            ca.map(|ca| ["--tls-ca".to_string(), ca.to_string()])
                .into_iter()
                .flatten(),
        );
        args
    };
    for args in [
        source(format!("https://127.0.0.1:{port}"), None),
        source(format!("http://127.0.0.1:{port}"), Some(&cert)),
        source(format!("https://127.0.0.1:{port}"), Some(garbage)),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, stderr) = fails("source-agent", &args).await;
        assert!(stderr.contains("tls-ca"), "{stderr}");
    }
    let https = format!("https://127.0.0.1:{port}");
    for (target, client, setting) in [
        (format!("http://127.0.0.1:{port}"), &cert, "tls-cert"),
        (https.clone(), &garbage.to_string(), "tls-cert"),
        (https, &cert, "tls-key"),
    ] {
        let mut args = source(target.clone(), target.starts_with("https").then_some(&cert));
        let bad_key = if setting == "tls-key" {
            garbage
        } else {
            key.as_str()
        };
        args.extend([
            "--tls-cert".into(),
            client.clone(),
            "--tls-key".into(),
            bad_key.into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = fails("source-agent", &args).await;
        assert!(
            stderr.contains(setting) && code == 64,
            "{setting}: {stderr}"
        );
    }
    // A database client certificate that is none, a key that is none, and
    // a key without its certificate.
    let source_db = r.source_db.as_str();
    for (args, setting) in [
        (
            ["--source-db-cert", garbage, "--source-db-key", key.as_str()],
            "source-db-cert",
        ),
        (
            [
                "--source-db-cert",
                cert.as_str(),
                "--source-db-key",
                garbage,
            ],
            "source-db-key",
        ),
    ] {
        let all = [&["status", "--source-db", source_db], &args[..]].concat();
        let (code, stderr) = fails("source-agent", &all).await;
        assert!(
            stderr.contains(setting) && code == 64,
            "{setting}: {stderr}"
        );
    }
    let (_, stderr) = fails(
        "target-agent",
        &[
            "install",
            "--target-db",
            target_db,
            "--target-db-key",
            key.as_str(),
        ],
    )
    .await;
    assert!(stderr.contains("--target-db-cert"), "{stderr}");
}

/// Has `cluster` serve TLS with a new self-signed certificate for
/// 127.0.0.1 (see [`self_signed`]); returns the certificate's file.
async fn serve_tls(cluster: &support::PgCluster, dir: &std::path::Path, name: &str) -> String {
    let (cert, key, pem) = self_signed(dir, name);
    cluster
        .enable_ssl(&pem, &std::fs::read_to_string(key).unwrap())
        .await;
    cert
}

/// `pgferry-*-agent` sessions of a cluster: (encrypted, all).
async fn agent_sessions_encrypted(client: &tokio_postgres::Client) -> (i64, i64) {
    let row = client
        .query_one(
            "select count(*) filter (where s.ssl), count(*)
             from pg_stat_activity a join pg_stat_ssl s using (pid)
             where a.application_name like 'pgferry-%-agent'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reach_their_databases_over_tls_checked_against_the_given_ca() {
    let mut r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let source_cert = serve_tls(&r.source, dir.path(), "source-db").await;
    let target_cert = serve_tls(&r.target, dir.path(), "target-db").await;
    r.source_db.push_str(" sslmode=require");
    r.target_db.push_str(" sslmode=require");
    r.source_args = vec!["--source-db-ca".into(), source_cert];
    r.target_args = vec!["--target-db-ca".into(), target_cert];
    r.start_agents().await;
    r.src
        .batch_execute(
            "insert into digoal.loc_test select g, 'tls', now(), now() from generate_series(1, 100) g",
        )
        .await
        .unwrap();
    let (count, _) = r.wait_in_sync(Duration::from_secs(60)).await;
    assert_eq!(count, 100);
    for client in [&r.src, &r.dst] {
        let (encrypted, all) = agent_sessions_encrypted(client).await;
        assert!(all > 0, "the agents have sessions");
        assert_eq!(encrypted, all, "every agent session is encrypted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_present_client_certificates_to_databases_that_require_them() {
    let mut r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = support::certs::Authority::new(dir.path(), "db");
    let read = |path: &str| std::fs::read_to_string(path).unwrap();
    for (cluster, name) in [(&r.source, "source-db"), (&r.target, "target-db")] {
        let server = authority.server(name);
        cluster
            .enable_ssl(&read(&server.cert), &read(&server.key))
            .await;
        cluster.require_client_certificates(&authority.ca_pem).await;
    }
    r.source_db.push_str(" sslmode=require");
    r.target_db.push_str(" sslmode=require");
    let ca = ["--source-db-ca", &authority.ca];
    let out = run_command(
        "source-agent",
        &[&["status", "--source-db", &r.source_db], &ca[..]].concat(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("requires a valid client certificate"),
        "the source database refuses a session without a certificate: {stderr}"
    );
    let source = authority.client("source-db-client", &[], "postgres");
    let target = authority.client("target-db-client", &[], APPLIER);
    r.source_args = [
        "--source-db-ca",
        &authority.ca,
        "--source-db-cert",
        &source.cert,
        "--source-db-key",
        &source.key,
    ]
    .map(String::from)
    .to_vec();
    r.target_args = [
        "--target-db-ca",
        &authority.ca,
        "--target-db-cert",
        &target.cert,
        "--target-db-key",
        &target.key,
    ]
    .map(String::from)
    .to_vec();
    r.start_agents().await;
    r.src
        .batch_execute(
            "insert into digoal.loc_test select g, 'cert', now(), now() from generate_series(1, 100) g",
        )
        .await
        .unwrap();
    let (count, _) = r.wait_in_sync(Duration::from_secs(60)).await;
    assert_eq!(count, 100);
    for (client, role) in [(&r.src, "postgres"), (&r.dst, APPLIER)] {
        let row = client
            .query_one(
                "select count(*) filter (where s.client_dn = $1), count(*)
                 from pg_stat_activity a join pg_stat_ssl s using (pid)
                 where a.application_name like 'pgferry-%-agent'",
                &[&format!("/CN={role}")],
            )
            .await
            .unwrap();
        let (certified, all): (i64, i64) = (row.get(0), row.get(1));
        assert!(all > 0, "the agents have sessions");
        assert_eq!(
            certified, all,
            "every agent session presented {role}'s certificate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_certificate_the_ca_did_not_sign_is_refused() {
    let r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = serve_tls(&r.source, dir.path(), "source-db").await;
    let (stranger, _, _) = self_signed(dir.path(), "stranger");
    let status = |ca: String| {
        let source_db = r.source_db.clone();
        async move {
            run_command(
                "source-agent",
                &["status", "--source-db", &source_db, "--source-db-ca", &ca],
            )
            .await
        }
    };
    let refused = status(stranger).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "an untrusted server is refused");
    assert!(stderr.contains("certificate"), "{stderr}");
    expect_success("status with the right CA", &status(cert).await);

    // A CA with a CONNINFO that rules TLS out cannot work: refused by name.
    let disabled = format!("{} sslmode=disable", r.source_db);
    let out = run_command(
        "source-agent",
        &[
            "status",
            "--source-db",
            &disabled,
            "--source-db-ca",
            "/dev/null",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("source-db-ca"), "{stderr}");
}
