//! Hostile and broken peers change nothing. A real target agent is fed many
//! generated streams, each broken somewhere by construction (messages out of
//! order, batch ids that skip or overlap, changes for tables the hello did
//! not name, JSON that is not an object, unknown or missing key columns,
//! copy data without its begin, batches that never end, garbage, truncated
//! and oversized frames), written straight onto HTTP/2 so that any byte can
//! be wrong. After each stream the target table and every progress record
//! are as before and the agent still runs; every so often the real source
//! agent beside them replicates a new row, so the target keeps serving it.
//!
//! `PGFERRY_SEED` replays a run (the seed is printed), and
//! `PGFERRY_HOSTILE_STREAMS` sets how many streams (default 200).

use std::time::Duration;

use bytes::Bytes;
use pgferry_proto::PROTOCOL_VERSION;
use pgferry_proto::wire::{self, source_message::Kind};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use support::Replication;
use support::setup::checksum;

/// The target agent's --max-message-bytes here: an oversized frame claims more.
const MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

/// How a stream is broken; every kind keeps its batch from committing.
#[derive(Debug, Clone)]
enum Fault {
    /// The batch's last chunk is never sent.
    NeverEnds,
    /// A change for a table id the hello did not name.
    UnknownTable(u32),
    /// An inserted row that is not a JSON object.
    NotAnObject(&'static str),
    /// An inserted row with a column the table lacks.
    UnknownColumn,
    /// A change whose row or key lacks the key column (or holds it null).
    KeyMissing(wire::Op, bool),
    /// Copy data without a copy begin.
    CopyWithoutBegin,
    /// A copy begins and the batch ends inside it.
    CopyNeverEnds,
    /// The first batch skips an id.
    SkippedBatch,
    /// A batch starts before the open one ended.
    OverlappingBatch,
    /// A second hello in the middle of a batch.
    SecondHello,
    /// A chunk comes first, before any hello.
    ChunkBeforeHello,
    /// The closing chunk raises a sequence the hello did not name.
    UnknownSequence,
    /// An operation this protocol does not have.
    BadOp(i32),
    /// An insert without its row, or a delete without its key.
    MissingField(wire::Op),
    /// `statement_rows` on a change that holds one object.
    NotRows,
    /// The first piece of a row sent in pieces, whose rest never comes (or
    /// is another change's row).
    PieceLeftOpen,
    /// A hello in another protocol version.
    WrongVersion(u32),
    /// A hello whose table does not match the target's.
    WrongColumns,
    /// A frame of random bytes in place of a message.
    Garbage(Vec<u8>),
    /// A frame whose header promises more bytes than come.
    Truncated,
    /// A frame larger than the target accepts.
    Oversized,
    /// A frame flagged compressed on a stream without compression.
    CompressedFlag,
    /// Bytes that are not HTTP/2 at all.
    NotHttp2(Vec<u8>),
}

/// How the client leaves.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Ends its half of the stream and waits for the answer.
    Close,
    /// Resets the stream.
    Reset,
    /// Drops the connection at once.
    Drop,
}

/// One generated stream.
#[derive(Debug, Clone)]
struct Plan {
    source_id: String,
    /// A whole batch 0 first: applied before by definition, so skipped.
    repeat_first: bool,
    /// Valid changes of the broken batch, around the fault.
    changes: Vec<wire::Change>,
    /// Where among the changes the fault goes.
    at: usize,
    /// Changes per chunk.
    chunk: usize,
    fault: Fault,
    /// Bytes to flip in one encoded message (only with `NeverEnds`, whose
    /// batch cannot close whatever the flips do to it).
    flips: Vec<(usize, u8)>,
    end: End,
}

fn row(id: i64, info: &str) -> String {
    serde_json::json!({"id": id, "info": info, "create_time": null, "modify_time": null})
        .to_string()
}

fn change(op: wire::Op, old_key: Option<String>, new_row: Option<String>) -> wire::Change {
    wire::Change {
        seq: 1,
        table_id: 1,
        op: op.into(),
        old_key,
        new_row,
        statement_rows: 0,
        continued: false,
    }
}

/// A change the target would apply: keys 1-20 (some on the target) or
/// far beyond them.
fn valid_change() -> impl Strategy<Value = wire::Change> {
    let id = prop_oneof![1i64..=20, 1_000_000i64..1_000_100];
    (0..10u8, id, "[a-z ]{0,12}").prop_map(|(kind, id, info)| match kind {
        0..=3 => change(wire::Op::Insert, None, Some(row(id, &info))),
        4..=6 => change(wire::Op::Update, None, Some(row(id, &info))),
        7 => change(
            wire::Op::Update,
            Some(format!(r#"{{"id":{}}}"#, id + 1)),
            Some(row(id, &info)),
        ),
        8 => change(wire::Op::Delete, Some(format!(r#"{{"id":{id}}}"#)), None),
        _ => change(wire::Op::Truncate, None, None),
    })
}

fn fault() -> impl Strategy<Value = Fault> {
    let op = prop_oneof![
        Just(wire::Op::Insert),
        Just(wire::Op::Update),
        Just(wire::Op::Delete)
    ];
    prop_oneof![
        3 => Just(Fault::NeverEnds),
        1 => (2u32..1000).prop_map(Fault::UnknownTable),
        1 => prop_oneof![
            Just("[1]"), Just("42"), Just("\"x\""), Just("null"), Just("{"),
            Just(r#"[{"id":1}]"#), Just(r#"{"id":1}]"#), Just(""),
        ].prop_map(Fault::NotAnObject),
        1 => Just(Fault::UnknownColumn),
        1 => (op.clone(), any::<bool>()).prop_map(|(op, null)| Fault::KeyMissing(op, null)),
        1 => Just(Fault::CopyWithoutBegin),
        1 => Just(Fault::CopyNeverEnds),
        1 => Just(Fault::SkippedBatch),
        1 => Just(Fault::OverlappingBatch),
        1 => Just(Fault::SecondHello),
        1 => Just(Fault::ChunkBeforeHello),
        1 => Just(Fault::UnknownSequence),
        1 => prop_oneof![Just(0), 5i32..1000, Just(-1)].prop_map(Fault::BadOp),
        1 => prop_oneof![Just(wire::Op::Insert), Just(wire::Op::Delete)].prop_map(Fault::MissingField),
        1 => Just(Fault::NotRows),
        1 => Just(Fault::PieceLeftOpen),
        1 => prop_oneof![Just(0u32), 1..PROTOCOL_VERSION, PROTOCOL_VERSION + 1..100u32]
            .prop_map(Fault::WrongVersion),
        1 => Just(Fault::WrongColumns),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Fault::Garbage),
        1 => Just(Fault::Truncated),
        1 => Just(Fault::Oversized),
        1 => Just(Fault::CompressedFlag),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Fault::NotHttp2),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    let end = prop_oneof![Just(End::Close), Just(End::Reset), Just(End::Drop)];
    (
        prop_oneof![Just("rogue".to_string()), "rogue-[a-z]{1,6}"],
        any::<bool>(),
        proptest::collection::vec(valid_change(), 0..12),
        any::<prop::sample::Index>(),
        1..5usize,
        fault(),
        proptest::collection::vec((any::<usize>(), 1..=255u8), 0..4),
        end,
    )
        .prop_map(
            |(source_id, repeat_first, changes, at, chunk, fault, flips, end)| Plan {
                source_id,
                repeat_first,
                at: at.index(changes.len() + 1),
                changes,
                chunk,
                flips: if matches!(fault, Fault::NeverEnds) {
                    flips
                } else {
                    Vec::new()
                },
                fault,
                end,
            },
        )
}

/// The seed table as the source agent announces it.
fn table(columns_right: bool) -> wire::TableSchema {
    let column = |name: &str, sql_type: &str, not_null| wire::Column {
        name: name.into(),
        sql_type: sql_type.into(),
        not_null,
        ..Default::default()
    };
    wire::TableSchema {
        table_id: 1,
        source_name: "digoal.loc_test".into(),
        target_schema: "digoal".into(),
        target_table: "rmt_test".into(),
        columns: vec![
            column("id", "integer", true),
            column("info", if columns_right { "text" } else { "bytea" }, false),
            column("create_time", "timestamp without time zone", false),
            column("modify_time", "timestamp without time zone", false),
        ],
        key_columns: vec!["id".into()],
        ..Default::default()
    }
}

fn hello(plan: &Plan, version: u32, columns_right: bool) -> wire::SourceMessage {
    wire::SourceMessage {
        kind: Some(Kind::Hello(wire::Hello {
            protocol_version: version,
            source_id: plan.source_id.clone(),
            tables: vec![table(columns_right)],
            sequences: Vec::new(),
            epoch: 1,
            inquiry: false,
        })),
    }
}

fn chunk(batch_id: u64, changes: Vec<wire::Change>, last: bool) -> wire::SourceMessage {
    wire::SourceMessage {
        kind: Some(Kind::Chunk(wire::BatchChunk {
            batch_id,
            changes,
            last,
            cut: if last { "cut".into() } else { String::new() },
            epoch: 1,
            ..Default::default()
        })),
    }
}

/// A gRPC length-prefixed frame.
fn frame(compressed: u8, declared: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![compressed];
    out.extend_from_slice(&declared.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn framed(message: &wire::SourceMessage) -> Vec<u8> {
    let body = message.encode_to_vec();
    frame(0, body.len() as u32, &body)
}

/// The bytes a plan sends, frame by frame.
fn frames(plan: &Plan) -> Vec<Vec<u8>> {
    use wire::Op;
    let mut messages: Vec<wire::SourceMessage> = Vec::new();
    let mut raw: Vec<Vec<u8>> = Vec::new();
    match &plan.fault {
        Fault::ChunkBeforeHello => {}
        Fault::WrongVersion(v) => messages.push(hello(plan, *v, true)),
        Fault::WrongColumns => messages.push(hello(plan, pgferry_proto::PROTOCOL_VERSION, false)),
        _ => messages.push(hello(plan, pgferry_proto::PROTOCOL_VERSION, true)),
    }
    if plan.repeat_first {
        messages.push(chunk(0, plan.changes.clone(), true));
    }
    let bad_change = match &plan.fault {
        Fault::UnknownTable(id) => Some(wire::Change {
            table_id: *id,
            ..change(Op::Insert, None, Some(row(1_000_500, "x")))
        }),
        Fault::NotAnObject(text) => Some(change(Op::Insert, None, Some(text.to_string()))),
        Fault::UnknownColumn => Some(change(
            Op::Insert,
            None,
            Some(r#"{"id":1000600,"nope":1}"#.into()),
        )),
        Fault::KeyMissing(op, null) => {
            let key = if *null {
                r#"{"id":null}"#
            } else {
                r#"{"info":"k"}"#
            }
            .to_string();
            let row = if *null {
                r#"{"id":null,"info":"k"}"#
            } else {
                r#"{"info":"k"}"#
            };
            Some(match op {
                Op::Delete => change(Op::Delete, Some(key), None),
                Op::Update => change(Op::Update, Some(key), Some(row.into())),
                _ => change(Op::Insert, None, Some(row.into())),
            })
        }
        Fault::BadOp(op) => Some(wire::Change {
            op: *op,
            ..change(Op::Insert, None, Some(row(1_000_700, "x")))
        }),
        Fault::MissingField(op) => Some(change(*op, None, None)),
        Fault::NotRows => Some(wire::Change {
            statement_rows: 3,
            ..change(Op::Insert, None, Some(row(1_000_800, "x")))
        }),
        Fault::PieceLeftOpen => Some(wire::Change {
            continued: true,
            ..change(Op::Insert, None, Some(r#"{"id": 1000900, "info": "#.into()))
        }),
        _ => None,
    };
    let mut changes = plan.changes.clone();
    if let Some(bad) = bad_change {
        changes.insert(plan.at, bad);
    }
    let batch = if matches!(plan.fault, Fault::SkippedBatch) {
        2
    } else {
        1
    };
    let pieces: Vec<Vec<wire::Change>> = changes.chunks(plan.chunk).map(<[_]>::to_vec).collect();
    let pieces = if pieces.is_empty() {
        vec![Vec::new()]
    } else {
        pieces
    };
    let at_chunk = plan.at / plan.chunk;
    let copy = |begin, end| wire::CopyData {
        table_id: 1,
        begin,
        data: b"1000900\tcopied\t\\N\t\\N\n".to_vec(),
        end,
        ..Default::default()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let mut message = chunk(
            batch,
            piece.clone(),
            last && !matches!(plan.fault, Fault::NeverEnds),
        );
        if i == at_chunk.min(pieces.len() - 1) {
            match &plan.fault {
                Fault::CopyWithoutBegin => set_copy(&mut message, copy(false, true)),
                Fault::CopyNeverEnds => set_copy(&mut message, copy(true, false)),
                Fault::OverlappingBatch => messages.push(chunk(batch + 1, Vec::new(), false)),
                Fault::SecondHello => {
                    messages.push(hello(plan, pgferry_proto::PROTOCOL_VERSION, true))
                }
                Fault::Garbage(bytes) => raw.push(frame(0, bytes.len() as u32, bytes)),
                Fault::Truncated => raw.push(frame(0, 100, b"\x12\x05")),
                Fault::Oversized => raw.push(frame(0, MAX_MESSAGE_BYTES + 1, b"\x12\x00")),
                Fault::CompressedFlag => {
                    let body = message.encode_to_vec();
                    raw.push(frame(1, body.len() as u32, &body));
                }
                _ => {}
            }
        }
        if last
            && let (Fault::UnknownSequence, Some(Kind::Chunk(c))) = (&plan.fault, &mut message.kind)
        {
            c.sequences.push(wire::SequenceValue {
                seq_id: 9,
                last_value: 5,
            });
        }
        if !raw.is_empty() {
            // The broken frame stands in for this chunk, and ends what the
            // target can read of the stream.
            break;
        }
        messages.push(message);
    }
    let mut out: Vec<Vec<u8>> = messages.iter().map(framed).collect();
    if let Some(target) = out.len().checked_sub(1) {
        for (at, mask) in &plan.flips {
            let message = &mut out[target];
            if message.len() > 5 {
                let i = 5 + at % (message.len() - 5);
                message[i] ^= mask;
            }
        }
    }
    out.extend(raw);
    out
}

fn set_copy(message: &mut wire::SourceMessage, copy: wire::CopyData) {
    if let Some(Kind::Chunk(chunk)) = &mut message.kind {
        chunk.copy = Some(copy);
    }
}

/// Sends a plan's bytes to the target agent at `port`; returns the status
/// the target ended the stream with, as far as it came.
async fn send(port: u16, plan: &Plan) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("target agent reachable");
    if let Fault::NotHttp2(bytes) = &plan.fault {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tcp;
        tcp.write_all(bytes).await.ok();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
            .await
            .ok();
        return "not HTTP/2: connection closed".into();
    }
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("HTTP/2 ready");
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://127.0.0.1:{port}/pgferry.v1.Replication/Replicate"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).expect("request");
    for frame in frames(plan) {
        body.reserve_capacity(frame.len());
        if body.send_data(Bytes::from(frame), false).is_err() {
            break;
        }
    }
    match plan.end {
        End::Close => {
            body.send_data(Bytes::new(), true).ok();
        }
        End::Reset => body.send_reset(h2::Reason::CANCEL),
        End::Drop => {
            tokio::time::sleep(Duration::from_millis(20)).await;
            connection.abort();
            return "dropped the connection".into();
        }
    }
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let response = response.await.map_err(|e| e.to_string())?;
        let status = response.headers().get("grpc-message").cloned();
        let mut body = response.into_body();
        while let Some(data) = body.data().await {
            if data.is_err() {
                break;
            }
        }
        let trailers = body.trailers().await.ok().flatten();
        Ok::<_, String>(format!(
            "{:?}",
            trailers
                .as_ref()
                .and_then(|t| t.get("grpc-message"))
                .or(status.as_ref())
        ))
    })
    .await;
    connection.abort();
    match answer {
        Ok(Ok(status)) => status,
        Ok(Err(error)) => error,
        Err(_) => "no answer in 10 s".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_streams_change_nothing_and_the_real_source_keeps_replicating() {
    let (seed, rng) = support::seeded();
    println!("PGFERRY_SEED={seed}");
    let streams: usize = std::env::var("PGFERRY_HOSTILE_STREAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut r = Replication::new().await;
    r.target_args = vec!["--max-message-bytes".into(), MAX_MESSAGE_BYTES.to_string()];
    r.src
        .batch_execute(
            "insert into digoal.loc_test select g, 'kept ' || g, now(), now() from generate_series(1, 20) g",
        )
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_in_sync(Duration::from_secs(60)).await;

    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = plan();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..streams {
        let plan = strategy.new_tree(&mut runner).unwrap().current();
        let kind = format!("{:?}", plan.fault);
        let kind = kind.split(['(', ' ']).next().unwrap_or_default().to_owned();
        *kinds.entry(kind).or_default() += 1;
        let answer = send(r.target_port, &plan).await;
        r.target_agent().assert_running();
        let (source, target) = r.checksums().await;
        assert_eq!(
            source, target,
            "stream {i} (seed {seed}) changed the target: {plan:?}\nanswer: {answer}"
        );
        let moved: i64 = r
            .dst
            .query_one(
                "select count(*) from pgferry.progress where source_id <> 'dc1' and last_batch <> 0",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            moved, 0,
            "stream {i} (seed {seed}) moved a progress record: {plan:?}\nanswer: {answer}"
        );
        if i % 50 == 49 {
            r.src
                .execute(
                    "insert into digoal.loc_test values ($1, 'still served', now(), now())",
                    &[&(100 + i as i32)],
                )
                .await
                .unwrap();
            r.wait_in_sync(Duration::from_secs(60)).await;
        }
    }
    println!("streams by fault: {kinds:?}");
    r.src
        .execute("delete from digoal.loc_test where id = 1", &[])
        .await
        .unwrap();
    let (count, _) = r.wait_in_sync(Duration::from_secs(60)).await;
    assert_eq!(count, checksum(&r.src, "digoal.loc_test").await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_left_open_is_rolled_back_after_the_idle_timeout_and_other_sources_go_on() {
    let mut r = Replication::new().await;
    r.target_args = vec![
        "--batch-idle-timeout".into(),
        "2s".into(),
        // Every change goes to the database at once, so the open batch
        // holds its row's lock.
        "--compact-window-bytes".into(),
        "0".into(),
    ];
    r.src
        .batch_execute("insert into digoal.loc_test values (1, 'first', now(), now())")
        .await
        .unwrap();
    r.start_agents().await;
    r.wait_in_sync(Duration::from_secs(60)).await;

    let plan = Plan {
        source_id: "idler".into(),
        repeat_first: false,
        changes: Vec::new(),
        at: 0,
        chunk: 1,
        fault: Fault::NeverEnds,
        flips: Vec::new(),
        end: End::Close,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello(&plan, pgferry_proto::PROTOCOL_VERSION, true))
        .await
        .unwrap();
    let update = change(wire::Op::Update, None, Some(row(1, "idler")));
    tx.send(chunk(1, vec![update], false)).await.unwrap();
    let mut client = wire::replication_client::ReplicationClient::connect(format!(
        "http://127.0.0.1:{}",
        r.target_port
    ))
    .await
    .unwrap();
    let mut answers = client
        .replicate(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("hello accepted")
        .into_inner();

    // The real source's change of the same row waits behind the idle batch
    // until the target gives up on it.
    r.src
        .batch_execute("update digoal.loc_test set info = 'second' where id = 1")
        .await
        .unwrap();
    let status = loop {
        match answers.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("--batch-idle-timeout"),
        "{status:?}"
    );
    r.wait_in_sync(Duration::from_secs(30)).await;
    drop(tx);
}
