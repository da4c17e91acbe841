//! Trust: the target agent serves only authenticated source agents beyond
//! loopback, mutual TLS ties each source id to its certificate, refused
//! peers are logged and counted (never their token), health tells whether
//! the target can replicate, and both agents answer reflection.

use std::time::Duration;

use support::certs::Authority;
use support::setup::{counter, free_port, health, metrics};
use support::{Agent, Replication, run_command};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_target_agent_refuses_to_listen_beyond_loopback() {
    let r = Replication::new().await;
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let base = ["run", "--target-db", &r.target_db, "--listen", &listen];
    let out = run_command("target-agent", &base).await;
    assert_eq!(out.status.code(), Some(64), "a setting error exits 64");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for setting in [
        "listen",
        "--auth-token-file",
        "--tls-client-ca",
        "--allow-unauthenticated",
    ] {
        assert!(stderr.contains(setting), "names {setting}: {stderr}");
    }

    let args: Vec<String> = base
        .iter()
        .map(|a| a.to_string())
        .chain(["--allow-unauthenticated".to_string()])
        .collect();
    let mut agent = Agent::spawn("target-agent", &args);
    support::setup::wait_serving(&mut agent, port).await;
    assert!(
        agent.log().contains("--allow-unauthenticated"),
        "warns at start: {}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_a_source_whose_certificate_names_its_source_id() {
    let mut r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new(dir.path(), "pgferry");
    let stranger = Authority::new(dir.path(), "stranger");
    let server = ca.server("target");
    let dc1 = ca.client("dc1", &["dc1"], "dc1");
    let dc2 = ca.client("dc2", &["dc2"], "dc2");
    let forged = stranger.client("forged-dc1", &["dc1"], "dc1");
    let (metrics_port, health_port) = (free_port(), free_port());
    r.target_args = vec![
        "--tls-cert".into(),
        server.cert,
        "--tls-key".into(),
        server.key,
        "--tls-client-ca".into(),
        ca.ca.clone(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
        "--health-listen".into(),
        format!("127.0.0.1:{health_port}"),
    ];
    r.target_url = format!("https://127.0.0.1:{}", r.target_port);
    r.target_ca = Some(ca.ca_pem.clone());
    let trust = vec!["--tls-ca".to_string(), ca.ca.clone()];
    let with = |pair: &support::certs::Pair| {
        [
            trust.clone(),
            vec![
                "--tls-cert".into(),
                pair.cert.clone(),
                "--tls-key".into(),
                pair.key.clone(),
            ],
        ]
        .concat()
    };

    r.source_args = trust.clone();
    r.start_agents().await;
    // Health in plain gRPC beside the TLS listener, as a Kubernetes probe
    // asks it.
    assert_eq!(
        support::setup::health(&format!("http://127.0.0.1:{health_port}")).await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'x', now(), now())")
        .await
        .unwrap();
    for (args, parts) in [
        (None, vec!["client certificate", "none presented"]),
        (
            Some(with(&dc2)),
            vec!["source id \"dc1\"", "not one the client certificate names"],
        ),
        (
            Some(with(&forged)),
            vec![
                "not accepted by this target's --tls-client-ca",
                "UnknownIssuer",
            ],
        ),
    ] {
        if let Some(args) = args {
            r.source_agent().kill9().await;
            r.source_args = args;
            r.start_source_agent().await;
        }
        let status = r.wait_for_error(&parts).await;
        println!("status error: {}", status["last_error"]);
        assert_eq!(r.target_progress().await, 0, "nothing applied");
    }
    // A peer that does not speak TLS at all.
    {
        use tokio::io::AsyncWriteExt;
        let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", r.target_port))
            .await
            .unwrap();
        plain.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        support::wait_until("the handshake refused", Duration::from_secs(10), || async {
            let page = metrics(metrics_port).await;
            (counter(&page, "pgferry_refused_peers_total{reason=\"tls\"}") >= 1.0).then_some(())
        })
        .await;
    }
    let page = metrics(metrics_port).await;
    for reason in ["certificate", "source_id"] {
        let name = format!("pgferry_refused_peers_total{{reason=\"{reason}\"}}");
        assert!(counter(&page, &name) >= 1.0, "{name} counted:\n{page}");
    }
    let log = r.target_agent().log();
    assert!(
        log.contains("refused a peer") && log.contains("127.0.0.1"),
        "{log}"
    );

    r.source_agent().kill9().await;
    r.source_args = with(&dc1);
    r.start_source_agent().await;
    r.wait_in_sync(Duration::from_secs(60)).await;

    // Rotating the client CA: a file with the old and the new CA accepts
    // certificates of both.
    let both = dir.path().join("both-ca.pem");
    std::fs::write(&both, format!("{}{}", ca.ca_pem, stranger.ca_pem)).unwrap();
    r.target_agent().kill9().await;
    let at = r
        .target_args
        .iter()
        .position(|a| a == "--tls-client-ca")
        .unwrap();
    r.target_args[at + 1] = both.to_str().unwrap().into();
    r.start_target_agent().await;
    r.source_agent().kill9().await;
    r.source_args = with(&forged);
    r.start_source_agent().await;
    r.src
        .batch_execute("insert into digoal.loc_test values (2, 'new CA', now(), now())")
        .await
        .unwrap();
    r.wait_in_sync(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_counted_and_no_token_is_logged() {
    let mut r = Replication::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (token, wrong) = (dir.path().join("token"), dir.path().join("wrong"));
    std::fs::write(&token, "s3cret-token\n").unwrap();
    std::fs::write(&wrong, "s3cret-guess").unwrap();
    let metrics_port = free_port();
    r.target_args = vec![
        "--auth-token-file".into(),
        token.to_str().unwrap().into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    // A token is enough to listen beyond loopback.
    r.target_listen = format!("0.0.0.0:{}", r.target_port);
    r.source_args = vec!["--auth-token-file".into(), wrong.to_str().unwrap().into()];
    let right = vec!["--auth-token-file".into(), token.to_str().unwrap().into()];
    r.refused_until_the_source_gets(&["missing or wrong token"], right)
        .await;
    let page = metrics(metrics_port).await;
    let name = "pgferry_refused_peers_total{reason=\"token\"}";
    assert!(counter(&page, name) >= 1.0, "{name} counted:\n{page}");
    for agent in [r.target_agent().log(), r.source_agent().log()] {
        assert!(!agent.contains("s3cret"), "a token in a log:\n{agent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_target_lacks_pgferrys_schema_or_has_an_older_one() {
    let r = Replication::new().await;
    let set_version = |version: i32| {
        let dst = &r.dst;
        async move {
            dst.execute(
                "update pgferry.schema_version set version = $1",
                &[&version],
            )
            .await
            .unwrap();
        }
    };
    let current: i32 = r
        .dst
        .query_one("select version from pgferry.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    set_version(current - 1).await;
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let mut agent = Agent::spawn(
        "target-agent",
        &[
            "run".into(),
            "--target-db".into(),
            r.target_db.clone(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ],
    );
    let status_is = |want: ServingStatus| {
        let address = address.clone();
        move || {
            let address = address.clone();
            async move { (health(&address).await == Some(want)).then_some(()) }
        }
    };
    let wait = Duration::from_secs(20);
    support::wait_until("health reachable", wait, || async {
        health(&address).await.map(|_| ())
    })
    .await;
    // Its first probe has run: the answer is the database's, not the default.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        health(&address).await,
        Some(ServingStatus::NotServing),
        "an older schema"
    );
    set_version(current).await;
    support::wait_until("serving", wait, status_is(ServingStatus::Serving)).await;
    r.dst
        .batch_execute("drop schema pgferry cascade")
        .await
        .unwrap();
    support::wait_until("not serving", wait, status_is(ServingStatus::NotServing)).await;
    support::setup::expect_success(
        "install",
        &run_command("target-agent", &["install", "--target-db", &r.target_db]).await,
    );
    support::wait_until("serving again", wait, status_is(ServingStatus::Serving)).await;
    agent.assert_running();
    assert!(agent.log().contains("not installed"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_agents_list_their_services_through_reflection() {
    let mut r = Replication::new().await;
    r.start_agents().await;
    let target = services(&format!("http://127.0.0.1:{}", r.target_port)).await;
    for service in ["pgferry.v1.Replication", "grpc.health.v1.Health"] {
        assert!(target.iter().any(|s| s == service), "{target:?}");
    }
    let source = services(&format!("http://127.0.0.1:{}", r.source_health_port)).await;
    assert!(
        source.iter().any(|s| s == "grpc.health.v1.Health"),
        "{source:?}"
    );
}

/// The services `address` lists through grpc.reflection.v1, as `grpcurl
/// list` asks.
async fn services(address: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel = tonic::transport::Endpoint::from_shared(address.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("reflection reachable");
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = answers.message().await.unwrap().expect("one answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("not a service list: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_s_search_path_cannot_take_over_the_capture_functions() {
    let mut r = Replication::new().await;
    r.start_agents().await;
    // Functions and an operator that would match the capture functions'
    // calls better than pg_catalog's, were those calls not qualified: run
    // as the functions' owner, each would record who it ran as.
    r.src
        .batch_execute(
            "create role mallory login password 'mallory-pw';
             grant usage on schema digoal to mallory;
             grant select, insert, update, delete on digoal.loc_test to mallory;
             create schema evil authorization mallory;
             create table evil.pwned (who text);
             grant insert on evil.pwned to public;
             create function evil.pwn() returns boolean language sql as
               $$ insert into evil.pwned values (current_user) returning true $$;
             create function evil.row_to_json(record) returns json language plpgsql as
               $$ begin perform evil.pwn(); return '{}'; end $$;
             create function evil.to_jsonb(anyelement) returns jsonb language plpgsql as
               $$ begin perform evil.pwn(); return '{}'; end $$;
             create function evil.json_build_object(text, jsonb) returns json language sql as
               $$ select case when evil.pwn() then '{}'::pg_catalog.json end $$;
             create function evil.int4eq(integer, integer) returns boolean language sql as
               $$ select evil.pwn() $$;
             create operator evil.= (function = evil.int4eq, leftarg = integer, rightarg = integer);
             alter function evil.pwn() owner to mallory;",
        )
        .await
        .unwrap();
    let mallory = r.source.conninfo("digoal", "mallory", "mallory-pw");
    let (client, connection) = tokio_postgres::connect(&mallory, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "set search_path = evil, pg_catalog;
             insert into digoal.loc_test values (1, 'one', now(), now());
             insert into digoal.loc_test select g, 'many', now(), now() from generate_series(2, 5) g;
             update digoal.loc_test set info = 'changed' where id operator(pg_catalog.=) 1;
             update digoal.loc_test set info = 'all changed';
             delete from digoal.loc_test where id operator(pg_catalog.=) 2;
             delete from digoal.loc_test where id > 3;",
        )
        .await
        .unwrap();
    r.wait_in_sync(Duration::from_secs(60)).await;
    // Mallory's functions may run as mallory (her own statements); never
    // as the capture functions' owner.
    let pwned: i64 = r
        .src
        .query_one(
            "select count(*) from evil.pwned where who <> 'mallory'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pwned, 0, "a writer's function ran inside capture");
}
