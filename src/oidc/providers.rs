//! The identity providers portcullis knows, as one set.
//!
//! Today the set holds one provider, the one browsers sign in with (`[oidc]`). Everything
//! that needs "the provider" asks the set, so a second one is a new entry here (and its
//! configuration), not a change to every caller.

use std::sync::Arc;

use super::discovery::FetchError;
use super::{Provider, ProviderSettings, Readiness};
use crate::config::{Headers, Oidc, Session};

/// The identity providers, one today.
pub struct Providers {
    /// Never empty; the first is the one browsers sign in with.
    all: Vec<Arc<Provider>>,
    /// Built by a reload for an issuer the configuration before did not have.
    first_seen: Vec<Arc<Provider>>,
}

impl Providers {
    /// One provider for `[oidc]`; with `previous` (the set before a reload), a provider of
    /// the same issuer hands over its metadata and keys (see [`Provider::adopt`]).
    pub fn new(
        oidc: &Oidc,
        session: &Session,
        headers: &Headers,
        previous: Option<&Providers>,
    ) -> anyhow::Result<Providers> {
        let login = Arc::new(Provider::new(ProviderSettings::new(
            oidc, session, headers,
        ))?);
        let mut known = false;
        for before in previous.iter().flat_map(|p| p.iter()) {
            known |= login
                .adopt(before)
                .map_err(|reason| anyhow::anyhow!("oidc.client_auth: {reason}"))?;
        }
        let first_seen = match previous {
            Some(_) if !known => vec![login.clone()],
            _ => Vec::new(),
        };
        Ok(Providers {
            all: vec![login],
            first_seen,
        })
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

    /// The provider browsers sign in with.
    pub fn login(&self) -> &Arc<Provider> {
        &self.all[0]
    }

    /// Every provider, for their upkeep in the background.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.all.iter()
    }

    /// How ready the set is: as ready as its least ready provider.
    pub fn readiness(&self) -> Readiness {
        self.all
            .iter()
            .map(|p| p.readiness())
            .max_by_key(Readiness::severity)
            .unwrap_or(Readiness::Ready)
    }
}
