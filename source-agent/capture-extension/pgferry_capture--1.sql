-- Version 1 of pgferry's compiled capture, as first released (inserts and
-- deletes; updates went through compiled_capture_rows as whole rows). A
-- database may still be at it: `source-agent install` updates it
-- (pgferry_capture--1--2.sql) and re-makes the triggers.
\echo Use "CREATE EXTENSION pgferry_capture" to load this file. \quit

create function compiled_capture_rows() returns trigger
language c security definer as 'MODULE_PATHNAME', 'compiled_capture_rows_wrapper';

create function compiled_capture_deletes() returns trigger
language c security definer as 'MODULE_PATHNAME', 'compiled_capture_deletes_wrapper';
