//! The worker's own HTTPS listener: TLS that ends inside the CVM (docs/PROTOCOL.md §5.4).
//!
//! * **Key.** Ed25519, its 32-byte seed `SHA-256("sealtune/tls-key/v1" ‖ secret)`, where `secret`
//!   is what the attestation source derives for [`crate::attest::tls_key_path`]
//!   (`<key_path>/config/<config hash>/tls`: dstack `GetKey`, tappd `DeriveKey`, the dev root
//!   secret; random at every start on configfs-tsm). The config hash covers whether TLS is on
//!   (`ConfigDocument::tls`), so the key is the same on every start of one configuration and
//!   another for another. It lives in the worker's memory only, never on disk.
//! * **Certificate.** Self-signed by that key ([`rcgen`]), made again at every start. Clients pin
//!   the SubjectPublicKeyInfo, not the certificate: its SHA-256 ([`TlsIdentity::spki_sha256`]) is
//!   published in `tee_keys.tls_spki_sha256`, signed by the TEE signer and bound by the attestation
//!   document, so `sealtune verify-provider` learns it from the quote and no CA or host name is
//!   involved.
//! * **Listener.** [`TlsListener`] runs each handshake in its own task, at most
//!   [`HANDSHAKE_TIMEOUT`] long and [`MAX_PENDING_HANDSHAKES`] at a time, and hands finished
//!   connections to `axum::serve`: a client that stalls its handshake holds neither the accept loop
//!   nor anyone else's connection. The plain `listen` address keeps serving HTTP beside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

/// Domain tag of the TLS key's seed.
pub const TLS_KEY_DOMAIN: &[u8] = b"sealtune/tls-key/v1";

/// Longest TLS handshake the listener waits for.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at most; further connections are closed until one finishes.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// The host name the certificate names. Nothing checks it: clients pin the key.
pub const CERT_NAME: &str = "sealtune-worker";

/// Why the TLS identity or listener could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The key or its certificate could not be built.
    #[error("the worker's TLS key or certificate: {0}")]
    Identity(String),
    /// The listener could not bind its address.
    #[error("cannot listen for HTTPS on {addr}: {source}")]
    Bind {
        /// The configured `tls_listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

fn identity_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Identity(e.to_string())
}

/// The worker's TLS key, its self-signed certificate and the server configuration serving them.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
    spki_sha256: B256,
    certificate: CertificateDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("spki_sha256", &self.spki_sha256)
            .finish_non_exhaustive()
    }
}

/// PKCS#8 v1 (RFC 8410) of the Ed25519 private key `seed`: the fixed 16-byte header, then the seed.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    const HEADER: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&HEADER);
    der.extend_from_slice(seed);
    der
}

impl TlsIdentity {
    /// The identity whose key is derived from `secret` (the attestation source's key for
    /// [`crate::attest::tls_key_path`]); the certificate is self-signed by it.
    pub fn from_secret(secret: &[u8]) -> Result<Self, TlsError> {
        let mut h = Sha256::new();
        h.update(TLS_KEY_DOMAIN);
        h.update(secret);
        let seed = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
        let pkcs8 = ed25519_pkcs8(&seed);
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .map_err(identity_error)?;
        let spki_sha256 = B256::from(<[u8; 32]>::from(Sha256::digest(key.public_key_der())));
        let mut params =
            rcgen::CertificateParams::new(vec![CERT_NAME.to_owned()]).map_err(identity_error)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "sealtune worker: TLS key derived in the TEE, pin tee_keys.tls_spki_sha256",
        );
        let certificate = params
            .self_signed(&key)
            .map_err(identity_error)?
            .der()
            .clone();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(identity_error)?
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec())),
            )
            .map_err(identity_error)?;
        // The API is served over HTTP/1.1 only (axum without its http2 feature).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            config: Arc::new(config),
            spki_sha256,
            certificate,
        })
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo of the key: what `tee_keys.tls_spki_sha256`
    /// publishes and clients pin.
    pub fn spki_sha256(&self) -> B256 {
        self.spki_sha256
    }

    /// The self-signed certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        self.certificate.as_ref()
    }

    /// The rustls server configuration serving this key.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Binds `addr` and starts accepting TLS connections with this identity.
    pub async fn bind(&self, addr: SocketAddr) -> Result<TlsListener, TlsError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| TlsError::Bind { addr, source })?;
        let local = tcp
            .local_addr()
            .map_err(|source| TlsError::Bind { addr, source })?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let task = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(TlsListener {
            accepted: rx,
            local,
            task,
        })
    }
}

type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// Accepts TCP connections and runs each handshake in its own task (bounded in time and number);
/// finished connections go to the listener. Ends when the listener is dropped.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: tokio::sync::mpsc::Sender<Accepted>,
) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("HTTPS accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "{MAX_PENDING_HANDSHAKES} TLS handshakes in progress: connection closed");
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    drop(permit);
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The HTTPS listener `axum::serve` takes: connections whose handshake finished.
#[derive(Debug)]
pub struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<Accepted>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// The address it is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept loop ended (it only does when the listener is dropped): nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_a_function_of_the_secret_and_the_spki_is_the_certificates() {
        let a = TlsIdentity::from_secret(&[1u8; 32]).unwrap();
        let again = TlsIdentity::from_secret(&[1u8; 32]).unwrap();
        let other = TlsIdentity::from_secret(&[2u8; 32]).unwrap();
        assert_eq!(a.spki_sha256(), again.spki_sha256());
        assert_ne!(a.spki_sha256(), other.spki_sha256());
        let (_, cert) = x509_parser::parse_x509_certificate(a.certificate_der()).unwrap();
        let spki = Sha256::digest(cert.tbs_certificate.subject_pki.raw);
        assert_eq!(spki.as_slice(), a.spki_sha256().as_slice());
    }
}
