//! Where the server's TLS identity comes from: PEM files, or a certificate
//! made at start-up for development.
//!
//! Everything that can be wrong with the files is found here, before the
//! server listens: a missing or unreadable file, no certificate, no key, a
//! key that does not match the certificate, a certificate that has expired
//! or is not valid yet. Each is one sentence an operator can act on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// Where the certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// A PEM certificate chain (leaf first) and its PEM private key
    /// (PKCS#8, PKCS#1 RSA or SEC1 EC).
    Files { cert: PathBuf, key: PathBuf },
    /// A fresh ECDSA P-256 certificate for `localhost`, made in memory.
    SelfSigned,
}

/// Why the TLS configuration could not be built.
#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn fail(message: String) -> TlsError {
    TlsError(message)
}

/// Builds the rustls server configuration for `source`.
pub fn server_config(source: &TlsSource) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = match source {
        TlsSource::Files { cert, key } => (load_chain(cert)?, load_key(key)?),
        TlsSource::SelfSigned => self_signed()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                fail("the TLS key does not belong to the certificate".into())
            }
            e => fail(format!("the TLS key cannot be used: {e}")),
        })?;
    Ok(Arc::new(config))
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display();
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(format!("cannot read the TLS certificate {shown}: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| fail(format!("no certificate in {shown}")))?;
    check_validity(leaf, &shown.to_string())?;
    Ok(chain)
}

/// Refuses a leaf certificate that no client would accept today.
fn check_validity(leaf: &CertificateDer<'_>, shown: &str) -> Result<(), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| fail(format!("the TLS certificate {shown} cannot be parsed: {e}")))?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(fail(format!(
            "the TLS certificate {shown} expired on {}",
            validity.not_after
        )));
    }
    if now < validity.not_before {
        return Err(fail(format!(
            "the TLS certificate {shown} is not valid before {}",
            validity.not_before
        )));
    }
    Ok(())
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        fail(format!(
            "cannot read a private key from {}: {e}",
            path.display()
        ))
    })
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let failed = |e: rcgen::Error| fail(format!("cannot make a self-signed certificate: {e}"));
    // ECDSA P-256: signing it costs a fraction of an RSA key's, so a storm
    // of handshakes does not stall the loop.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    let der = PrivatePkcs8KeyDer::from(key.serialize_der());
    Ok((vec![cert.der().clone()], der.into()))
}

/// A client configuration that accepts any server certificate, for the
/// load generator only: it measures a server, it does not authenticate one.
/// Signatures are still checked, so the handshake costs what a real one does.
pub fn unverified_client() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_config_is_made_in_memory() {
        assert!(server_config(&TlsSource::SelfSigned).is_ok());
    }

    #[test]
    fn missing_files_are_named() {
        let source = TlsSource::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let e = server_config(&source).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cert.pem"), "{e}");
    }
}
