//! What a peer sends, decoded and checked before any SQL: the stream's
//! messages in their expected order (a hello, then chunks, each in its
//! place in its batch and copy).

use pgferry_proto::PROTOCOL_VERSION;
use pgferry_proto::wire::{self, source_message::Kind};

use crate::error::{Error, Result};

/// The stream's first message, which must be a hello of this protocol
/// version.
pub fn hello(message: Option<wire::SourceMessage>) -> Result<wire::Hello> {
    let Some(wire::SourceMessage {
        kind: Some(Kind::Hello(hello)),
    }) = message
    else {
        return Err(Error::Protocol("the first message must be hello".into()));
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Error::ProtocolVersion {
            got: hello.protocol_version,
            speaks: PROTOCOL_VERSION,
        });
    }
    Ok(hello)
}

/// Every later message, which must be a batch chunk.
pub fn chunk(message: wire::SourceMessage) -> Result<wire::BatchChunk> {
    match message.kind {
        Some(Kind::Chunk(chunk)) => Ok(chunk),
        _ => Err(Error::Protocol("expected a batch chunk".into())),
    }
}

/// Checks that `chunk` may come now, given the batch whose transaction is
/// open (`open`) and the table whose initial copy is streaming
/// (`copying`): a new batch only once the open one ended, copy data only
/// inside its table's copy, one copy at a time, no changes inside a copy
/// (the session is in COPY until it ends), and no batch ending inside one.
pub fn check_chunk(
    open: Option<u64>,
    copying: Option<u32>,
    chunk: &wire::BatchChunk,
) -> Result<()> {
    let batch_id = chunk.batch_id;
    let protocol = |what: String| Err(Error::Protocol(what));
    if let Some(open) = open
        && open != batch_id
    {
        return protocol(format!(
            "batch {batch_id} started before batch {open} ended"
        ));
    }
    if !chunk.last && !chunk.checks.is_empty() {
        return protocol(format!(
            "batch {batch_id}: checks on a chunk that does not close the batch"
        ));
    }
    let mut copying = copying;
    if let Some(copy) = &chunk.copy {
        if copy.begin {
            if copying.is_some() {
                return protocol(format!("batch {batch_id}: a copy began inside another"));
            }
            copying = Some(copy.table_id);
        }
        match copying {
            None => return protocol(format!("batch {batch_id}: copy data without a copy")),
            Some(table_id) if table_id != copy.table_id => {
                return protocol(format!("batch {batch_id}: copy data for another table"));
            }
            Some(_) => {}
        }
        if copy.end {
            copying = None;
        }
    }
    if let Some(table_id) = copying {
        if !chunk.changes.is_empty() {
            return protocol(format!(
                "batch {batch_id}: changes inside the initial copy of table id {table_id}"
            ));
        }
        if chunk.last {
            return protocol(format!(
                "batch {batch_id} ended inside the initial copy of table id {table_id}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(
        batch_id: u64,
        copy: Option<(u32, bool, bool)>,
        changes: usize,
        last: bool,
    ) -> wire::BatchChunk {
        wire::BatchChunk {
            batch_id,
            copy: copy.map(|(table_id, begin, end)| wire::CopyData {
                table_id,
                begin,
                end,
                ..Default::default()
            }),
            changes: vec![wire::Change::default(); changes],
            last,
            ..Default::default()
        }
    }

    #[test]
    fn chunks_out_of_place_are_refused_before_any_sql() {
        let refused = |open, copying, chunk: wire::BatchChunk| {
            check_chunk(open, copying, &chunk)
                .expect_err("refused")
                .to_string()
        };
        assert!(check_chunk(None, None, &chunk(3, None, 2, true)).is_ok());
        assert!(check_chunk(None, None, &chunk(3, Some((1, true, true)), 0, true)).is_ok());
        assert!(check_chunk(Some(3), Some(1), &chunk(3, Some((1, false, true)), 5, true)).is_ok());
        assert!(refused(Some(3), None, chunk(4, None, 1, true)).contains("started before batch 3"));
        assert!(
            refused(Some(3), Some(1), chunk(3, Some((2, true, false)), 0, false))
                .contains("a copy began inside another")
        );
        assert!(
            refused(Some(3), None, chunk(3, Some((1, false, false)), 0, false))
                .contains("copy data without a copy")
        );
        assert!(
            refused(
                Some(3),
                Some(1),
                chunk(3, Some((2, false, false)), 0, false)
            )
            .contains("for another table")
        );
        assert!(
            refused(Some(3), Some(1), chunk(3, None, 1, false))
                .contains("changes inside the initial copy")
        );
        assert!(
            refused(None, None, chunk(3, Some((1, true, false)), 0, true))
                .contains("ended inside the initial copy")
        );
    }
}
