//! TLS and QUIC configuration for mesh connections.
//!
//! Trust is by pinning: a client accepts exactly the server certificate whose
//! fingerprint it was given, and a server that restricts its clients accepts
//! exactly the client certificates on its list. Handshake signatures are
//! still verified with the ring provider's algorithms, so a peer must hold
//! the private key of the certificate it shows.
//!
//! Every config is built with an explicit ring [`CryptoProvider`]; nothing is
//! installed process-wide (the binary links more than one provider).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{CertFingerprint, NodeIdentity};

/// The ALPN every mesh connection negotiates: MoQ Transport draft 18 over raw
/// QUIC, the version moq-transport 0.17 speaks. A peer offering anything else
/// fails the TLS handshake.
pub const ALPN: &[u8] = moq_transport::setup::DraftVersion::Draft18.alpn_bytes();

/// Concurrent streams each side lets its peer open. Each subscription keeps
/// one bidirectional request stream open for its lifetime and one
/// unidirectional stream per group in flight; quinn's default of 100 would
/// cap a session at 100 tracks.
const MAX_STREAMS: u32 = 1024;

/// Keep-alives stop idle NAT bindings and the idle timeout from closing a
/// session that carries no media for a while (a muted source).
const KEEP_ALIVE: Duration = Duration::from_secs(4);

/// Why a TLS configuration could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration (for example the key type).
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The provider offers no cipher suite QUIC can use for its initial keys.
    #[error("tls configuration has no cipher suite usable by QUIC")]
    NoQuicCipherSuite,
}

/// The client certificates a mesh server admits, by fingerprint. Cloning
/// shares the list: replacing it changes who the running server admits
/// from the next handshake on.
#[derive(Clone, Debug, Default)]
pub struct AllowedPeers {
    inner: Arc<AllowedInner>,
}

#[derive(Debug, Default)]
struct AllowedInner {
    list: RwLock<HashSet<CertFingerprint>>,
    /// Raised when a client with an unlisted certificate was refused: the
    /// list may be behind (a node that just registered).
    refused: tokio::sync::Notify,
}

impl AllowedPeers {
    /// A list admitting exactly `peers`.
    pub fn new(peers: impl IntoIterator<Item = CertFingerprint>) -> Self {
        let this = Self::default();
        this.replace(peers);
        this
    }

    /// Admits exactly `peers` from now on.
    pub fn replace(&self, peers: impl IntoIterator<Item = CertFingerprint>) {
        let peers: HashSet<CertFingerprint> = peers.into_iter().collect();
        *self
            .inner
            .list
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = peers;
    }

    /// Whether `peer` is admitted.
    pub fn contains(&self, peer: &CertFingerprint) -> bool {
        self.inner
            .list
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(peer)
    }

    /// Resolves once a client with an unlisted certificate has been refused
    /// (at once if one was since the last call).
    pub async fn refused(&self) {
        self.inner.refused.notified().await;
    }
}

/// QUIC server configuration presenting `identity`. With `allowed_clients`,
/// only clients presenting one of those certificates are admitted; without,
/// clients are not asked for a certificate.
pub(crate) fn server_config(
    identity: &NodeIdentity,
    allowed_clients: Option<AllowedPeers>,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match allowed_clients {
        Some(allowed) => builder.with_client_cert_verifier(Arc::new(PinnedClientVerifier {
            allowed,
            algorithms: provider.signature_verification_algorithms,
        })),
        None => builder.with_no_client_auth(),
    };
    let mut crypto =
        builder.with_single_cert(vec![identity.certificate().clone()], identity.private_key())?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];

    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|_| TlsError::NoQuicCipherSuite)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// QUIC client configuration that accepts only the server certificate with
/// fingerprint `pinned`, and presents `identity` if the server asks.
pub(crate) fn client_config(
    identity: &NodeIdentity,
    pinned: CertFingerprint,
) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedServerVerifier {
        pinned,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![identity.certificate().clone()], identity.private_key())?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];

    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|_| TlsError::NoQuicCipherSuite)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(MAX_STREAMS.into())
        .max_concurrent_uni_streams(MAX_STREAMS.into())
        .keep_alive_interval(Some(KEEP_ALIVE));
    Arc::new(transport)
}

/// Accepts exactly one server certificate, identified by its fingerprint.
/// Names and validity dates play no part: the pin is the identity.
#[derive(Debug)]
struct PinnedServerVerifier {
    pinned: CertFingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = CertFingerprint::of(end_entity);
        if presented == self.pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::debug!(pinned = %self.pinned, %presented, "server certificate not pinned");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Admits clients whose certificate fingerprint is on the list.
#[derive(Debug)]
struct PinnedClientVerifier {
    allowed: AllowedPeers,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Self-signed node certificates have no issuer worth hinting.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let presented = CertFingerprint::of(end_entity);
        if self.allowed.contains(&presented) {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::debug!(%presented, "client certificate not allowed");
            self.allowed.inner.refused.notify_one();
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_verifier_accepts_only_the_pin() {
        let identity = NodeIdentity::generate(&[]).unwrap();
        let other = NodeIdentity::generate(&[]).unwrap();
        let verifier = PinnedServerVerifier {
            pinned: identity.fingerprint(),
            algorithms: provider().signature_verification_algorithms,
        };
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        assert!(verifier
            .verify_server_cert(identity.certificate(), &[], &name, &[], now)
            .is_ok());
        assert!(verifier
            .verify_server_cert(other.certificate(), &[], &name, &[], now)
            .is_err());
    }

    #[test]
    fn client_verifier_checks_the_list() {
        let allowed = NodeIdentity::generate(&[]).unwrap();
        let stranger = NodeIdentity::generate(&[]).unwrap();
        let verifier = PinnedClientVerifier {
            allowed: AllowedPeers::new([allowed.fingerprint()]),
            algorithms: provider().signature_verification_algorithms,
        };
        let now = UnixTime::now();
        assert!(verifier
            .verify_client_cert(allowed.certificate(), &[], now)
            .is_ok());
        assert!(verifier
            .verify_client_cert(stranger.certificate(), &[], now)
            .is_err());
        // The list changes under the verifier.
        verifier
            .allowed
            .replace([allowed.fingerprint(), stranger.fingerprint()]);
        assert!(verifier
            .verify_client_cert(stranger.certificate(), &[], now)
            .is_ok());
    }

    #[test]
    fn configs_build_with_explicit_provider() {
        let identity = NodeIdentity::generate(&[]).unwrap();
        server_config(&identity, None).unwrap();
        server_config(&identity, Some(AllowedPeers::new([identity.fingerprint()]))).unwrap();
        client_config(&identity, identity.fingerprint()).unwrap();
    }
}
