//! OAuth 2.0 Protected Resource Metadata (RFC 9728): what a program that met a 401 needs to
//! find where to get a token. Served at `/.well-known/oauth-protected-resource` (and, for a
//! resource with a path, at that path after it), and named by `resource_metadata` in every
//! `WWW-Authenticate: Bearer` challenge, so that an API or MCP client discovers the
//! authorization server from the 401 alone.
//!
//! The resource is the origin a request names (`https://app.example.com`), unless
//! `bearer.resource` names one; the authorization servers are the issuers whose tokens are
//! accepted here, unless `bearer.authorization_servers` lists them.

use serde_json::{json, Value};
use url::Url;

use crate::config::Config;

/// The well-known path (RFC 9728 §3).
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata, as far as the configuration says it (the origin comes from each request).
pub(crate) struct ResourceMetadata {
    /// `bearer.resource`, when set.
    resource: Option<Url>,
    authorization_servers: Vec<String>,
    scopes: Vec<String>,
    /// DPoP's algorithms, when `[bearer.dpop]` accepts proofs.
    dpop_algs: Option<Vec<String>>,
}

impl ResourceMetadata {
    /// The metadata of `config`; `None` when no bearer token could ever be accepted (a
    /// browser-only deployment has no authorization server to point at).
    pub(crate) fn of(config: &Config) -> Option<ResourceMetadata> {
        let bearer = &config.bearer;
        let authorization_servers = match &bearer.authorization_servers {
            Some(listed) => listed.clone(),
            None => {
                let login_tokens = !bearer.audiences.is_empty() || bearer.accept_id_tokens;
                let login = config
                    .oidc
                    .iter()
                    .flat_map(|o| o.iter())
                    .filter(|_| login_tokens)
                    .map(|o| o.issuer.clone());
                login
                    .chain(bearer.issuers.iter().map(|i| i.issuer.clone()))
                    .collect()
            }
        };
        if authorization_servers.is_empty() {
            return None;
        }
        let mut scopes: Vec<String> = Vec::new();
        for route in config.routes.routes() {
            if let crate::policy::Access::Authenticated(r) = route.access() {
                for s in &r.scopes {
                    if !scopes.contains(s) {
                        scopes.push(s.clone());
                    }
                }
            }
        }
        Some(ResourceMetadata {
            resource: bearer.resource.clone(),
            authorization_servers,
            scopes,
            dpop_algs: bearer
                .dpop
                .as_ref()
                .map(|d| d.algorithms.iter().map(|a| format!("{a:?}")).collect()),
        })
    }

    /// The resource a request for `host` over `scheme` reaches: `bearer.resource`, or the
    /// request's origin.
    fn resource(&self, scheme: &str, host: Option<&str>) -> Option<String> {
        Some(match &self.resource {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None => format!("{scheme}://{}", host?),
        })
    }

    /// Where the metadata of that resource is (RFC 9728 §3.1: the well-known path inserted
    /// between the origin and the resource's path); `None` for a request that names no host
    /// when no resource is configured.
    pub(crate) fn url(&self, scheme: &str, host: Option<&str>) -> Option<String> {
        Some(match &self.resource {
            Some(url) => {
                let path = url.path().trim_end_matches('/');
                format!("{}{WELL_KNOWN}{path}", url.origin().ascii_serialization())
            }
            None => format!("{scheme}://{}{WELL_KNOWN}", host?),
        })
    }

    /// The document served at `path` (the well-known path, or it followed by the resource's
    /// path); `None` for a path that names no resource here.
    pub(crate) fn document(&self, path: &str, scheme: &str, host: Option<&str>) -> Option<Value> {
        let own = match &self.resource {
            Some(url) => format!("{WELL_KNOWN}{}", url.path().trim_end_matches('/')),
            None => WELL_KNOWN.to_string(),
        };
        if path != own {
            return None;
        }
        let mut doc = json!({
            "resource": self.resource(scheme, host)?,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if !self.scopes.is_empty() {
            doc["scopes_supported"] = json!(self.scopes);
        }
        if let Some(algs) = &self.dpop_algs {
            doc["dpop_signing_alg_values_supported"] = json!(algs);
        }
        Some(doc)
    }
}
