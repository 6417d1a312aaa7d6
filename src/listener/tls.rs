//! TLS on a listener: certificates and keys loaded so that a bad file is an error naming it
//! (never a panic), the handshake run by the listener itself within a time bound, and the
//! material swapped while serving when the files change.
//!
//! The handshake happens in [`super::Listener`], not in pingora's acceptor: a connection is
//! admitted first (a flood of handshakes is bounded like any other), the handshake gets the
//! listener's own bound rather than pingora's fixed 60 s, and a client that fails it costs a
//! debug line, not an error line in pingora's log.
//!
//! Reload: [`TlsEndpoint::reload`] loads the files again and swaps them in for new handshakes;
//! open connections keep what they were made with, and a file that does not load keeps the
//! old material (the caller logs why). Session resumption is off on listeners that verify
//! client certificates: a resumed session would carry a chain verified under a client CA
//! that may since have been replaced.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::client_cert::ClientCert;
use crate::config::{ClientCerts, TlsListener};
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;

/// Which file of a listener a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `tls_cert`
    Certificate,
    /// `tls_key`
    Key,
    /// `client_ca`
    ClientCa,
}

impl TlsFile {
    /// The configuration key naming the file.
    pub fn key(self) -> &'static str {
        match self {
            TlsFile::Certificate => "tls_cert",
            TlsFile::Key => "tls_key",
            TlsFile::ClientCa => "client_ca",
        }
    }
}

/// Why a listener's TLS material did not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {reason}")]
pub struct TlsLoadError {
    /// Which of the listener's files.
    pub file: TlsFile,
    /// The file's path, as configured.
    pub path: String,
    /// What is wrong with it (never key material).
    pub reason: String,
}

impl TlsLoadError {
    fn new(file: TlsFile, path: &Path, reason: impl Into<String>) -> TlsLoadError {
        TlsLoadError {
            file,
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file, in order (at least one).
fn certificates(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsLoadError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsLoadError::new(file, path, pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsLoadError::new(file, path, pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(TlsLoadError::new(file, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => format!("cannot read: {io}"),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// The certificate chain and its private key, checked to belong together.
pub fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsLoadError> {
    let chain = certificates(TlsFile::Certificate, cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            TlsLoadError::new(TlsFile::Key, key, "holds no PEM private key")
        }
        other => TlsLoadError::new(TlsFile::Key, key, pem_reason(&other)),
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsLoadError::new(
            TlsFile::Key,
            key,
            format!("is not the key of the certificate in `{}`", cert.display()),
        ),
        other => TlsLoadError::new(TlsFile::Key, key, format!("not a usable key: {other}")),
    })
}

/// A verifier of client certificates issued by the CAs in `ca`; with `mandatory`, a client
/// without one fails the handshake.
pub fn client_verifier(
    ca: &Path,
    mandatory: bool,
) -> Result<Arc<dyn ClientCertVerifier>, TlsLoadError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(TlsFile::ClientCa, ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsLoadError::new(TlsFile::ClientCa, ca, format!("not a CA: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if mandatory {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| TlsLoadError::new(TlsFile::ClientCa, ca, format!("{e}")))
}

/// What one load of a listener's files gives.
struct Material {
    key: Arc<CertifiedKey>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

fn load(spec: &TlsListener) -> Result<Material, TlsLoadError> {
    let key = Arc::new(certified_key(&spec.cert, &spec.key)?);
    let verifier = match &spec.client_certs {
        ClientCerts::Off => None,
        ClientCerts::Optional(ca) => Some(client_verifier(ca, false)?),
        ClientCerts::Required(ca) => Some(client_verifier(ca, true)?),
    };
    Ok(Material { key, verifier })
}

/// Checks that a listener's files load, for the configuration's validation.
pub fn check(spec: &TlsListener) -> Result<(), TlsLoadError> {
    load(spec).map(|_| ())
}

/// The material handshakes use now, swapped by [`TlsEndpoint::reload`].
struct Swap {
    key: ArcSwap<CertifiedKey>,
    verifier: Option<ArcSwap<Arc<dyn ClientCertVerifier>>>,
}

/// One TLS listener's acceptor and the material it hands out, swappable while serving.
pub struct TlsEndpoint {
    spec: TlsListener,
    current: Arc<Swap>,
    acceptor: Acceptor,
}

impl fmt::Debug for TlsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsEndpoint")
            .field("cert", &self.spec.cert)
            .finish_non_exhaustive()
    }
}

impl TlsEndpoint {
    /// Loads the listener's files and builds its acceptor.
    pub fn new(spec: &TlsListener) -> Result<TlsEndpoint, TlsLoadError> {
        let material = load(spec)?;
        let current = Arc::new(Swap {
            key: ArcSwap::new(material.key),
            verifier: material.verifier.map(ArcSwap::from_pointee),
        });
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|e| TlsLoadError::new(TlsFile::Certificate, &spec.cert, e.to_string()))?;
        let builder = match &spec.client_certs {
            ClientCerts::Off => builder.with_no_client_auth(),
            ClientCerts::Optional(_) | ClientCerts::Required(_) => builder
                .with_client_cert_verifier(Arc::new(CurrentVerifier {
                    current: current.clone(),
                    mandatory: matches!(spec.client_certs, ClientCerts::Required(_)),
                })),
        };
        let mut config = builder.with_cert_resolver(Arc::new(CurrentKey(current.clone())));
        config.alpn_protocols = if spec.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        if !matches!(spec.client_certs, ClientCerts::Off) {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(TlsEndpoint {
            spec: spec.clone(),
            current,
            acceptor: Acceptor::from_server_config(Arc::new(config)),
        })
    }

    /// The acceptor that runs handshakes with the current material.
    pub fn acceptor(&self) -> &Acceptor {
        &self.acceptor
    }

    /// Loads the files again and, if they load, serves them to new handshakes. On an error
    /// the material in use stays.
    pub fn reload(&self) -> Result<(), TlsLoadError> {
        let material = load(&self.spec)?;
        self.current.key.store(material.key);
        if let (Some(slot), Some(verifier)) = (&self.current.verifier, material.verifier) {
            slot.store(Arc::new(verifier));
        }
        Ok(())
    }
}

/// Hands each handshake the current certificate.
struct CurrentKey(Arc<Swap>);

impl fmt::Debug for CurrentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentKey")
    }
}

impl ResolvesServerCert for CurrentKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.key.load_full())
    }
}

/// Verifies client certificates with the current client CA.
struct CurrentVerifier {
    current: Arc<Swap>,
    /// Fixed by the configuration (`client_certs`), whatever the CA file holds.
    mandatory: bool,
}

impl fmt::Debug for CurrentVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentVerifier")
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl CurrentVerifier {
    fn current(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current
            .verifier
            .as_ref()
            .map(|v| Arc::clone(&*v.load_full()))
            .ok_or_else(|| rustls::Error::General("no client CA loaded".into()))
    }
}

impl ClientCertVerifier for CurrentVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// No hints: they would have to outlive a reload. Clients offer their certificate anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current()
            .map(|v| v.supported_verify_schemes())
            .unwrap_or_default()
    }
}

/// The TLS listeners of a service, by the port connections arrive on (the configuration
/// refuses a port that is TLS on one address and plain on another).
#[derive(Debug, Clone)]
pub struct TlsPorts {
    endpoints: Vec<(u16, Arc<TlsEndpoint>)>,
    /// How long a handshake may take (`server.tls_handshake_timeout`).
    pub handshake_timeout: std::time::Duration,
}

impl TlsPorts {
    /// No TLS listener yet.
    pub fn new(handshake_timeout: std::time::Duration) -> TlsPorts {
        TlsPorts {
            endpoints: Vec::new(),
            handshake_timeout,
        }
    }

    /// Connections arriving on `port` speak TLS with `endpoint`.
    pub fn add(&mut self, port: u16, endpoint: Arc<TlsEndpoint>) {
        self.endpoints.push((port, endpoint));
    }

    /// The endpoint of connections arriving on `port`, if they speak TLS.
    pub fn for_port(&self, port: u16) -> Option<&Arc<TlsEndpoint>> {
        self.endpoints
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, e)| e)
    }

    /// Reloads every endpoint's files (`why` says what asked, for the log); an endpoint
    /// whose files do not load keeps the material it had.
    pub(crate) fn reload(&self, why: impl fmt::Display) {
        for (_, endpoint) in &self.endpoints {
            match endpoint.reload() {
                Ok(()) => {
                    tracing::info!(trigger = %why, listener = ?endpoint, "TLS files reloaded")
                }
                Err(e) => tracing::warn!(
                    trigger = %why,
                    error = %e,
                    "TLS files not reloaded: the ones loaded before stay in use"
                ),
            }
        }
    }
}

/// After a handshake, reads the client certificate the verifier accepted into the
/// connection's TLS digest, where each request finds it (an `Arc<ClientCert>`).
pub(crate) struct ReadClientCert;

#[async_trait::async_trait]
impl TlsAccept for ReadClientCert {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        match ClientCert::from_der(der) {
            Some(cert) => Some(Arc::new(Arc::new(cert))),
            None => {
                // The verifier accepted it, so it parses for webpki; not for us is a bug to see.
                tracing::warn!("a verified client certificate could not be read; ignored");
                None
            }
        }
    }
}
