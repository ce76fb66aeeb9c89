//! TLS for RTMPS: the public web roots, plus any CA certificates the
//! operator adds (a private ingest, or a test CA).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::DestinationError;

/// Builds the client configuration every RTMPS sender shares.
pub fn client_config(extra_ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, DestinationError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca_file {
        for cert in read_pem_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| DestinationError::Tls(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DestinationError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, DestinationError> {
    let pem = std::fs::read(path)
        .map_err(|e| DestinationError::Tls(format!("{}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DestinationError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(DestinationError::Tls(format!(
            "{}: no certificates found",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_roots_alone_are_enough() {
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_an_error() {
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(matches!(
            client_config(Some(missing)),
            Err(DestinationError::Tls(_))
        ));

        let dir = std::env::temp_dir().join(format!("origin-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            client_config(Some(&empty)),
            Err(DestinationError::Tls(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
