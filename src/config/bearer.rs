//! `[bearer]`: which tokens API clients may present, from the login issuer and from others.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::check::{Check, Source};
use super::file::{BearerFile, DpopFile, IssuerFile};
use super::{ClaimNames, ConfigError, OidcProviders, Session};
use crate::jwt::keys::KeySet;

/// The validated `[bearer]`.
#[derive(Debug)]
pub struct Bearer {
    /// Audiences accepted on the login issuer's access tokens.
    pub audiences: Vec<String>,
    /// Whether the login issuer's ID tokens pass as bearer tokens.
    pub accept_id_tokens: bool,
    /// Clock skew tolerated on token times.
    pub leeway: Duration,
    /// How many verified tokens are remembered.
    pub cache_entries: usize,
    /// Only sender-constrained tokens of the login issuer are accepted.
    pub require_bound_tokens: bool,
    /// Issuers besides the login issuer.
    pub issuers: Vec<BearerIssuer>,
    /// DPoP (RFC 9449), when accepted.
    pub dpop: Option<Dpop>,
    /// The protected resource's identifier (RFC 9728), when not each request's origin.
    pub resource: Option<Url>,
    /// The authorization servers the resource metadata names, when not the issuers whose
    /// tokens are accepted.
    pub authorization_servers: Option<Vec<String>>,
}

/// The validated `[bearer.dpop]`.
#[derive(Debug, Clone)]
pub struct Dpop {
    /// Algorithms a proof may be signed with (asymmetric only).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// How old a proof's `iat` may be.
    pub proof_lifetime: Duration,
    /// How many proofs (`jti`s) are remembered to refuse replays.
    pub replay_cache_entries: usize,
    /// Proofs must carry a nonce portcullis handed out (`DPoP-Nonce`).
    pub use_dpop_nonce: bool,
}

impl Bearer {
    /// The size of the DPoP replay cache: the configured one, or the default while DPoP is
    /// off (a reload that turns it on finds the cache this process started with).
    pub fn dpop_replay_cache_entries(&self) -> usize {
        self.dpop
            .as_ref()
            .map_or(DPOP_REPLAY_CACHE_ENTRIES, |d| d.replay_cache_entries)
    }
}

/// `bearer.dpop.replay_cache_entries` by default.
const DPOP_REPLAY_CACHE_ENTRIES: usize = 100_000;

/// Asymmetric algorithms a DPoP proof may use, the default set.
const DPOP_ALGORITHMS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];

fn dpop(check: &Check, d: DpopFile, have_secrets: bool) -> Result<Option<Dpop>, ConfigError> {
    if d.enabled == Some(false) {
        return Ok(None);
    }
    if d.use_dpop_nonce && !have_secrets {
        return Err(check.err(
            "bearer.dpop.use_dpop_nonce",
            "needs session.secrets (or PORTCULLIS_SESSION_SECRETS): nonces are keyed by them \
             so that every replica accepts the others'",
        ));
    }
    let names = d
        .algorithms
        .unwrap_or_else(|| DPOP_ALGORITHMS.iter().map(|a| a.to_string()).collect());
    if names.is_empty() {
        return Err(check.err("bearer.dpop.algorithms", "lists no algorithm"));
    }
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let alg: jsonwebtoken::Algorithm = name
            .parse()
            .ok()
            .filter(|a: &jsonwebtoken::Algorithm| {
                a.family() != jsonwebtoken::AlgorithmFamily::Hmac
            })
            .ok_or_else(|| {
                check.err(
                    format!("bearer.dpop.algorithms[{i}]"),
                    format!("`{name}` is not an asymmetric JWS algorithm (ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA)"),
                )
            })?;
        algorithms.push(alg);
    }
    let replay_cache_entries = d.replay_cache_entries.unwrap_or(DPOP_REPLAY_CACHE_ENTRIES);
    if !(1_000..=10_000_000).contains(&replay_cache_entries) {
        return Err(check.err(
            "bearer.dpop.replay_cache_entries",
            "must be between 1000 and 10000000",
        ));
    }
    Ok(Some(Dpop {
        algorithms,
        proof_lifetime: check.duration(
            "bearer.dpop.proof_lifetime",
            d.proof_lifetime.as_deref(),
            Duration::from_secs(60),
            Duration::from_secs(600),
        )?,
        replay_cache_entries,
        use_dpop_nonce: d.use_dpop_nonce,
    }))
}

/// One `[[bearer.issuers]]`.
#[derive(Debug)]
pub struct BearerIssuer {
    /// Exactly as configured; compared to `iss` byte for byte.
    pub issuer: String,
    /// At least one of these must be in a token's `aud`.
    pub audiences: Vec<String>,
    /// Where its verification keys come from.
    pub keys: IssuerKeys,
    /// Which claims name the user, the email and the groups.
    pub claims: ClaimNames,
    /// Only sender-constrained tokens of this issuer are accepted.
    pub require_bound_tokens: bool,
}

/// Where an extra issuer's verification keys come from.
pub enum IssuerKeys {
    /// The JWKS its discovery document names.
    Discovery,
    /// A JWKS at a fixed address.
    JwksUrl(String),
    /// Public keys from files, or an HMAC shared secret.
    Static(Arc<KeySet>),
}

impl fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssuerKeys::Discovery => f.write_str("Discovery"),
            IssuerKeys::JwksUrl(u) => write!(f, "JwksUrl({u})"),
            IssuerKeys::Static(k) => write!(f, "Static({} key(s))", k.len()),
        }
    }
}

/// The most verified tokens `bearer.cache_entries` may ask to remember.
const MAX_CACHE_ENTRIES: usize = 10_000_000;

/// `[bearer]`; its top-level `audiences`, `accept_id_tokens` and `require_bound_tokens` are
/// about the login issuer (`oidc`), and DPoP nonces are keyed by the `session` secrets.
pub(super) fn validate(
    check: &Check,
    b: BearerFile,
    oidc: Option<&OidcProviders>,
    session: Option<&Session>,
) -> Result<Bearer, ConfigError> {
    check.audiences("bearer.audiences", &b.audiences, false)?;
    match oidc {
        Some(oidc) => {
            if let Some(i) = b
                .audiences
                .iter()
                .position(|a| oidc.iter().any(|o| *a == o.client_id))
            {
                return Err(check.err(
                    format!("bearer.audiences[{i}]"),
                    "is a client id: ID tokens are governed by bearer.accept_id_tokens",
                ));
            }
        }
        None => {
            let login_only = [
                ("audiences", !b.audiences.is_empty()),
                ("accept_id_tokens", b.accept_id_tokens.is_some()),
                ("require_bound_tokens", b.require_bound_tokens),
            ];
            if let Some((key, _)) = login_only.iter().find(|(_, set)| *set) {
                return Err(check.err(
                    format!("bearer.{key}"),
                    "is about the login issuer's tokens, and there is no [oidc]: set it on \
                     each [[bearer.issuers]] instead",
                ));
            }
        }
    }
    let leeway = check.leeway("bearer.leeway", b.leeway.as_deref())?;
    let cache_entries = match b.cache_entries {
        Some(n) if n > MAX_CACHE_ENTRIES => {
            return Err(check.err(
                "bearer.cache_entries",
                format!("must be at most {MAX_CACHE_ENTRIES}"),
            ))
        }
        Some(n) => n,
        None => 10_000,
    };
    let mut issuers: Vec<BearerIssuer> = Vec::new();
    for (i, f) in b.issuers.into_iter().enumerate() {
        let table = format!("bearer.issuers[{i}]");
        if oidc.is_some_and(|o| o.iter().any(|o| o.issuer == f.issuer))
            || issuers.iter().any(|other| other.issuer == f.issuer)
        {
            return Err(check.err(
                format!("{table}.issuer"),
                "appears twice (the login issuer is configured by [oidc] and [bearer] audiences)",
            ));
        }
        issuers.push(issuer(check, &table, f)?);
    }
    Ok(Bearer {
        audiences: b.audiences,
        accept_id_tokens: b.accept_id_tokens.unwrap_or(false),
        leeway,
        cache_entries,
        require_bound_tokens: b.require_bound_tokens,
        issuers,
        dpop: match b.dpop {
            Some(d) => dpop(check, d, session.is_some())?,
            None => None,
        },
        resource: b
            .resource
            .map(|r| resource_url(check, "bearer.resource", &r))
            .transpose()?,
        authorization_servers: match b.authorization_servers {
            Some(list) if list.is_empty() => {
                return Err(check.err(
                    "bearer.authorization_servers",
                    "lists none: leave it out to name the issuers accepted here",
                ))
            }
            Some(list) => {
                for (i, s) in list.iter().enumerate() {
                    resource_url(check, &format!("bearer.authorization_servers[{i}]"), s)?;
                }
                Some(list)
            }
            None => None,
        },
    })
}

/// An absolute http(s) URL without query or fragment (RFC 9728 §1.2, RFC 8414 §2).
fn resource_url(check: &Check, key: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| check.err(key, format!("not an absolute URL ({e})")))?;
    check.scheme(key, &url, false)?;
    if url.query().is_some() || url.fragment().is_some() || url.host().is_none() {
        return Err(check.err(
            key,
            "must be an http(s) URL with a host and no query or fragment",
        ));
    }
    Ok(url)
}

/// Where `[[bearer.issuers]]` says its keys are.
enum KeySource {
    JwksUrl(String),
    PublicKeys(Vec<String>),
    SharedSecret(String),
    SharedSecretFile(String),
}

fn issuer(check: &Check, table: &str, f: IssuerFile) -> Result<BearerIssuer, ConfigError> {
    let at = |k: &str| format!("{table}.{k}");
    let url =
        Url::parse(&f.issuer).map_err(|e| check.err(at("issuer"), format!("not a URL ({e})")))?;
    check.audiences(&at("audiences"), &f.audiences, true)?;
    let sources = vec![
        Source::new("jwks_url", f.jwks_url.map(KeySource::JwksUrl)),
        Source::new("public_keys", f.public_keys.map(KeySource::PublicKeys)),
        Source::new(
            "shared_secret",
            f.shared_secret.map(KeySource::SharedSecret),
        ),
        Source::new(
            "shared_secret_file",
            f.shared_secret_file.map(KeySource::SharedSecretFile),
        ),
    ];
    // None of them means discovery.
    let keys = match check.exactly_one(&at("jwks_url"), sources)? {
        None => {
            check.scheme(&at("issuer"), &url, f.insecure_allow_http)?;
            IssuerKeys::Discovery
        }
        Some(KeySource::JwksUrl(u)) => {
            let parsed = Url::parse(&u)
                .map_err(|e| check.err(at("jwks_url"), format!("not a URL ({e})")))?;
            check.scheme(&at("jwks_url"), &parsed, f.insecure_allow_http)?;
            IssuerKeys::JwksUrl(u)
        }
        Some(KeySource::PublicKeys(paths)) => {
            if paths.is_empty() {
                return Err(check.err(at("public_keys"), "lists no file"));
            }
            let paths: Vec<std::path::PathBuf> = paths.iter().map(Into::into).collect();
            paths.iter().for_each(|p| check.names(p));
            let set = KeySet::from_files(&paths).map_err(|e| check.err(at("public_keys"), e))?;
            IssuerKeys::Static(Arc::new(set))
        }
        Some(KeySource::SharedSecret(secret)) => {
            shared_secret(check, &at("shared_secret"), secret.into_bytes())?
        }
        Some(KeySource::SharedSecretFile(path)) => {
            let key = at("shared_secret_file");
            shared_secret(check, &key, check.secret_file(&key, &path)?)?
        }
    };
    Ok(BearerIssuer {
        claims: check.claim_names(table, f.user_claim, f.email_claim, f.groups_claim)?,
        issuer: f.issuer,
        audiences: f.audiences,
        keys,
        require_bound_tokens: f.require_bound_tokens,
    })
}

/// HMAC keys shorter than the hash are guessable; RFC 7518 §3.2 asks for at least 256 bits.
fn shared_secret(check: &Check, key: &str, secret: Vec<u8>) -> Result<IssuerKeys, ConfigError> {
    if secret.len() < 32 {
        return Err(check.err(key, "must be at least 32 bytes"));
    }
    Ok(IssuerKeys::Static(Arc::new(KeySet::shared_secret(&secret))))
}
