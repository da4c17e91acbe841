//! pgferry's compiled capture: the statement triggers that queue the rows
//! of an INSERT (`compiled_capture_rows`), the keys and changed columns of
//! an UPDATE's rows (`compiled_capture_updates`) and the keys of a DELETE
//! (`compiled_capture_deletes`) of a table replicated without a row
//! filter, in place of the PL/pgSQL `pgferry.capture_rows`,
//! `pgferry.capture_updates` and `pgferry.capture_deletes`, with the same
//! trigger arguments and the same queue rows.
//!
//! Why compiled: a single-row statement, the commonest write, paid the
//! PL/pgSQL function's start, a query over the transition table and a
//! second one to learn it held one row. Here a statement of one row reads
//! its row from the transition table directly and queues it with a plan
//! prepared once per trigger and session; a statement of more rows runs
//! the PL/pgSQL function's own array query over the transition table.
//!
//! An UPDATE's columns are compared as stored, old against new: an
//! unchanged large value keeps its TOAST pointer, so it is found unchanged
//! without being read, and is neither read nor queued. (The PL/pgSQL twin
//! compares the values' JSON text, reading every value.)

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

/// A plan's key: its trigger's oid, whether it queues one row (given as
/// parameters) or every row of the transition table, and for an update
/// the numbers of the columns it queues (empty: the whole row).
type PlanKey = (u32, bool, Vec<usize>);

thread_local! {
    /// Plans by [`PlanKey`], each prepared on first use: one over the
    /// transition table needs it registered. A re-attached table's
    /// triggers have new oids; plans of dropped triggers stay until the
    /// session ends.
    static PLANS: RefCell<HashMap<PlanKey, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// The most columns an update's row is queued by: `json_build_object`
/// takes at most 100 arguments, a name and a value each. An update of more
/// queues the whole row.
const MOST_COLUMNS: usize = 50;

unsafe extern "C" {
    /// utils/datum.h: whether two values of a type are stored alike (a
    /// TOAST pointer compared as a pointer, not as the value it points to).
    fn datumIsEqual(
        value1: pg_sys::Datum,
        value2: pg_sys::Datum,
        by_value: bool,
        length: i32,
    ) -> bool;
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
fn compiled_capture_updates<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    // SAFETY: as above.
    unsafe { capture_updates(trigger.trigger_data()) };
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
    let key = (trigger.tgoid.to_u32(), one_row.is_some(), Vec::new());
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
            let op = match (trigger.tgnewtable.is_null(), trigger.tgoldtable.is_null()) {
                // An update's trigger (arguments: id, key columns).
                (false, false) => "U",
                _ => match args.get(1).map(String::as_str) {
                    Some("I") => "I",
                    Some("U") => "U",
                    _ => error!(
                        "pgferry capture trigger {name}: its second argument is neither I nor U"
                    ),
                },
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

/// Queues an UPDATE statement's rows: each row's key and the columns
/// changed in any of the statement's rows (compared as stored), or whole
/// rows when the statement changed a key (the target applies a changed key
/// by the row trigger's delete and the whole new rows) or its transition
/// tables do not pair up; nothing when it changed nothing. Old and new rows
/// pair by their place: PostgreSQL adds each updated row's two versions to
/// the transition tables together.
///
/// # Safety
/// `data` must be the TriggerData of the current trigger call.
unsafe fn capture_updates(data: &pg_sys::TriggerData) {
    unsafe {
        let trigger = &*data.tg_trigger;
        let (old, new) = (data.tg_oldtable, data.tg_newtable);
        if old.is_null() || new.is_null() || trigger.tgnewtable.is_null() {
            error!(
                "pgferry capture trigger {} is not an update statement trigger with old and new tables",
                cstr(trigger.tgname)
            );
        }
        let rows = pg_sys::tuplestore_tuple_count(new);
        if rows == 0 {
            return;
        }
        let relation = &*data.tg_relation;
        let desc = relation.rd_att;
        let attributes = (*desc).attrs.as_slice((*desc).natts as usize);
        let args = trigger_args(trigger);
        let keys: Vec<usize> = args
            .iter()
            .skip(1)
            .map(|key| {
                attributes
                    .iter()
                    .position(|a| !a.attisdropped && cstr(a.attname.data.as_ptr()) == key)
                    .unwrap_or_else(|| {
                        error!(
                            "pgferry capture trigger {}: no key column {key}",
                            cstr(trigger.tgname)
                        )
                    })
            })
            .collect();
        let old_slot =
            pg_sys::MakeSingleTupleTableSlot(desc, &raw const pg_sys::TTSOpsMinimalTuple);
        let new_slot =
            pg_sys::MakeSingleTupleTableSlot(desc, &raw const pg_sys::TTSOpsMinimalTuple);
        let mut changed = vec![false; attributes.len()];
        let mut paired = pg_sys::tuplestore_tuple_count(old) == rows;
        pg_sys::tuplestore_rescan(old);
        pg_sys::tuplestore_rescan(new);
        while paired && pg_sys::tuplestore_gettupleslot(new, true, false, new_slot) {
            if !pg_sys::tuplestore_gettupleslot(old, true, false, old_slot) {
                paired = false;
                break;
            }
            let natts = attributes.len() as i32;
            pg_sys::slot_getsomeattrs_int(old_slot, natts);
            pg_sys::slot_getsomeattrs_int(new_slot, natts);
            for (i, attribute) in attributes.iter().enumerate() {
                if attribute.attisdropped || changed[i] {
                    continue;
                }
                let nulls = (
                    *(*old_slot).tts_isnull.add(i),
                    *(*new_slot).tts_isnull.add(i),
                );
                changed[i] = match nulls {
                    (true, true) => false,
                    (false, false) => !datumIsEqual(
                        *(*old_slot).tts_values.add(i),
                        *(*new_slot).tts_values.add(i),
                        attribute.attbyval,
                        i32::from(attribute.attlen),
                    ),
                    _ => true,
                };
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(old_slot);
        if paired && !changed.iter().any(|c| *c) {
            pg_sys::ExecDropSingleTupleTableSlot(new_slot);
            return;
        }
        let columns: Vec<usize> = (0..attributes.len())
            .filter(|&i| !attributes[i].attisdropped && (changed[i] || keys.contains(&i)))
            .collect();
        // Empty: the whole row.
        let columns = if !paired || keys.iter().any(|&k| changed[k]) || columns.len() > MOST_COLUMNS
        {
            Vec::new()
        } else {
            columns
        };
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            error!("pgferry capture: SPI_connect failed");
        }
        let table_id: i32 = match args.first().map(|id| id.parse()) {
            Some(Ok(id)) => id,
            _ => error!(
                "pgferry capture trigger {}: its first argument is not a table id",
                cstr(trigger.tgname)
            ),
        };
        let name = |i: usize| quote_literal(cstr(attributes[i].attname.data.as_ptr()));
        let done = if rows == 1 {
            pg_sys::tuplestore_rescan(new);
            if !pg_sys::tuplestore_gettupleslot(new, true, false, new_slot) {
                error!("pgferry capture: the transition table of one row is empty");
            }
            let done = if columns.is_empty() {
                let plan = plan(trigger, Capture::Rows, "", Some((*relation.rd_rel).reltype));
                let mut row = [pg_sys::ExecFetchSlotHeapTupleDatum(new_slot)];
                pg_sys::SPI_execute_plan(plan, row.as_mut_ptr(), std::ptr::null(), false, 0)
            } else {
                pg_sys::slot_getsomeattrs_int(new_slot, attributes.len() as i32);
                let key = (trigger.tgoid.to_u32(), true, columns.clone());
                let plan = match PLANS.with(|plans| plans.borrow().get(&key).copied()) {
                    Some(plan) => plan,
                    None => {
                        let fields: Vec<String> = columns
                            .iter()
                            .enumerate()
                            .map(|(n, &i)| format!("{}, ${}", name(i), n + 1))
                            .collect();
                        let sql = format!(
                            "insert into pgferry.queue (table_id, op, new_row)
                             values ({table_id}, 'U', pg_catalog.json_build_object({}))",
                            fields.join(", ")
                        );
                        let mut types: Vec<pg_sys::Oid> =
                            columns.iter().map(|&i| attributes[i].atttypid).collect();
                        let plan = keep(&sql, &mut types);
                        PLANS.with(|plans| plans.borrow_mut().insert(key, plan));
                        plan
                    }
                };
                let mut values: Vec<pg_sys::Datum> = columns
                    .iter()
                    .map(|&i| *(*new_slot).tts_values.add(i))
                    .collect();
                let nulls: Vec<c_char> = columns
                    .iter()
                    .map(|&i| if *(*new_slot).tts_isnull.add(i) { b'n' } else { b' ' } as c_char)
                    .collect();
                pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
            };
            pg_sys::ExecDropSingleTupleTableSlot(new_slot);
            done
        } else {
            pg_sys::ExecDropSingleTupleTableSlot(new_slot);
            let data = std::ptr::from_ref(data).cast_mut();
            if pg_sys::SPI_register_trigger_data(data) != pg_sys::SPI_OK_TD_REGISTER as i32 {
                error!("pgferry capture: SPI_register_trigger_data failed");
            }
            let key = (trigger.tgoid.to_u32(), false, columns.clone());
            let plan = match PLANS.with(|plans| plans.borrow().get(&key).copied()) {
                Some(plan) => plan,
                None => {
                    let row = if columns.is_empty() {
                        "pg_catalog.row_to_json(n.*)".to_string()
                    } else {
                        let fields: Vec<String> = columns
                            .iter()
                            .map(|&i| {
                                let column =
                                    quote_identifier(cstr(attributes[i].attname.data.as_ptr()));
                                format!("{}, n.{column}", name(i))
                            })
                            .collect();
                        format!("pg_catalog.json_build_object({})", fields.join(", "))
                    };
                    let transition = quote_identifier(cstr(trigger.tgnewtable));
                    let plan = keep(
                        &arrays(table_id, "U", "new_row", &row, &transition),
                        &mut [],
                    );
                    PLANS.with(|plans| plans.borrow_mut().insert(key, plan));
                    plan
                }
            };
            pg_sys::SPI_execute_plan(plan, std::ptr::null_mut(), std::ptr::null(), false, 0)
        };
        if done != pg_sys::SPI_OK_INSERT as i32 {
            error!("pgferry capture: queueing the changes failed (SPI code {done})");
        }
        pg_sys::SPI_finish();
    }
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
