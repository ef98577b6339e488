//! Connecting to PostgreSQL (TLS per `sslmode`) and reading its errors.

use tokio_postgres::Client;

/// Why a connection could not be made.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Tls(#[from] crate::pg::tls::TlsSetupError),
    #[error("{}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// Connects (TLS per `sslmode`, see [`crate::pg::tls`]), spawning the
/// connection's driver, which logs each server notice at `info`;
/// [`crate::pg::notice::connect_collecting`] collects them instead.
pub async fn connect(url: &str) -> Result<Client, ConnectError> {
    let (conn_str, tls) = crate::pg::tls::prepare(url)?;
    let (client, conn) = tokio_postgres::connect(&conn_str, tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// The server's message of an error, or the error itself.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}
