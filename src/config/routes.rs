//! `[[routes]]` and `[authorization]`: who may reach which paths.

use super::check::Check;
use super::file::{AuthorizationFile, RouteFile, RoutePolicyFile, TokenTypeFile};
use super::{ConfigError, OidcProviders};
use crate::client_cert::{CertRequirements, SanPattern, SubjectPattern};
use crate::policy::{Access, DomainRule, Requirements, RouteSpec, RouteTable, TokenKind};

pub(super) fn routes(
    check: &Check,
    routes: Vec<RouteFile>,
    oidc: Option<&OidcProviders>,
) -> Result<RouteTable, ConfigError> {
    let specs = routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| route(check, &format!("routes[{i}]"), r, oidc))
        .collect::<Result<Vec<_>, _>>()?;
    RouteTable::new(specs).map_err(|(i, reason)| check.err(format!("routes[{i}]"), reason))
}

pub(super) fn authorization(
    check: &Check,
    a: AuthorizationFile,
) -> Result<Requirements, ConfigError> {
    let lists = Lists {
        scopes: Vec::new(),
        groups: a.allowed_groups,
        emails: a.allowed_emails,
        domains: a.allowed_email_domains,
    };
    requirements(
        check,
        "authorization",
        lists,
        [
            "",
            "allowed_groups",
            "allowed_emails",
            "allowed_email_domains",
        ],
    )
}

fn route(
    check: &Check,
    table: &str,
    r: RouteFile,
    oidc: Option<&OidcProviders>,
) -> Result<RouteSpec, ConfigError> {
    let at = |k: &str| format!("{table}.{k}");
    if let Some(id) = &r.provider {
        match oidc {
            None => return Err(check.err(at("provider"), "there is no [oidc] to sign in with")),
            Some(o) if o.get(id).is_none() => {
                let known: Vec<&str> = o.iter().map(|p| p.id.as_str()).collect();
                return Err(check.err(
                    at("provider"),
                    format!("`{id}` is not a provider (they are {known:?})"),
                ));
            }
            Some(_) => {}
        }
        if matches!(r.policy, Some(RoutePolicyFile::Public)) {
            return Err(check.err(
                at("provider"),
                "a public route signs no one in: it cannot choose a provider",
            ));
        }
    }
    let methods = r
        .methods
        .iter()
        .enumerate()
        .map(|(j, m)| {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                check.err(
                    format!("{table}.methods[{j}]"),
                    format!("`{m}` is not an HTTP method"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let token_kind = match r.token_type.unwrap_or(TokenTypeFile::Any) {
        TokenTypeFile::Any => TokenKind::Any,
        TokenTypeFile::Access => TokenKind::Access,
        TokenTypeFile::Id => TokenKind::Id,
    };
    if token_kind == TokenKind::Id && !r.scopes.is_empty() {
        return Err(check.err(
            at("scopes"),
            "ID tokens carry no scopes: token_type = \"id\" with scopes can never be met",
        ));
    }
    let client_cert = client_cert(check, table, &r)?;
    let lists = Lists {
        scopes: r.scopes,
        groups: r.groups,
        emails: r.emails,
        domains: r.email_domains,
    };
    let access = match r.policy.unwrap_or(RoutePolicyFile::Authenticated) {
        RoutePolicyFile::Public if !lists.is_empty() => {
            return Err(check.err(
                at("policy"),
                "a public route cannot also require scopes, groups or emails",
            ))
        }
        RoutePolicyFile::Public => Access::Public,
        RoutePolicyFile::Authenticated => Access::Authenticated(requirements(
            check,
            table,
            lists,
            ["scopes", "groups", "emails", "email_domains"],
        )?),
    };
    if r.path.starts_with(crate::classify::RESERVED_PREFIX) {
        return Err(check.err(
            at("path"),
            "/oauth2/ belongs to portcullis; no route applies there",
        ));
    }
    Ok(RouteSpec {
        path: r.path,
        exact: r.exact,
        methods,
        host: r.host,
        access,
        token_kind,
        client_cert,
        require_bound_tokens: r.require_bound_tokens,
        provider: r.provider,
    })
}

/// `client_cert`, `client_cert_subjects`, `client_cert_sans`: either list implies a
/// certificate is required, so `client_cert = false` beside one is a contradiction.
fn client_cert(check: &Check, table: &str, r: &RouteFile) -> Result<CertRequirements, ConfigError> {
    let subjects = r
        .client_cert_subjects
        .iter()
        .enumerate()
        .map(|(i, s)| {
            SubjectPattern::parse(s)
                .map_err(|e| check.err(format!("{table}.client_cert_subjects[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sans = r
        .client_cert_sans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            SanPattern::parse(s).map_err(|e| check.err(format!("{table}.client_cert_sans[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let named = !(subjects.is_empty() && sans.is_empty());
    if r.client_cert == Some(false) && named {
        return Err(check.err(
            format!("{table}.client_cert"),
            "is false, but client_cert_subjects or client_cert_sans ask for a certificate",
        ));
    }
    Ok(CertRequirements {
        required: r.client_cert.unwrap_or(false) || named,
        subjects,
        sans,
    })
}

/// The rule lists of a route or of `[authorization]`, as written.
struct Lists {
    scopes: Vec<String>,
    groups: Vec<String>,
    emails: Vec<String>,
    domains: Vec<String>,
}

impl Lists {
    fn is_empty(&self) -> bool {
        self.scopes.is_empty()
            && self.groups.is_empty()
            && self.emails.is_empty()
            && self.domains.is_empty()
    }
}

/// Requirements from lists; `names` are the keys of scopes, groups, emails, domains in `table`.
fn requirements(
    check: &Check,
    table: &str,
    lists: Lists,
    names: [&str; 4],
) -> Result<Requirements, ConfigError> {
    let Lists {
        scopes,
        groups,
        emails,
        domains,
    } = lists;
    let key = |n: usize, i: usize| format!("{table}.{}[{i}]", names[n]);
    if let Some(i) = scopes
        .iter()
        .position(|v| v.trim().is_empty() || v.chars().any(char::is_whitespace))
    {
        return Err(check.err(key(0, i), "must be one word, not empty"));
    }
    // RFC 6749 §3.3 scope-token: printable ASCII without `"` and `\` (they are quoted into
    // WWW-Authenticate).
    if let Some(i) = scopes.iter().position(|s| {
        !s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    }) {
        return Err(check.err(key(0, i), "is not a valid scope"));
    }
    // Group names may have spaces ("Domain Admins") but travel comma-joined: one with a
    // comma could never match (it is dropped from identities for that reason).
    if let Some(i) = groups
        .iter()
        .position(|g| g.trim().is_empty() || g.contains(',') || g.chars().any(char::is_control))
    {
        return Err(check.err(key(1, i), "must be a group name: not empty, no comma"));
    }
    let emails = emails
        .iter()
        .enumerate()
        .map(|(i, e)| {
            crate::policy::parse_email(e)
                .map(|(address, _)| address)
                .ok_or_else(|| check.err(key(2, i), "is not an email address"))
        })
        .collect::<Result<_, _>>()?;
    let email_domains = domains
        .iter()
        .enumerate()
        .map(|(i, d)| DomainRule::parse(d).map_err(|e| check.err(key(3, i), e)))
        .collect::<Result<_, _>>()?;
    Ok(Requirements {
        scopes,
        groups,
        emails,
        email_domains,
    })
}
