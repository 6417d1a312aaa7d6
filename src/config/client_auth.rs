//! `oidc.client_auth` and the files it needs: how portcullis proves to the provider's token
//! endpoint that it is the client, and which CAs the provider's certificates may chain to.
//!
//! Keys and certificates are read and parsed here, at start and by `portcullis check`, so a
//! bad file is an error naming the key and the file, never a failed login later.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::check::{Check, Source};
use super::file::{ClientAuthFile, OidcFile};
use super::oidc::Table;
use super::oidc::{ClientAuthMethod, Secret};
use super::ConfigError;

/// How portcullis authenticates at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// The client secret, sent as `method` says; `None`: the way discovery advertises.
    Secret {
        /// The secret.
        secret: Secret,
        /// `client_secret_basic` or `client_secret_post`, or `None` for discovery's choice.
        method: Option<ClientAuthMethod>,
    },
    /// An RFC 7523 assertion signed with this key (`private_key_jwt`): no shared secret.
    PrivateKeyJwt(ClientKey),
    /// The client certificate on the TLS connection to the token endpoint (`tls_client_auth`,
    /// RFC 8705 §2.1): no shared secret.
    TlsClientAuth(ClientIdentity),
}

impl ClientAuth {
    /// The method's registered name, as discovery's `token_endpoint_auth_methods_supported`
    /// lists it; `None` for a secret sent the way discovery advertises.
    pub fn method_name(&self) -> Option<&'static str> {
        match self {
            ClientAuth::Secret { method: None, .. } => None,
            ClientAuth::Secret {
                method: Some(ClientAuthMethod::Basic),
                ..
            } => Some("client_secret_basic"),
            ClientAuth::Secret {
                method: Some(ClientAuthMethod::Post),
                ..
            } => Some("client_secret_post"),
            ClientAuth::PrivateKeyJwt(_) => Some("private_key_jwt"),
            ClientAuth::TlsClientAuth(_) => Some("tls_client_auth"),
        }
    }

    /// The certificate and key for the TLS connections to the provider, if any.
    pub fn identity(&self) -> Option<&ClientIdentity> {
        match self {
            ClientAuth::TlsClientAuth(identity) => Some(identity),
            _ => None,
        }
    }
}

/// The key `private_key_jwt` assertions are signed with.
#[derive(Clone)]
pub struct ClientKey {
    /// ES256 for a P-256 key, RS256 for an RSA key.
    pub alg: Algorithm,
    /// The private key.
    pub key: Arc<EncodingKey>,
    /// The assertion's `kid`, when configured.
    pub kid: Option<String>,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({:?}, [redacted])", self.alg)
    }
}

/// A client certificate chain and its key, ready for the HTTP client.
#[derive(Clone)]
pub struct ClientIdentity(pub reqwest::Identity);

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity([redacted])")
    }
}

/// Extra trust anchors for the provider's TLS certificates (`oidc.provider_ca`).
#[derive(Clone, Default)]
pub struct ProviderCa(pub Vec<reqwest::Certificate>);

impl fmt::Debug for ProviderCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderCa({} certificate(s))", self.0.len())
    }
}

/// Where the client secret is given.
enum SecretSource {
    Inline(String),
    File(String),
    Environment(String),
}

/// `oidc.client_auth` with the files and secret it needs, and nothing it does not: a secret
/// beside a key (or a key beside a secret) is refused rather than silently ignored.
pub(super) fn validate(check: &Check, t: &Table, o: &OidcFile) -> Result<ClientAuth, ConfigError> {
    let chosen = match (o.client_auth, o.token_endpoint_auth_method) {
        (Some(_), Some(_)) => {
            return Err(check.err(
                t.key("token_endpoint_auth_method"),
                format!(
                    "is the older name of {}; set only client_auth",
                    t.key("client_auth")
                ),
            ))
        }
        (Some(c), None) => Some(c),
        (None, Some(ClientAuthMethod::Basic)) => Some(ClientAuthFile::ClientSecretBasic),
        (None, Some(ClientAuthMethod::Post)) => Some(ClientAuthFile::ClientSecretPost),
        (None, None) => None,
    };
    let secret = client_secret(
        check,
        t,
        o.client_secret.clone(),
        o.client_secret_file.clone(),
    )?;
    let unused = |key: &str, set: bool, method: &str| {
        if set {
            Err(check.err(
                t.key(key),
                format!("is not used with client_auth = \"{method}\""),
            ))
        } else {
            Ok(())
        }
    };
    match chosen {
        None | Some(ClientAuthFile::ClientSecretBasic | ClientAuthFile::ClientSecretPost) => {
            let method = match chosen {
                Some(ClientAuthFile::ClientSecretPost) => Some(ClientAuthMethod::Post),
                Some(_) => Some(ClientAuthMethod::Basic),
                None => None,
            };
            for key in ["client_key", "client_key_id", "client_cert"] {
                let set = match key {
                    "client_key" => o.client_key.is_some(),
                    "client_key_id" => o.client_key_id.is_some(),
                    _ => o.client_cert.is_some(),
                };
                unused(key, set, "client_secret_basic\" or \"client_secret_post")?;
            }
            let secret = secret.ok_or_else(|| {
                check.err(
                    t.key("client_secret"),
                    format!(
                        "missing: set client_secret, client_secret_file or {} \
                         (or client_auth = \"private_key_jwt\" or \"tls_client_auth\")",
                        t.env
                    ),
                )
            })?;
            Ok(ClientAuth::Secret { secret, method })
        }
        Some(ClientAuthFile::PrivateKeyJwt) => {
            let method = "private_key_jwt";
            unused("client_secret", secret.is_some(), method)?;
            unused("client_cert", o.client_cert.is_some(), method)?;
            let path = o.client_key.as_deref().ok_or_else(|| {
                check.err(
                    t.key("client_key"),
                    "missing: the key assertions are signed with",
                )
            })?;
            let (alg, key) = signing_key(check, t, path)?;
            if o.client_key_id.as_deref().is_some_and(str::is_empty) {
                return Err(check.err(t.key("client_key_id"), "must not be empty"));
            }
            Ok(ClientAuth::PrivateKeyJwt(ClientKey {
                alg,
                key: Arc::new(key),
                kid: o.client_key_id.clone(),
            }))
        }
        Some(ClientAuthFile::TlsClientAuth) => {
            let method = "tls_client_auth";
            unused("client_secret", secret.is_some(), method)?;
            unused("client_key_id", o.client_key_id.is_some(), method)?;
            let cert = o.client_cert.as_deref().ok_or_else(|| {
                check.err(
                    t.key("client_cert"),
                    "missing: the certificate presented to the provider",
                )
            })?;
            let key = o.client_key.as_deref().ok_or_else(|| {
                check.err(
                    t.key("client_key"),
                    format!("missing: the key of {}", t.key("client_cert")),
                )
            })?;
            Ok(ClientAuth::TlsClientAuth(identity(check, t, cert, key)?))
        }
    }
}

/// The client secret from exactly one of the file, a secret file or the environment.
fn client_secret(
    check: &Check,
    t: &Table,
    inline: Option<String>,
    file: Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let sources = vec![
        Source::new("client_secret", inline.map(SecretSource::Inline)),
        Source::new("client_secret_file", file.map(SecretSource::File)),
        Source::new(&t.env, (check.env)(&t.env).map(SecretSource::Environment)),
    ];
    let secret = match check.exactly_one(&t.key("client_secret"), sources)? {
        Some(SecretSource::Inline(s) | SecretSource::Environment(s)) => s,
        Some(SecretSource::File(path)) => {
            let key = t.key("client_secret_file");
            let bytes = check.secret_file(&key, &path)?;
            String::from_utf8(bytes).map_err(|_| check.err(key, "is not UTF-8 text"))?
        }
        None => return Ok(None),
    };
    if secret.is_empty() {
        return Err(check.err(t.key("client_secret"), "must not be empty"));
    }
    Ok(Some(Secret::new(secret)))
}

/// A P-256 key (ES256) or an RSA key of at least 2048 bits (RS256), PKCS#8 or PKCS#1 PEM.
fn signing_key(
    check: &Check,
    t: &Table,
    path: &str,
) -> Result<(Algorithm, EncodingKey), ConfigError> {
    let key = t.key("client_key");
    let pem = check.read(&key, path)?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| check.err(&key, format!("`{path}` holds no PEM private key ({e})")))?;
    let rng = ring::rand::SystemRandom::new();
    let bad = |what: &str| check.err(&key, format!("`{path}`: {what}"));
    match &der {
        PrivateKeyDer::Pkcs8(p8) => {
            let der = p8.secret_pkcs8_der();
            if ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &rng,
            )
            .is_ok()
            {
                let k = EncodingKey::from_ec_der(der);
                return Ok((Algorithm::ES256, k));
            }
            let pair = ring::signature::RsaKeyPair::from_pkcs8(der)
                .map_err(|_| bad("neither a P-256 (ES256) nor an RSA (RS256) key"))?;
            rsa(pair.public().modulus_len(), &pem, &bad)
        }
        PrivateKeyDer::Pkcs1(p1) => {
            let pair = ring::signature::RsaKeyPair::from_der(p1.secret_pkcs1_der())
                .map_err(|_| bad("an unreadable RSA key"))?;
            rsa(pair.public().modulus_len(), &pem, &bad)
        }
        _ => Err(bad(
            "a SEC1 EC key; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)",
        )),
    }
}

fn rsa(
    modulus_bytes: usize,
    pem: &[u8],
    bad: &dyn Fn(&str) -> ConfigError,
) -> Result<(Algorithm, EncodingKey), ConfigError> {
    if modulus_bytes < 256 {
        return Err(bad(&format!(
            "an RSA key of {} bits; at least 2048 are required",
            modulus_bytes * 8
        )));
    }
    let key = EncodingKey::from_rsa_pem(pem).map_err(|e| bad(&format!("{e}")))?;
    Ok((Algorithm::RS256, key))
}

/// The client certificate chain and its key, checked to parse and to belong together.
fn identity(
    check: &Check,
    t: &Table,
    cert: &str,
    key: &str,
) -> Result<ClientIdentity, ConfigError> {
    let (cert_key, key_key) = (t.key("client_cert"), t.key("client_key"));
    let cert_pem = check.read(&cert_key, cert)?;
    let chain: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| check.err(&cert_key, format!("`{cert}`: {e}")))?;
    if chain.is_empty() {
        return Err(check.err(&cert_key, format!("`{cert}` holds no certificate")));
    }
    let key_pem = check.read(&key_key, key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| check.err(&key_key, format!("`{key}` holds no PEM private key ({e})")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| check.err(&key_key, format!("`{key}`: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        check.err(
            &key_key,
            format!("`{key}` is not the key of `{cert}` ({e})"),
        )
    })?;
    let mut both = cert_pem;
    both.push(b'\n');
    both.extend_from_slice(&key_pem);
    let identity = reqwest::Identity::from_pem(&both)
        .map_err(|e| check.err(&cert_key, format!("`{cert}`: {e}")))?;
    Ok(ClientIdentity(identity))
}

/// `oidc.provider_ca`: one or more PEM certificates.
pub(super) fn provider_ca(
    check: &Check,
    t: &Table,
    path: Option<&str>,
) -> Result<ProviderCa, ConfigError> {
    let Some(path) = path else {
        return Ok(ProviderCa::default());
    };
    let key = t.key("provider_ca");
    let pem = check.read(&key, path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| check.err(&key, format!("`{path}`: {e}")))?;
    if certs.is_empty() {
        return Err(check.err(&key, format!("`{path}` holds no certificate")));
    }
    Ok(ProviderCa(certs))
}
