//! TLS pinned to a key a TEE attests (docs/PROTOCOL.md §5.4): the SubjectPublicKeyInfo hash of a
//! certificate, and a rustls [`ServerCertVerifier`] that accepts exactly one such key (or, observing,
//! any key, recording it) with no certificate authority and no host name, while always checking the
//! handshake signature against the presented key (so the server holds that key). Used by
//! `sealtune-verify quote --url https://…` (the `TEE keys` link compares the connection's key with the
//! attested one) and by the sealtune client, which pins the key for every later request.

use std::sync::{Arc, Mutex};

use alloy::primitives::B256;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};

/// Whether `url` is an `https://` URL (scheme compared case-insensitively, surrounding space ignored).
pub fn is_https(url: &str) -> bool {
    url.trim()
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// SHA-256 of the DER SubjectPublicKeyInfo of the certificate `der`: what `tls_spki_sha256` pins.
pub fn spki_sha256(der: &[u8]) -> Option<B256> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(B256::from(<[u8; 32]>::from(Sha256::digest(
        cert.tbs_certificate.subject_pki.raw,
    ))))
}

/// A rustls verifier that accepts one SubjectPublicKeyInfo (or, observing, any) and records the
/// keys it saw. Handshake signatures are always checked against the presented key.
#[derive(Debug)]
pub struct SpkiVerifier {
    expected: Option<B256>,
    seen: Mutex<Vec<B256>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl SpkiVerifier {
    /// Accepts only `expected`, or with `None` any key (recording it).
    pub fn new(expected: Option<B256>) -> Self {
        SpkiVerifier {
            expected,
            seen: Mutex::new(Vec::new()),
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }

    /// The key this verifier accepts (`None`: any).
    pub fn expected(&self) -> Option<B256> {
        self.expected
    }

    /// The SubjectPublicKeyInfo hashes of every certificate presented so far, in order.
    pub fn seen(&self) -> Vec<B256> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last presented key that is not the expected one.
    pub fn refused(&self) -> Option<B256> {
        let expected = self.expected?;
        self.seen().into_iter().rev().find(|k| *k != expected)
    }
}

impl ServerCertVerifier for SpkiVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let spki = spki_sha256(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(spki);
        }
        match self.expected {
            Some(e) if e != spki => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A rustls client configuration verifying with `verifier` (HTTP/1.1 over ALPN).
pub fn client_config(verifier: Arc<SpkiVerifier>) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
