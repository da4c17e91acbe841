//! pgferry's compiled capture: the statement triggers that queue the rows
//! of an INSERT or UPDATE (`compiled_capture_rows`) and the keys of a
//! DELETE (`compiled_capture_deletes`) of a table replicated without a row
//! filter, in place of the PL/pgSQL `pgferry.capture_rows` and
//! `pgferry.capture_deletes`, with the same trigger arguments and the same
//! queue rows.
//!
//! Why compiled: a single-row statement, the commonest write, paid the
//! PL/pgSQL function's start, a query over the transition table and a
//! second one to learn it held one row. Here a statement of one row reads
//! its row from the transition table directly and queues it with a plan
//! prepared once per trigger and session; a statement of more rows runs
//! the PL/pgSQL function's own array query over the transition table.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};

use pgrx::pg_sys;
use pgrx::prelude::*;

pgrx::pg_module_magic!();

/// Which transition table a trigger reads and what it queues.
#[derive(Clone, Copy)]
enum Capture {
    /// New rows of an INSERT or UPDATE, whole (arguments: table id, 'I' or 'U').
    Rows,
    /// Keys of the rows a DELETE removed (arguments: table id, key columns).
    Deletes,
}

thread_local! {
    /// Plans by trigger oid and whether they queue one row (its parameter)
    /// or every row of the transition table (in arrays of about 64 KiB),
    /// each prepared on first use: the second needs the transition table
    /// registered. A re-attached table's triggers have new oids; plans of
    /// dropped triggers stay until the session ends.
    static PLANS: RefCell<HashMap<(u32, bool), pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

#[pg_trigger]
fn compiled_capture_rows<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    // SAFETY: PostgreSQL called us as a trigger; its TriggerData is valid
    // for the call.
    unsafe { capture(trigger.trigger_data(), Capture::Rows) };
    Ok(None)
}

#[pg_trigger]
fn compiled_capture_deletes<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    // SAFETY: as above.
    unsafe { capture(trigger.trigger_data(), Capture::Deletes) };
    Ok(None)
}

/// Queues the statement's rows or keys.
///
/// # Safety
/// `data` must be the TriggerData of the current trigger call.
unsafe fn capture(data: &pg_sys::TriggerData, kind: Capture) {
    unsafe {
        let trigger = &*data.tg_trigger;
        let (store, table_name) = match kind {
            Capture::Rows => (data.tg_newtable, trigger.tgnewtable),
            Capture::Deletes => (data.tg_oldtable, trigger.tgoldtable),
        };
        if store.is_null() || table_name.is_null() {
            error!(
                "pgferry capture trigger {} is not a statement trigger with a transition table",
                cstr(trigger.tgname)
            );
        }
        let rows = pg_sys::tuplestore_tuple_count(store);
        if rows == 0 {
            return;
        }
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            error!("pgferry capture: SPI_connect failed");
        }
        let relation = &*data.tg_relation;
        let name = cstr(table_name);
        let done = if rows == 1 {
            let plan = plan(trigger, kind, name, Some((*relation.rd_rel).reltype));
            let slot = pg_sys::MakeSingleTupleTableSlot(
                relation.rd_att,
                &raw const pg_sys::TTSOpsMinimalTuple,
            );
            pg_sys::tuplestore_rescan(store);
            if !pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
                error!("pgferry capture: the transition table of one row is empty");
            }
            let mut row = [pg_sys::ExecFetchSlotHeapTupleDatum(slot)];
            let done = pg_sys::SPI_execute_plan(plan, row.as_mut_ptr(), std::ptr::null(), false, 0);
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            done
        } else {
            let data = std::ptr::from_ref(data).cast_mut();
            if pg_sys::SPI_register_trigger_data(data) != pg_sys::SPI_OK_TD_REGISTER as i32 {
                error!("pgferry capture: SPI_register_trigger_data failed");
            }
            let plan = plan(trigger, kind, name, None);
            pg_sys::SPI_execute_plan(plan, std::ptr::null_mut(), std::ptr::null(), false, 0)
        };
        if done != pg_sys::SPI_OK_INSERT as i32 {
            error!("pgferry capture: queueing the changes failed (SPI code {done})");
        }
        pg_sys::SPI_finish();
    }
}

/// The trigger's plan that queues its one row, given as a parameter of
/// type `one_row`, or, with `None`, every row of its transition table.
///
/// # Safety
/// Inside an SPI connection, during a call of `trigger`; for the second
/// kind, with the trigger's transition table registered.
unsafe fn plan(
    trigger: &pg_sys::Trigger,
    kind: Capture,
    table_name: &str,
    one_row: Option<pg_sys::Oid>,
) -> pg_sys::SPIPlanPtr {
    let key = (trigger.tgoid.to_u32(), one_row.is_some());
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(&key).copied()) {
        return plan;
    }
    let args = unsafe { trigger_args(trigger) };
    let name = unsafe { cstr(trigger.tgname) };
    let table_id: i32 = match args.first().map(|id| id.parse()) {
        Some(Ok(id)) => id,
        _ => error!("pgferry capture trigger {name}: its first argument is not a table id"),
    };
    let transition = quote_identifier(table_name);
    let sql = match kind {
        Capture::Rows => {
            let op = match args.get(1).map(String::as_str) {
                Some("I") => "I",
                Some("U") => "U",
                _ => {
                    error!("pgferry capture trigger {name}: its second argument is neither I nor U")
                }
            };
            match one_row {
                Some(_) => format!(
                    "insert into pgferry.queue (table_id, op, new_row)
                     values ({table_id}, '{op}', pg_catalog.row_to_json($1))"
                ),
                None => arrays(
                    table_id,
                    op,
                    "new_row",
                    "pg_catalog.row_to_json(n.*)",
                    &transition,
                ),
            }
        }
        Capture::Deletes => {
            if args.len() < 2 {
                error!("pgferry capture trigger {name}: no key columns among its arguments");
            }
            let key = |row: &str| {
                let fields: Vec<String> = args[1..]
                    .iter()
                    .map(|k| format!("{}, {row}.{}", quote_literal(k), quote_identifier(k)))
                    .collect();
                format!("pg_catalog.json_build_object({})", fields.join(", "))
            };
            match one_row {
                Some(_) => format!(
                    "insert into pgferry.queue (table_id, op, old_key)
                     values ({table_id}, 'D', {})",
                    key("($1)")
                ),
                None => arrays(table_id, "D", "old_key", &key("n"), &transition),
            }
        }
    };
    let mut types: Vec<pg_sys::Oid> = one_row.into_iter().collect();
    let plan = unsafe { keep(&sql, &mut types) };
    PLANS.with(|plans| plans.borrow_mut().insert(key, plan));
    plan
}

/// The query that queues a statement's rows as JSON arrays of about 64 KiB
/// each (see pgferry.capture_rows).
fn arrays(table_id: i32, op: &str, column: &str, row: &str, transition: &str) -> String {
    format!(
        "insert into pgferry.queue (table_id, op, {column}, statement_rows)
         select {table_id}, '{op}', pg_catalog.json_agg(r), pg_catalog.count(*)
         from (select r, pg_catalog.int8div(pg_catalog.sum(pg_catalog.int4pl(pg_catalog.pg_column_size(r), 64))
                                                over (rows unbounded preceding), 65536) as part
               from (select {row} as r from {transition} n offset 0) n) parts
         group by part"
    )
}

/// Prepares `sql` and keeps its plan for the session.
///
/// # Safety
/// Inside an SPI connection.
unsafe fn keep(sql: &str, types: &mut [pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let text = CString::new(sql).expect("no NUL in generated SQL");
    unsafe {
        let plan = pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
            error!("pgferry capture: preparing {sql} failed");
        }
        plan
    }
}

/// The trigger's arguments.
///
/// # Safety
/// `trigger` comes from PostgreSQL.
unsafe fn trigger_args(trigger: &pg_sys::Trigger) -> Vec<String> {
    (0..trigger.tgnargs as usize)
        .map(|i| unsafe { cstr(*trigger.tgargs.add(i)) }.to_owned())
        .collect()
}

/// # Safety
/// `text` is a NUL-terminated string that outlives the result.
unsafe fn cstr<'a>(text: *const c_char) -> &'a str {
    unsafe { CStr::from_ptr(text) }.to_str().unwrap_or("?")
}

/// An identifier as PostgreSQL quotes it.
fn quote_identifier(name: &str) -> String {
    let text = CString::new(name).expect("no NUL in an identifier");
    // SAFETY: quote_identifier returns its argument or a palloc'd copy.
    unsafe { cstr(pg_sys::quote_identifier(text.as_ptr())) }.to_owned()
}

/// A literal as PostgreSQL quotes it (E'' when it holds a backslash).
fn quote_literal(value: &str) -> String {
    let text = CString::new(value).expect("no NUL in a literal");
    // SAFETY: quote_literal_cstr returns a palloc'd string.
    unsafe { cstr(pg_sys::quote_literal_cstr(text.as_ptr())) }.to_owned()
}
