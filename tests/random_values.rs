//! Random values of every supported type, with random NULL and JSON null
//! mixes, written through the initial copy, inserts and updates (whole, by a
//! column list and by a row filter), compared row by row as `t::text`.
//! `PGFERRY_SEED` replays a run.

use proptest::prelude::Rng;
use proptest::test_runner::TestRng;
use support::Replication;
use support::setup::source_agent;

use crate::exact::{create_on_both, wait_rows_equal};

/// A generator of an SQL expression of one type.
type Value = fn(&mut TestRng) -> String;

/// The columns, each with a generator of an SQL expression of its type.
const COLUMNS: &[(&str, &str, Value)] = &[
    ("i4", "int", |g| (g.next_u64() as i32).to_string()),
    ("i8", "bigint", |g| (g.next_u64() as i64).to_string()),
    ("nu", "numeric", numeric),
    ("f8", "float8", float),
    ("tx", "text", |g| quote(&text(g))),
    ("by", "bytea", bytea),
    ("bo", "boolean", |g| (g.next_u64() % 2 == 0).to_string()),
    ("da", "date", date),
    ("ts", "timestamptz", timestamp),
    ("iv", "interval", interval),
    ("uu", "uuid", |g| {
        format!(
            "'{:032x}'::uuid",
            u128::from(g.next_u64()) << 64 | u128::from(g.next_u64())
        )
    }),
    ("js", "json", |g| quote(&json(g, 3, true))),
    ("jb", "jsonb", |g| quote(&json(g, 3, false))),
    ("ar", "int[]", array),
    ("ja", "jsonb[]", jsonb_array),
    ("hs", "hstore", hstore),
    ("pa", "digoal.pair", |g| {
        format!(
            "row({}, {})::digoal.pair",
            maybe(g, |g| (g.next_u64() as i16).to_string()),
            maybe(g, |g| quote(&text(g)))
        )
    }),
    ("dj", "digoal.doc", |g| {
        format!("{}::digoal.doc", quote(&json(g, 2, false)))
    }),
    ("xm", "xml", |g| {
        format!("xmlelement(name x, {})", quote(&text(g)))
    }),
];

/// A number below `n`.
fn below(g: &mut TestRng, n: u64) -> u64 {
    g.next_u64() % n
}

/// NULL one time in six, else `value`.
fn maybe(g: &mut TestRng, value: impl FnOnce(&mut TestRng) -> String) -> String {
    if below(g, 6) == 0 {
        "null".into()
    } else {
        value(g)
    }
}

/// An SQL string literal (standard_conforming_strings: only `'` doubles).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Text with what breaks careless paths: quotes, backslashes, escapes as
/// text, newlines, tabs, accents, emoji, and nothing (no NUL: text cannot
/// hold it).
fn text(g: &mut TestRng) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", " ", "'", "\"", "\\", "\\u0000", "\\n", "\n", "\t", "é", "ß", "日本", "🦀", ",",
        "{", "}", "(", ")", "=>", "NULL", "null", "<", "&", "0",
    ];
    let len = below(g, 12);
    (0..len)
        .map(|_| PIECES[below(g, PIECES.len() as u64) as usize])
        .collect()
}

fn numeric(g: &mut TestRng) -> String {
    match below(g, 8) {
        0 => "'NaN'".into(),
        1 => "-0.000".into(),
        _ => format!(
            "{}{}.{:0width$}",
            if below(g, 2) == 0 { "-" } else { "" },
            g.next_u64() >> below(g, 64),
            below(g, 1_000_000),
            width = below(g, 7) as usize
        ),
    }
}

fn float(g: &mut TestRng) -> String {
    const SPECIAL: &[&str] = &[
        "'-0'",
        "'NaN'",
        "'Infinity'",
        "'-Infinity'",
        "'1e-310'",
        "'5e-324'",
    ];
    if below(g, 4) == 0 {
        return SPECIAL[below(g, SPECIAL.len() as u64) as usize].into();
    }
    let value = f64::from_bits(g.next_u64());
    if value.is_finite() {
        format!("'{value:e}'::float8")
    } else {
        "'0'".into()
    }
}

fn bytea(g: &mut TestRng) -> String {
    let bytes: String = (0..below(g, 16))
        .map(|_| format!("{:02x}", below(g, 256)))
        .collect();
    format!("'\\x{bytes}'::bytea")
}

fn date(g: &mut TestRng) -> String {
    match below(g, 10) {
        0 => "'infinity'::date".into(),
        1 => "'4713-01-01 BC'::date".into(),
        _ => format!(
            "date '2000-01-01' + {}",
            below(g, 2_000_000) as i64 - 1_000_000
        ),
    }
}

fn timestamp(g: &mut TestRng) -> String {
    match below(g, 10) {
        0 => "'-infinity'::timestamptz".into(),
        _ => format!(
            "timestamptz '2000-01-01 00:00:00+00' + {} * interval '1 microsecond'",
            (g.next_u64() >> 8) as i64 - (1 << 54)
        ),
    }
}

fn interval(g: &mut TestRng) -> String {
    format!(
        "make_interval({}, {}, 0, {}, 0, 0, {})",
        below(g, 100) as i64 - 50,
        below(g, 30) as i64 - 15,
        below(g, 60) as i64 - 30,
        below(g, 100_000) as f64 / 1000.0 - 50.0
    )
}

/// JSON text: whitespace kept, duplicate keys, escapes, `null` at any
/// depth; `\u0000` only where json (not jsonb) takes it.
fn json(g: &mut TestRng, depth: u32, nul: bool) -> String {
    let space = |g: &mut TestRng| [" ", "", "  ", "\n"][below(g, 4) as usize];
    let string = |g: &mut TestRng| {
        const STRINGS: &[&str] = &[
            r#""""#,
            r#""x""#,
            r#""\u00e9""#,
            r#""é""#,
            r#""a\"b""#,
            r#""\\""#,
            r#""\n""#,
            r#""\ud83e\udd80""#,
        ];
        if nul && below(g, 8) == 0 {
            r#""\u0000""#.to_string()
        } else {
            STRINGS[below(g, STRINGS.len() as u64) as usize].to_string()
        }
    };
    let value = match if depth == 0 { below(g, 5) } else { below(g, 7) } {
        0 => "null".to_string(),
        1 => ["true", "false"][below(g, 2) as usize].to_string(),
        2 => ["0", "-1.50", "1e3", "12345678901234567890.123"][below(g, 4) as usize].to_string(),
        3 | 4 => string(g),
        5 => {
            let items: Vec<String> = (0..below(g, 4)).map(|_| json(g, depth - 1, nul)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let fields: Vec<String> = (0..below(g, 4))
                .map(|_| format!("{}{}:{}", string(g), space(g), json(g, depth - 1, nul)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
    };
    format!("{}{value}{}", space(g), space(g))
}

fn array(g: &mut TestRng) -> String {
    let lower = below(g, 7) as i64 - 3;
    let len = below(g, 4) as i64;
    if len == 0 {
        return "'{}'::int[]".into();
    }
    let items: Vec<String> = (0..len)
        .map(|_| maybe(g, |g| (g.next_u64() as i32).to_string()).to_uppercase())
        .collect();
    format!(
        "'[{lower}:{}]={{{}}}'::int[]",
        lower + len - 1,
        items.join(",")
    )
}

fn jsonb_array(g: &mut TestRng) -> String {
    let items: Vec<String> = (0..below(g, 3))
        .map(|_| maybe(g, |g| format!("{}::jsonb", quote(&json(g, 1, false)))))
        .collect();
    format!("array[{}]::jsonb[]", items.join(","))
}

fn hstore(g: &mut TestRng) -> String {
    let pairs: Vec<String> = (0..below(g, 3))
        .map(|_| {
            let key = quote(&text(g));
            let value = maybe(g, |g| quote(&text(g)));
            format!("hstore({key}, {value})")
        })
        .collect();
    if pairs.is_empty() {
        "''::hstore".into()
    } else {
        pairs.join(" || ")
    }
}

/// One row's values (after its id).
fn row(g: &mut TestRng) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|(_, _, value)| maybe(g, *value))
        .collect()
}

fn insert(table: &str, ids: std::ops::Range<u64>, g: &mut TestRng) -> String {
    let rows: Vec<String> = ids
        .map(|id| format!("({id}, {})", row(g).join(", ")))
        .collect();
    format!("insert into {table} values {};", rows.join(", "))
}

/// Runs `sql` on the source; a failure names the seed that made it.
async fn write(r: &Replication, seed: u64, sql: &str) {
    if let Err(e) = r.src.batch_execute(sql).await {
        let message = e
            .as_db_error()
            .map_or(e.to_string(), |db| db.message().to_owned());
        panic!("PGFERRY_SEED={seed}: {message}\n{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_values_of_every_type_arrive_as_written_by_copy_insert_and_update() {
    let (seed, mut g) = support::seeded();
    println!("PGFERRY_SEED={seed}");
    let mut r = Replication::new().await;
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, sql_type, _)| format!("{name} {sql_type}"))
        .collect();
    let definition = format!("(id int primary key, {})", columns.join(", "));
    create_on_both(
        &r,
        &[
            ("digoal.rand_whole", definition.as_str()),
            ("digoal.rand_picked", definition.as_str()),
            ("digoal.rand_filtered", definition.as_str()),
        ],
    )
    .await;
    let tables = [
        "digoal.rand_whole",
        "digoal.rand_picked",
        "digoal.rand_filtered",
    ];
    // By the initial copy.
    for table in tables {
        write(&r, seed, &insert(table, 0..40, &mut g)).await;
    }
    let db = r.source_db.clone();
    let picked = "id,js,jb,ar,hs,f8,tx";
    source_agent(&["add-table", "--source-db", &db, tables[0]]).await;
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        tables[1],
        "--columns",
        picked,
    ])
    .await;
    source_agent(&[
        "add-table",
        "--source-db",
        &db,
        tables[2],
        "--where",
        "id % 3 <> 0",
    ])
    .await;
    r.start_agents().await;
    let all: Vec<&str> = std::iter::once("id")
        .chain(COLUMNS.iter().map(|c| c.0))
        .collect();
    let all = all.join(", ");
    let pairs = [
        (tables[0], tables[0], all.as_str(), "true"),
        (tables[1], tables[1], "id, js, jb, ar, hs, f8, tx", "true"),
        (tables[2], tables[2], all.as_str(), "id % 3 <> 0"),
    ];
    wait_rows_equal(&r, &pairs).await;
    // By changes: inserts one at a time and many at once, updates of
    // random columns to random values (moving rows in and out of the
    // filter by their key), deletes.
    for table in tables {
        let mut sql = insert(table, 100..101, &mut g);
        sql.push_str(&insert(table, 101..140, &mut g));
        for _ in 0..60 {
            let id = below(&mut g, 140);
            let (name, _, value) = COLUMNS[below(&mut g, COLUMNS.len() as u64) as usize];
            sql.push_str(&format!(
                "update {table} set {name} = {} where id = {id};",
                maybe(&mut g, value)
            ));
        }
        sql.push_str(&format!(
            "update {table} set id = id + 1000 where id % 7 = 1;
             delete from {table} where id % 11 = 2;"
        ));
        write(&r, seed, &format!("begin; {sql} commit;")).await;
    }
    wait_rows_equal(&r, &pairs).await;
    // The awkward values were there to travel.
    let covered = r
        .dst
        .query_one(
            "select count(*) filter (where js::text ~ '^\\s*null\\s*$'),
                    count(*) filter (where js is null),
                    count(*) filter (where array_lower(ar, 1) <> 1)
             from digoal.rand_whole",
            &[],
        )
        .await
        .unwrap();
    let covered: Vec<i64> = (0..3).map(|i| covered.get(i)).collect();
    assert!(
        covered.iter().all(|&n| n > 0),
        "JSON null, SQL NULL, other bounds: {covered:?}"
    );
}
