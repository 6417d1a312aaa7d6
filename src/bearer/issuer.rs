//! One accepted issuer: what it must say (`iss`, audiences), where its keys come from, and how
//! its claims map to an identity.

use std::sync::Arc;

use crate::config::{self, BearerIssuer, ClaimNames, IssuerKeys as KeysConfig};
use crate::jwt::keys::KeySet;
use crate::jwt::remote::{JwksSource, RemoteKeys};
use crate::oidc::Provider;

pub(super) enum IssuerKeys {
    /// The login provider's own key set.
    Login(Arc<Provider>),
    Remote(Arc<RemoteKeys>),
    Static(Arc<KeySet>),
}

pub(super) struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// For the login issuer when it accepts ID tokens: our client id.
    pub id_audience: Option<String>,
    pub keys: IssuerKeys,
    pub claims: ClaimNames,
    /// Only sender-constrained tokens (`cnf`) of this issuer are accepted.
    pub require_bound: bool,
}

impl Issuer {
    /// The issuer browsers sign in with, as `[bearer]` accepts its tokens: its access tokens
    /// for `bearer.audiences`, its ID tokens (audience: our client id) only when
    /// `bearer.accept_id_tokens`.
    pub(super) fn login(bearer: &config::Bearer, provider: Arc<Provider>) -> Issuer {
        let oidc = provider.oidc();
        let mut audiences = bearer.audiences.clone();
        let id_audience = bearer.accept_id_tokens.then(|| oidc.client_id.clone());
        audiences.extend(id_audience.clone());
        Issuer {
            issuer: oidc.issuer.clone(),
            audiences,
            id_audience,
            claims: oidc.claims.clone(),
            keys: IssuerKeys::Login(provider),
            require_bound: bearer.require_bound_tokens,
        }
    }

    pub(super) fn extra(config: &BearerIssuer, http: reqwest::Client) -> Issuer {
        let keys = match &config.keys {
            KeysConfig::Discovery => IssuerKeys::Remote(Arc::new(RemoteKeys::new(
                JwksSource::Discovery {
                    issuer: config.issuer.clone(),
                },
                http,
            ))),
            KeysConfig::JwksUrl(url) => IssuerKeys::Remote(Arc::new(RemoteKeys::new(
                JwksSource::Url(url.clone()),
                http,
            ))),
            KeysConfig::Static(set) => IssuerKeys::Static(set.clone()),
        };
        Issuer {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            id_audience: None,
            keys,
            claims: config.claims.clone(),
            require_bound: config.require_bound_tokens,
        }
    }

    /// The id of the sign-in provider that issues these tokens, when one does.
    pub(super) fn provider_id(&self) -> Option<&str> {
        match &self.keys {
            IssuerKeys::Login(p) => Some(p.id()),
            IssuerKeys::Remote(_) | IssuerKeys::Static(_) => None,
        }
    }

    pub(super) fn current_keys(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            IssuerKeys::Login(p) => p.keys().current(),
            IssuerKeys::Remote(r) => r.current(),
            IssuerKeys::Static(s) => Some(s.clone()),
        }
    }

    /// Its key set fetched over HTTP, when it has one of its own (the login issuer's belongs
    /// to the provider).
    pub(super) fn remote(&self) -> Option<(&str, &Arc<RemoteKeys>)> {
        match &self.keys {
            IssuerKeys::Remote(r) => Some((&self.issuer, r)),
            _ => None,
        }
    }

    /// How long ago its published keys were last fetched (`None` for configured keys).
    pub(super) fn fetched_ago(&self) -> Option<std::time::Duration> {
        match &self.keys {
            IssuerKeys::Login(p) => p.keys().fetched_ago(),
            IssuerKeys::Remote(r) => r.fetched_ago(),
            IssuerKeys::Static(_) => None,
        }
    }

    /// Why its keys could not be loaded the last time, if they could not.
    pub(super) fn last_error(&self) -> Option<crate::oidc::discovery::FetchError> {
        match &self.keys {
            IssuerKeys::Login(p) => p.keys().last_error(),
            IssuerKeys::Remote(r) => r.last_error(),
            IssuerKeys::Static(_) => None,
        }
    }

    /// Keys for a token naming `kid`, refetching (rate limited) when it is unknown.
    pub(super) async fn keys_for(&self, kid: Option<&str>) -> Option<Arc<KeySet>> {
        match &self.keys {
            IssuerKeys::Login(p) => p.keys().keys_for(kid).await,
            IssuerKeys::Remote(r) => r.keys_for(kid).await,
            IssuerKeys::Static(s) => Some(s.clone()),
        }
    }
}
