//! TLS for PostgreSQL connections (rustls), with libpq's `sslmode` meanings:
//!
//! - `disable`: plain TCP;
//! - `prefer` (the default) and `require`: TLS (required with `require`),
//!   the server certificate not verified unless `sslrootcert` is given;
//! - `verify-ca`, `verify-full`: TLS, the certificate verified against
//!   `sslrootcert` (a PEM file) or the system's roots, and the host name checked
//!   (litevault treats `verify-ca` as `verify-full`).
//!
//! tokio-postgres knows `disable`, `prefer` and `require` only, so
//! [`prepare`] rewrites the connection string and returns the connector.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Why TLS could not be set up.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("unknown sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    Mode(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A rustls connector for tokio-postgres.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

/// Splits `sslmode` and `sslrootcert` out of a connection string (URL or
/// key=value), builds the connector, and returns the string tokio-postgres
/// accepts.
pub fn prepare(conn: &str) -> Result<(String, MakeRustls), TlsSetupError> {
    let (rest, params) = take_params(conn, &["sslmode", "sslrootcert"]);
    let mode = params
        .iter()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_else(|| "prefer".into());
    let root = params
        .iter()
        .find(|(k, _)| k == "sslrootcert")
        .map(|(_, v)| v.clone());
    let (pg_mode, verify) = match mode.as_str() {
        "disable" => ("disable", false),
        "allow" | "prefer" => ("prefer", root.is_some()),
        "require" => ("require", root.is_some()),
        "verify-ca" | "verify-full" => ("require", true),
        other => return Err(TlsSetupError::Mode(other.into())),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    let config = if verify {
        let mut roots = RootCertStore::empty();
        match &root {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| TlsSetupError::RootCert {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if certs.is_empty() {
                    return Err(TlsSetupError::RootCert {
                        path: path.clone(),
                        reason: "no PEM certificate in it".into(),
                    });
                }
                for c in certs {
                    roots.add(c).map_err(|e| TlsSetupError::RootCert {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    let sep = if rest.contains("://") {
        if rest.contains('?') { "&" } else { "?" }
    } else {
        " "
    };
    let rewritten = format!("{rest}{sep}sslmode={pg_mode}");
    Ok((
        rewritten,
        MakeRustls {
            config: Arc::new(config),
        },
    ))
}

/// Removes `keys` from a URL's query or a key=value string; returns the rest
/// and the removed pairs.
fn take_params(conn: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let mut taken = vec![];
    if let Some((base, query)) = conn.split_once('?').filter(|_| conn.contains("://")) {
        let mut kept = vec![];
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if keys.contains(&k) {
                let v = url::form_urlencoded::parse(format!("x={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                taken.push((k.to_string(), v));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, taken)
    } else if conn.contains("://") {
        (conn.to_string(), taken)
    } else {
        let mut kept = vec![];
        for word in conn.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if keys.contains(&k) => {
                    taken.push((k.to_string(), v.trim_matches('\'').to_string()))
                }
                _ => kept.push(word),
            }
        }
        (kept.join(" "), taken)
    }
}

/// `sslmode=require` without a root certificate: encrypted, not
/// authenticated (libpq's meaning). Handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        // No host name: a Unix socket, where PostgreSQL offers no TLS and
        // answers the TLS request with "no" (then `prefer` goes on in plain
        // text and `require` fails), so no handshake ever starts.
        let name = if domain.is_empty() {
            None
        } else {
            Some(
                ServerName::try_from(domain.to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            )
        };
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    /// `None` over a Unix socket.
    name: Option<ServerName<'static>>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS needs a host name to verify; a Unix socket has none",
                )
            })?;
            let c = tokio_rustls::TlsConnector::from(self.config);
            Ok(RustlsStream(c.connect(name, stream).await?))
        })
    }
}

/// A TLS stream to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_modes_and_takes_the_root_out() {
        let (s, _) =
            prepare("postgres://u@h:5432/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(
            s,
            "postgres://u@h:5432/db?application_name=x&sslmode=require"
        );
        let (s, _) = prepare("postgres://u@h/db").unwrap();
        assert_eq!(s, "postgres://u@h/db?sslmode=prefer");
        let (s, _) = prepare("host=h user=u sslmode=disable").unwrap();
        assert_eq!(s, "host=h user=u sslmode=disable");
        let e = prepare("postgres://h/db?sslmode=require&sslrootcert=/nonexistent.pem").err();
        assert!(matches!(e, Some(TlsSetupError::RootCert { .. })), "{e:?}");
        assert!(matches!(
            prepare("postgres://h/db?sslmode=bogus"),
            Err(TlsSetupError::Mode(_))
        ));
    }
}
