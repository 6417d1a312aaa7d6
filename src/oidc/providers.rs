//! The identity providers browsers sign in with, as one set: one for a lone `[oidc]`, one
//! per `[[oidc.providers]]` entry.
//!
//! Everything that needs "the provider" asks the set which one: a login by its id (from
//! `/oauth2/start?provider=`, the route, or the only one), a session by the provider it
//! records, a logout token by its issuer. Each provider is loaded, probed and reported on
//! its own, so an outage of one leaves the others serving.

use std::sync::Arc;

use super::discovery::FetchError;
use super::{Provider, ProviderSettings, Readiness};
use crate::config::{Headers, OidcProviders, Session};
use crate::session::Identity;

/// The identity providers, never none.
pub struct Providers {
    /// In the order of the configuration; ids and issuers unique.
    all: Vec<Arc<Provider>>,
    /// Built by a reload for an issuer the configuration before did not have.
    first_seen: Vec<Arc<Provider>>,
}

impl Providers {
    /// One provider per configured one; with `previous` (the set before a reload), a
    /// provider of the same issuer hands over its metadata and keys (see
    /// [`Provider::adopt`]).
    pub fn new(
        oidc: &OidcProviders,
        session: &Session,
        headers: &Headers,
        previous: Option<&Providers>,
    ) -> anyhow::Result<Providers> {
        let mut all = Vec::with_capacity(oidc.len());
        let mut first_seen = Vec::new();
        for o in oidc.iter() {
            let provider = Arc::new(Provider::new(ProviderSettings::new(o, session, headers))?);
            let mut known = false;
            for before in previous.iter().flat_map(|p| p.iter()) {
                known |= provider.adopt(before).map_err(|reason| {
                    anyhow::anyhow!("provider {}: client_auth: {reason}", o.id)
                })?;
            }
            if previous.is_some() && !known {
                first_seen.push(provider.clone());
            }
            all.push(provider);
        }
        Ok(Providers { all, first_seen })
    }

    /// Loads the providers a reload names for the first time, so that a configuration whose
    /// new provider cannot be reached is refused before it serves anyone. A provider the
    /// configuration before had is not asked again: if it is down, it was down before, and a
    /// change elsewhere in the file must not wait for it.
    pub async fn load_new(&self) -> Result<(), FetchError> {
        for provider in &self.first_seen {
            provider.load().await?;
        }
        Ok(())
    }

    /// The provider of this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        self.all.iter().find(|p| p.id() == id)
    }

    /// The provider that issues as `issuer` (the `iss` of its tokens).
    pub fn by_issuer(&self, issuer: &str) -> Option<&Arc<Provider>> {
        self.all.iter().find(|p| p.oidc().issuer == issuer)
    }

    /// The provider, when there is only one: what a login that names none uses.
    pub fn only(&self) -> Option<&Arc<Provider>> {
        match self.all.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The provider a session was signed in with. A session records its provider's id and
    /// issuer; one from before several providers records neither and belongs to the only
    /// provider there is. `None`: the provider is gone from the configuration, or its id now
    /// names another issuer: the session is not usable.
    pub fn of_session(&self, identity: &Identity) -> Option<&Arc<Provider>> {
        let provider = match &identity.provider {
            Some(id) => self.get(id)?,
            None => self.only()?,
        };
        match &identity.issuer {
            Some(iss) if *iss != provider.oidc().issuer => None,
            _ => Some(provider),
        }
    }

    /// Every provider, in the order of the configuration.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.all.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Never true; beside [`Providers::len`] for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// How ready sign-in is as a whole: not ready only when no provider is loaded, ready
    /// when every one is; otherwise degraded with the first unready provider's reason. An
    /// outage of one provider must not take a replica out of service for the others'
    /// users.
    pub fn readiness(&self) -> Readiness {
        let states: Vec<Readiness> = self.all.iter().map(|p| p.readiness()).collect();
        if let Some(all_down) = states
            .iter()
            .all(|r| matches!(r, Readiness::NotReady(_)))
            .then(|| states.first().cloned())
            .flatten()
        {
            return all_down;
        }
        states
            .into_iter()
            .find(|r| *r != Readiness::Ready)
            .map_or(Readiness::Ready, |r| match r {
                Readiness::NotReady(e) => Readiness::Degraded(e),
                other => other,
            })
    }
}
