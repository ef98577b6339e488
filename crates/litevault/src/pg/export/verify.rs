//! Verifying a loaded table: PostgreSQL's copy read back over binary COPY
//! into the checksum compared with the one computed from SQLite.

use futures::StreamExt;
use tokio_postgres::Client;

use super::{ExportError, pg};
use crate::pg::checksum::TableChecksum;
use crate::pg::copy::TupleReader;
use crate::pg::types::PgType;

/// Streams `COPY (...) TO STDOUT (FORMAT binary)` into a checksum.
pub async fn read_back(
    client: &Client,
    sql: &str,
    types: &[PgType],
    table: &str,
) -> Result<TableChecksum, ExportError> {
    let stream = client
        .copy_out(sql)
        .await
        .map_err(pg(format!("reading back {table:?}")))?;
    futures::pin_mut!(stream);
    let mut reader = TupleReader::new(types.len());
    let mut sum = TableChecksum::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(pg(format!("reading back {table:?}")))?;
        reader.push(&chunk);
        reader
            .drain(|t| sum.add_tuple(types, t))
            .map_err(|source| ExportError::CopyFormat {
                table: table.into(),
                source,
            })?;
    }
    reader.finish().map_err(|source| ExportError::CopyFormat {
        table: table.into(),
        source,
    })?;
    Ok(sum)
}
