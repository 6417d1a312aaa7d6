//! Identity the upstream can verify rather than trust: AWS ALB's headers in ALB's own format
//! (`headers.style = "alb"` or `"both"`), so that an application written for ALB moves over
//! unchanged, and `X-Portcullis-Assertion` (`headers.assertion = true`), a short-lived signed
//! JWT of the caller for upstreams that want proof.
//!
//! Both are ES256, signed with keys derived from the session secrets ([`keys`]); the public
//! keys are served at `/oauth2/alb-keys/<kid>` (PEM, as ALB's key endpoint) and at
//! `/.well-known/portcullis/jwks.json`.

pub(crate) mod keys;

use std::time::Duration;

use http::HeaderName;
use serde_json::{json, Map, Value};

use crate::access::Caller;
use crate::clock::UnixTime;
use crate::config::{Assertion, Config};
use keys::{KeyError, SigningKeys};

/// ALB's headers.
pub(crate) const ALB_IDENTITY: &str = "x-amzn-oidc-identity";
pub(crate) const ALB_ACCESS_TOKEN: &str = "x-amzn-oidc-accesstoken";
pub(crate) const ALB_DATA: &str = "x-amzn-oidc-data";
/// Portcullis' signed assertion.
pub(crate) const ASSERTION: &str = "x-portcullis-assertion";

/// How long ALB's `x-amzn-oidc-data` is valid: ALB's own tokens live about two minutes.
const ALB_DATA_LIFETIME: Duration = Duration::from_secs(120);
/// How long an assertion is valid (at most 5 minutes, as promised to upstreams).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The signed identity headers a configuration asks for, and their keys.
pub(crate) struct SignedIdentity {
    keys: SigningKeys,
    /// The `signer` of ALB's data, when ALB's headers are sent.
    alb_signer: Option<String>,
    assertion: Option<Assertion>,
}

/// What the headers say of where the caller's identity comes from.
pub(crate) struct Origin<'a> {
    /// The OAuth client the provider issued the session's tokens to (ALB's `client`).
    pub client_id: Option<&'a str>,
    /// `scheme://host` of the request: the assertion's default `iss`.
    pub request_origin: Option<String>,
}

impl SignedIdentity {
    /// `None` when neither ALB's headers nor the assertion are asked for.
    pub(crate) fn of(config: &Config) -> Option<SignedIdentity> {
        let headers = &config.headers;
        if headers.alb_signer.is_none() && headers.assertion.is_none() {
            return None;
        }
        let secrets = config
            .session
            .as_ref()
            .map(|s| s.secrets.iter().map(|k| k.0.clone()).collect())
            .unwrap_or_default();
        Some(SignedIdentity {
            keys: SigningKeys::new(secrets),
            alb_signer: headers.alb_signer.clone(),
            assertion: headers.assertion.clone(),
        })
    }

    /// The keys, for the endpoints that publish them.
    pub(crate) fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// The headers to send for `caller` at `now`. A caller without a user gets none (there
    /// is no one to vouch for).
    pub(crate) fn headers(
        &self,
        caller: &Caller,
        origin: &Origin<'_>,
        now: UnixTime,
    ) -> Result<Vec<(HeaderName, String)>, KeyError> {
        let id = caller.identity();
        let Some(user) = id.user.as_deref() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(signer) = &self.alb_signer {
            // ALB names the provider's subject; a session knows it apart from the user claim.
            let sub = match caller {
                Caller::Session(s) => s.sub.as_deref().unwrap_or(user),
                _ => user,
            };
            out.push((HeaderName::from_static(ALB_IDENTITY), sub.to_string()));
            if let Caller::Session(s) = caller {
                if let Some(token) = &s.access_token {
                    out.push((HeaderName::from_static(ALB_ACCESS_TOKEN), token.clone()));
                }
            }
            let exp = now.secs() + ALB_DATA_LIFETIME.as_secs();
            let issuer = id.issuer.as_deref().unwrap_or("");
            let mut header = Map::new();
            header.insert("typ".into(), json!("JWT"));
            header.insert("signer".into(), json!(signer));
            header.insert("iss".into(), json!(issuer));
            header.insert("client".into(), json!(origin.client_id.unwrap_or("")));
            header.insert("exp".into(), json!(exp));
            let mut claims = json!({ "sub": sub, "exp": exp, "iss": issuer });
            add_profile(&mut claims, id);
            out.push((
                HeaderName::from_static(ALB_DATA),
                self.keys.sign(now, header, &claims, true)?,
            ));
        }
        if let Some(assertion) = &self.assertion {
            let issuer = assertion
                .issuer
                .clone()
                .or_else(|| origin.request_origin.clone())
                .unwrap_or_default();
            let mut claims = json!({
                "iss": issuer,
                "aud": assertion.audience,
                "sub": user,
                "iat": now.secs(),
                "exp": now.secs() + ASSERTION_LIFETIME.as_secs(),
                "jti": random_id(),
            });
            add_profile(&mut claims, id);
            if let Some(provider_issuer) = &id.issuer {
                claims["idp"] = json!(provider_issuer);
            }
            let mut header = Map::new();
            header.insert("typ".into(), json!("JWT"));
            out.push((
                HeaderName::from_static(ASSERTION),
                self.keys.sign(now, header, &claims, false)?,
            ));
        }
        Ok(out)
    }
}

/// The profile claims an identity has: email, groups, preferred_username.
fn add_profile(claims: &mut Value, id: &crate::session::Identity) {
    if let Some(email) = &id.email {
        claims["email"] = json!(email);
    }
    if !id.groups.is_empty() {
        claims["groups"] = json!(id.groups);
    }
    if let Some(name) = &id.preferred_username {
        claims["preferred_username"] = json!(name);
    }
}

/// 128 random bits, hex: an assertion's `jti`.
fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
