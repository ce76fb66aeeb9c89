//! Node identity: the self-signed certificate a mesh node presents, and the
//! fingerprint other nodes pin it by.
//!
//! Mesh nodes do not use a public PKI. Each node keeps one key pair and a
//! self-signed certificate in its state directory; the control plane hands
//! out the certificate's SHA-256 fingerprint, and peers accept exactly that
//! certificate (see [`crate::tls`]). Keeping the files across restarts keeps
//! the fingerprint stable, so a restart does not need a control-plane update.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// File name of the PEM certificate inside the identity directory.
pub const CERT_FILE: &str = "mesh-cert.pem";
/// File name of the PEM private key (PKCS#8) inside the identity directory.
pub const KEY_FILE: &str = "mesh-key.pem";

/// Names every node certificate carries, so a node is reachable by its
/// loopback addresses in `buildstream dev` and in tests.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why an identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing a file in the identity directory failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Only one of the certificate and key files exists; refusing to replace
    /// the other, which would silently change the node's fingerprint.
    #[error("identity directory has {present} but not {missing}")]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A PEM file could not be parsed.
    #[error("identity file {path} is not valid PEM: {reason}")]
    Pem {
        /// The file involved.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls cannot use it.
    #[error("identity key does not match its certificate: {0}")]
    Mismatch(rustls::Error),
    /// Generating the key pair or the certificate failed.
    #[error("could not generate identity: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A node's certificate and private key. Cloning copies the key in memory.
pub struct NodeIdentity {
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: CertFingerprint,
}

impl NodeIdentity {
    /// Loads the identity stored in `dir`, or creates one there (and the
    /// directory) if none exists. The certificate names `localhost`,
    /// `127.0.0.1` and `::1`.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        Self::load_or_create_with_names(dir, &[])
    }

    /// Like [`NodeIdentity::load_or_create`], adding `names` (DNS names or IP
    /// addresses) to the certificate. Names only apply when the identity is
    /// created: an existing identity is kept as it is, because peers pin its
    /// fingerprint and names play no part in pinned verification.
    pub fn load_or_create_with_names(dir: &Path, names: &[String]) -> Result<Self, IdentityError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => Self::load(&cert_path, &key_path),
            (false, false) => {
                let (identity, pem) = Self::generate_with_pem(names)?;
                store(dir, &pem, &cert_path, &key_path)?;
                tracing::info!(fingerprint = %identity.fingerprint, "mesh identity created");
                Ok(identity)
            }
            (true, false) => Err(IdentityError::Incomplete {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(IdentityError::Incomplete {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    /// Creates a fresh identity in memory, with the default names plus
    /// `names`. Nothing is written; tests and one-off tools use this.
    pub fn generate(names: &[String]) -> Result<Self, IdentityError> {
        Self::generate_with_pem(names).map(|(identity, _)| identity)
    }

    fn generate_with_pem(names: &[String]) -> Result<(Self, Pem), IdentityError> {
        let mut all_names: Vec<String> = DEFAULT_NAMES.iter().map(|n| n.to_string()).collect();
        for name in names {
            if !all_names.contains(name) {
                all_names.push(name.clone());
            }
        }
        let key_pair = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(all_names)?;
        let certificate = params.self_signed(&key_pair)?;
        let key = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let pem = Pem {
            certificate: certificate.pem(),
            key: key_pair.serialize_pem(),
        };
        Ok((Self::from_parts(certificate.der().clone(), key), pem))
    }

    /// The certificate's fingerprint, which peers pin.
    pub fn fingerprint(&self) -> CertFingerprint {
        self.fingerprint
    }

    /// The DER-encoded certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    fn from_parts(certificate: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Self {
        let fingerprint = CertFingerprint::of(&certificate);
        Self {
            certificate,
            key,
            fingerprint,
        }
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let cert_pem = read(cert_path)?;
        let key_pem = read(key_path)?;
        let certificate =
            CertificateDer::from_pem_slice(&cert_pem).map_err(|err| IdentityError::Pem {
                path: cert_path.to_owned(),
                reason: err.to_string(),
            })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| IdentityError::Pem {
            path: key_path.to_owned(),
            reason: err.to_string(),
        })?;

        // A key copied in from another node would make every handshake fail
        // with an opaque signature error; say so at start-up instead.
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(vec![certificate.clone()], key.clone_key(), &provider)
            .map_err(IdentityError::Mismatch)?;

        let identity = Self::from_parts(certificate, key);
        tracing::debug!(fingerprint = %identity.fingerprint, "mesh identity loaded");
        Ok(identity)
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self {
            certificate: self.certificate.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("NodeIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Why a fingerprint string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FingerprintError {
    /// The string does not start with `sha256:`.
    #[error("fingerprint must start with sha256:")]
    Prefix,
    /// The digest is not 64 hexadecimal characters.
    #[error("fingerprint digest must be 64 hex characters")]
    Digest,
}

/// SHA-256 of a DER certificate. Written as `sha256:` followed by 64
/// lowercase hex digits; parsing accepts either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    const PREFIX: &'static str = "sha256:";

    /// The fingerprint of a DER-encoded certificate.
    pub fn of(certificate_der: &[u8]) -> Self {
        Self(Sha256::digest(certificate_der).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for CertFingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digest = s
            .get(..Self::PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(Self::PREFIX))
            .map(|_| &s[Self::PREFIX.len()..])
            .ok_or(FingerprintError::Prefix)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digest, &mut bytes).map_err(|_| FingerprintError::Digest)?;
        Ok(Self(bytes))
    }
}

/// The PEM text of a freshly generated identity, written once.
struct Pem {
    certificate: String,
    key: String,
}

fn store(dir: &Path, pem: &Pem, cert_path: &Path, key_path: &Path) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
        path: dir.to_owned(),
        source,
    })?;
    // The key goes first: a crash in between leaves only a key, which
    // `load_or_create` reports instead of pairing it with a new certificate.
    write_private(key_path, pem.key.as_bytes())?;
    write_private(cert_path, pem.certificate.as_bytes())
}

fn exists(path: &Path) -> Result<bool, IdentityError> {
    path.try_exists().map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    fs::read(path).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a temporary file readable only by this user, then
/// renames it into place, so a reader never sees half a file.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let io_error = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    let temporary = path.with_extension("pem.tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    fs::rename(&temporary, path).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        std::env::temp_dir().join(format!(
            "buildstream-mesh-{name}-{}-{nanos}",
            std::process::id()
        ))
    }

    #[test]
    fn fingerprint_round_trips_through_text() {
        let fingerprint = CertFingerprint::of(b"not really a certificate");
        let text = fingerprint.to_string();
        assert!(text.starts_with("sha256:"));
        assert_eq!(text.len(), "sha256:".len() + 64);
        assert_eq!(text.parse::<CertFingerprint>(), Ok(fingerprint));
        assert_eq!(
            text.to_uppercase().parse::<CertFingerprint>(),
            Ok(fingerprint)
        );
    }

    #[test]
    fn fingerprint_refuses_malformed_text() {
        let digest = "ab".repeat(32);
        assert_eq!(
            digest.parse::<CertFingerprint>(),
            Err(FingerprintError::Prefix)
        );
        assert_eq!(
            format!("sha1:{digest}").parse::<CertFingerprint>(),
            Err(FingerprintError::Prefix)
        );
        assert_eq!(
            format!("sha256:{}", &digest[2..]).parse::<CertFingerprint>(),
            Err(FingerprintError::Digest)
        );
        assert_eq!(
            format!("sha256:{}zz", &digest[2..]).parse::<CertFingerprint>(),
            Err(FingerprintError::Digest)
        );
        assert_eq!("".parse::<CertFingerprint>(), Err(FingerprintError::Prefix));
        assert_eq!(
            "sha256:é".parse::<CertFingerprint>(),
            Err(FingerprintError::Digest)
        );
    }

    #[test]
    fn identity_persists_across_loads() {
        let dir = scratch_dir("persist");
        let created =
            NodeIdentity::load_or_create_with_names(&dir, &["edge-1.example".into()]).unwrap();
        let loaded = NodeIdentity::load_or_create(&dir).unwrap();
        assert_eq!(created.fingerprint(), loaded.fingerprint());
        assert_eq!(created.certificate(), loaded.certificate());
        assert_eq!(
            CertFingerprint::of(loaded.certificate()),
            loaded.fingerprint()
        );

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key file must not be group/world readable");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fresh_identities_differ() {
        let a = NodeIdentity::generate(&[]).unwrap();
        let b = NodeIdentity::generate(&[]).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn half_an_identity_is_refused() {
        let dir = scratch_dir("half");
        NodeIdentity::load_or_create(&dir).unwrap();
        fs::remove_file(dir.join(CERT_FILE)).unwrap();
        assert!(matches!(
            NodeIdentity::load_or_create(&dir),
            Err(IdentityError::Incomplete { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = scratch_dir("mismatch");
        NodeIdentity::load_or_create(&dir).unwrap();
        let other = scratch_dir("mismatch-other");
        NodeIdentity::load_or_create(&other).unwrap();
        fs::copy(other.join(KEY_FILE), dir.join(KEY_FILE)).unwrap();
        assert!(matches!(
            NodeIdentity::load_or_create(&dir),
            Err(IdentityError::Mismatch(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn garbage_pem_is_refused() {
        let dir = scratch_dir("garbage");
        NodeIdentity::load_or_create(&dir).unwrap();
        fs::write(dir.join(CERT_FILE), b"-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
        assert!(matches!(
            NodeIdentity::load_or_create(&dir),
            Err(IdentityError::Pem { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
