//! Versioned install: a later version's `install` upgrades in place, keeping
//! data; running it again changes nothing; an older binary refuses a newer
//! schema.

use std::time::Duration;

use pgferry_runtime::install::{InstallError, Schema, Side, install, is_current};
use support::setup::{APPLIER, SEED_TABLE, expect_success, source_agent};
use support::{Agent, PgCluster, Replication, run_command};

/// pgferry's source schema as first released (version 1, its functions
/// inline), which installations in the field may still have.
const SOURCE_V1: &str = include_str!("fixtures/source_schema_v1.sql");

/// A source schema of migrations alone.
fn migrations<'a>(migrations: &'a [(i32, &'a str)]) -> Schema<'a> {
    Schema {
        side: Side::Source,
        migrations,
        functions: &[],
        after_change: "",
    }
}

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

    assert_eq!(install(&mut client, &migrations(v1)).await.unwrap(), (0, 1));
    assert_eq!(
        install(&mut client, &migrations(v1)).await.unwrap(),
        (1, 1),
        "a second install is a no-op"
    );
    assert!(matches!(
        is_current(&client, &migrations(v2)).await,
        Err(InstallError::Outdated { found: 1, known: 2 })
    ));
    assert_eq!(
        install(&mut client, &migrations(v2)).await.unwrap(),
        (1, 2),
        "v2 runs only its new script"
    );
    assert!(is_current(&client, &migrations(v2)).await.unwrap());
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
        install(&mut client, &migrations(v1)).await,
        Err(InstallError::TooNew { found: 2, known: 1 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_refuse_a_schema_older_than_theirs_until_install_upgrades_it() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let mut client = cluster.connect("postgres").await;
    install(&mut client, &migrations(&[(1, SOURCE_V1)]))
        .await
        .unwrap();
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
    let newest = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../source-agent/sql/migrations"
    ))
    .expect("the migrations")
    .count() as i32;
    assert_eq!(version, newest, "upgraded to the newest version");
}

/// The catalog of schema pgferry and of the capture triggers, as sorted
/// lines: functions with a digest of their definitions, columns, indexes,
/// constraints, storage options, and the triggers on `digoal.loc_test`.
async fn catalog(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client
        .query(
            "select 'function ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
               from pg_proc p where p.pronamespace = 'pgferry'::regnamespace
             union all
             select format('column %s.%s %s %s %s %s %s', table_name, column_name, data_type,
                           is_nullable, column_default, is_identity, identity_generation)
               from information_schema.columns where table_schema = 'pgferry'
             union all
             select 'index ' || indexdef from pg_indexes where schemaname = 'pgferry'
             union all
             select format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
               from pg_constraint where connamespace = 'pgferry'::regnamespace
             union all
             select format('options %s %s %s', c.relname, c.reloptions, t.reloptions)
               from pg_class c left join pg_class t on t.oid = c.reltoastrelid
              where c.relnamespace = 'pgferry'::regnamespace and c.relkind = 'r'
             union all
             select format('trigger %s %s %s', tgname, tgenabled, pg_get_triggerdef(oid))
               from pg_trigger where tgrelid = 'digoal.loc_test'::regclass
             order by 1",
            &[],
        )
        .await
        .expect("catalog");
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_from_the_first_schema_with_changes_queued_ends_like_a_fresh_install_and_ships_them()
 {
    let mut r = Replication::new().await;
    r.start_target_agent().await;
    r.source
        .connect("postgres")
        .await
        .batch_execute("create database upgraded")
        .await
        .unwrap();
    r.dst
        .batch_execute(&format!(
            "create table digoal.old_test {SEED_TABLE}; alter table digoal.old_test owner to {APPLIER};"
        ))
        .await
        .unwrap();
    let mut old = r.source.connect("upgraded").await;
    old.batch_execute(&format!(
        "create schema digoal; create table digoal.loc_test {SEED_TABLE};"
    ))
    .await
    .unwrap();
    install(&mut old, &migrations(&[(1, SOURCE_V1)]))
        .await
        .unwrap();
    // Registered as version 1's add-table did, its (empty) copy already
    // acknowledged, then written to: some changes cut into a batch that is
    // not acknowledged, the rest not cut at all.
    old.batch_execute(
        "insert into pgferry.tables (relid, source_schema, source_name, target_schema,
                                     target_name, key_columns, state)
         values ('digoal.loc_test'::regclass, 'digoal', 'loc_test', 'digoal', 'old_test',
                 '{id}', 'replicating');
         select pgferry.attach(table_id) from pgferry.tables;
         insert into digoal.loc_test select g, 'v1 ' || g, now(), now() from generate_series(1, 100) g;
         update digoal.loc_test set info = info || ' updated' where id % 3 = 0;
         select pgferry.cut_batch(100);
         delete from digoal.loc_test where id % 5 = 0;
         update digoal.loc_test set id = id + 1000 where id % 7 = 0;",
    )
    .await
    .unwrap();
    let queued: i64 = old
        .query_one("select count(*) from pgferry.queue", &[])
        .await
        .unwrap()
        .get(0);
    assert!(queued > 100, "changes queued before the upgrade: {queued}");
    let newest = old
        .query_one(
            "select batch_id, snapshot::text from pgferry.batch order by batch_id desc limit 1",
            &[],
        )
        .await
        .unwrap();
    let (newest_batch, cut_before): (i64, String) = (newest.get(0), newest.get(1));

    let upgraded_db = r.source.conninfo("upgraded", "postgres", "");
    source_agent(&["install", "--source-db", &upgraded_db]).await;
    let old = r.source.connect("upgraded").await;
    // The one target is now `default`, with the batch cut before the
    // upgrade (and the progress of the singleton it replaced).
    let default = old
        .query_one(
            "select t.name, t.address is null, t.acked_batch, b.snapshot::text
             from pgferry.targets t join pgferry.batch b using (target_id)
             where b.batch_id = $1",
            &[&newest_batch],
        )
        .await
        .unwrap();
    assert_eq!(default.get::<_, &str>(0), "default");
    assert!(
        default.get::<_, bool>(1),
        "its address comes from run --target"
    );
    assert_eq!(default.get::<_, i64>(2), 0);
    assert_eq!(
        default.get::<_, String>(3),
        cut_before,
        "batch {newest_batch} kept its cut"
    );
    let kept: i64 = old
        .query_one("select count(*) from pgferry.queue", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, queued, "the upgrade kept every queued change");
    let fresh = catalog(&r.src).await;
    assert_eq!(
        catalog(&old).await,
        fresh,
        "an upgraded schema is a fresh one"
    );
    let functions = fresh.iter().filter(|l| l.starts_with("function")).count();
    let triggers = fresh.iter().filter(|l| l.starts_with("trigger")).count();
    assert!(functions >= 10 && triggers >= 4, "{fresh:#?}");

    let health = support::setup::free_port();
    let mut agent = Agent::spawn(
        "source-agent",
        &[
            "run".into(),
            "--source-db".into(),
            upgraded_db,
            "--target".into(),
            r.target_url.clone(),
            "--source-id".into(),
            "upgraded".into(),
            "--health-listen".into(),
            format!("127.0.0.1:{health}"),
        ],
    );
    support::setup::wait_serving(&mut agent, health).await;
    support::wait_until(
        "the queued changes reached the target",
        Duration::from_secs(60),
        || async {
            let source = support::setup::checksum(&old, "digoal.loc_test").await;
            let target = support::setup::checksum(&r.dst, "digoal.old_test").await;
            (source == target && source.0 > 0).then_some(())
        },
    )
    .await;
    let progress: i64 = r
        .dst
        .query_one(
            "select last_batch from pgferry.progress where source_id = 'upgraded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        progress >= newest_batch,
        "the batches cut before the upgrade were applied"
    );
}

/// The newest migration of an agent's schema (its scripts are numbered
/// from 1, one file each).
fn newest_migration(agent: &str) -> i32 {
    std::fs::read_dir(format!(
        "{}/../{agent}/sql/migrations",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the migrations")
    .count() as i32
}

/// Each side's recorded version, by side.
async fn versions(client: &tokio_postgres::Client) -> Vec<(String, i32)> {
    client
        .query(
            "select side, version from pgferry.schema_version order by side",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_install_side_by_side_in_one_database_each_with_its_own_version() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let client = cluster.connect("postgres").await;
    let db = cluster.conninfo("postgres", "postgres", "");
    let install_side = |agent: &'static str, flag: &'static str| {
        let db = db.clone();
        async move {
            expect_success(
                &format!("{agent} install"),
                &run_command(agent, &["install", flag, &db]).await,
            );
        }
    };
    // A target installed by a binary from before the sides could share a
    // database: its version says nobody's.
    install_side("target-agent", "--target-db").await;
    client
        .batch_execute("alter table pgferry.schema_version drop column side")
        .await
        .unwrap();
    for _ in 0..2 {
        install_side("source-agent", "--source-db").await;
        install_side("target-agent", "--target-db").await;
    }
    let both = vec![
        ("source".to_string(), newest_migration("source-agent")),
        ("target".to_string(), newest_migration("target-agent")),
    ];
    assert_eq!(versions(&client).await, both);
    // Each side's agent takes the database as installed for it.
    client
        .batch_execute("create table t (id int primary key)")
        .await
        .unwrap();
    source_agent(&["add-table", "--source-db", &db, "public.t"]).await;
    let status = source_agent(&["status", "--source-db", &db]).await;
    assert!(status.contains("public.t"), "{status}");
}
