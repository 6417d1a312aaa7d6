//! oauth2-proxy's restrictions on `/oauth2/auth`: `allowed_groups`, `allowed_emails` and
//! `allowed_email_domains` in the auth request's own query, as ingress-nginx sends them for
//! one Ingress (`auth-url: …/oauth2/auth?allowed_groups=admins`). Each is a comma-separated
//! list the caller must match one entry of, and each given must hold (as in oauth2-proxy).
//! They only ever narrow what the routes allow: a request the routes refuse stays refused.

use pingora::http::RequestHeader;

use super::query_param;
use crate::access::{Rules, Verdict};
use crate::policy::{parse_email, Decision, DomainRule, Requirements};

/// The restrictions one auth request carries.
#[derive(Debug, Default)]
pub(super) struct Allowed {
    /// One set of requirements per parameter given: all must admit the caller.
    each: Vec<Requirements>,
}

/// What a restricted request became.
pub(super) enum Narrowed {
    /// The verdict to settle (unchanged, or refused by the restrictions).
    Verdict(Verdict),
    /// A public route cannot be narrowed to a group or an address: no one is identified on
    /// it, so the restriction could never be checked (and asking to sign in would loop).
    PublicRoute,
}

impl Allowed {
    /// The restrictions in `req`'s query. A parameter given twice, or an address or domain
    /// that cannot be read one way, is an error (the request is refused, never let through).
    pub(super) fn of_query(req: &RequestHeader) -> Result<Allowed, String> {
        let list = |name: &str| -> Result<Vec<String>, String> {
            let value = query_param(req, name).map_err(|_| format!("{name} given twice"))?;
            Ok(value
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect())
        };
        let mut each = Vec::new();
        let groups = list("allowed_groups")?;
        if !groups.is_empty() {
            each.push(Requirements {
                groups,
                ..Requirements::default()
            });
        }
        let emails = list("allowed_emails")?;
        if !emails.is_empty() {
            for e in &emails {
                parse_email(e).ok_or_else(|| format!("allowed_emails: {e:?} is not an address"))?;
            }
            each.push(Requirements {
                emails,
                ..Requirements::default()
            });
        }
        let domains = list("allowed_email_domains")?;
        if !domains.is_empty() {
            let mut rules = Vec::new();
            for d in &domains {
                // oauth2-proxy's ".example.com" is the domain and every subdomain of it.
                let (exact, subdomains) = match d.strip_prefix('.') {
                    Some(apex) => (apex, true),
                    None => (d.as_str(), false),
                };
                let rule = |text: &str| {
                    DomainRule::parse(text).map_err(|e| format!("allowed_email_domains: {e}"))
                };
                rules.push(rule(exact)?);
                if subdomains {
                    rules.push(rule(&format!(".{exact}"))?);
                }
            }
            each.push(Requirements {
                email_domains: rules,
                ..Requirements::default()
            });
        }
        Ok(Allowed { each })
    }

    /// `verdict`, narrowed: a caller the routes admit must also match every restriction.
    pub(super) fn narrow(&self, verdict: Verdict) -> Narrowed {
        if self.each.is_empty() {
            return Narrowed::Verdict(verdict);
        }
        match verdict {
            Verdict::Public => Narrowed::PublicRoute,
            Verdict::Allow(caller) => {
                let subject = caller.subject();
                let admitted = self
                    .each
                    .iter()
                    .all(|r| r.evaluate(&subject) == Decision::Allow);
                Narrowed::Verdict(if admitted {
                    Verdict::Allow(caller)
                } else {
                    Verdict::Forbidden {
                        caller,
                        by: Rules::FrontProxy,
                    }
                })
            }
            refused => Narrowed::Verdict(refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::access::Caller;
    use crate::session::SessionData;

    fn auth(query: &str) -> Result<Allowed, String> {
        let req =
            RequestHeader::build("GET", format!("/oauth2/auth?{query}").as_bytes(), None).unwrap();
        Allowed::of_query(&req)
    }

    fn caller(email: &str, groups: &[&str]) -> Caller {
        let mut session = SessionData::of_user("u");
        session.identity.email = Some(email.into());
        session.identity.groups = groups.iter().map(|g| g.to_string()).collect();
        session.expires_at = u64::MAX;
        Caller::Session(Arc::new(session))
    }

    fn admits(query: &str, email: &str, groups: &[&str]) -> bool {
        let allowed = auth(query).unwrap();
        match allowed.narrow(Verdict::Allow(caller(email, groups))) {
            Narrowed::Verdict(Verdict::Allow(_)) => true,
            Narrowed::Verdict(Verdict::Forbidden {
                by: Rules::FrontProxy,
                ..
            }) => false,
            _ => panic!("unexpected verdict for {query}"),
        }
    }

    #[test]
    fn each_parameter_is_a_list_of_which_one_must_match_and_all_given_must_hold() {
        assert!(admits("", "a@example.com", &[]));
        assert!(admits(
            "allowed_groups=admins,sre",
            "a@example.com",
            &["sre"]
        ));
        assert!(!admits("allowed_groups=admins", "a@example.com", &["sre"]));
        assert!(admits("allowed_emails=A@Example.com", "a@example.com", &[]));
        assert!(!admits(
            "allowed_emails=b@example.com",
            "a@example.com",
            &[]
        ));
        assert!(admits(
            "allowed_email_domains=example.com",
            "a@example.com",
            &[]
        ));
        assert!(!admits(
            "allowed_email_domains=example.com",
            "a@eu.example.com",
            &[]
        ));
        // oauth2-proxy's ".example.com": the domain and its subdomains, never a look-alike.
        assert!(admits(
            "allowed_email_domains=.example.com",
            "a@example.com",
            &[]
        ));
        assert!(admits(
            "allowed_email_domains=.example.com",
            "a@eu.example.com",
            &[]
        ));
        assert!(!admits(
            "allowed_email_domains=.example.com",
            "a@badexample.com",
            &[]
        ));
        // Given together, each must hold (a group alone is not enough).
        let both = "allowed_groups=sre&allowed_email_domains=corp.example";
        assert!(admits(both, "a@corp.example", &["sre"]));
        assert!(!admits(both, "a@example.com", &["sre"]));
        // Empty lists restrict nothing, as in oauth2-proxy.
        assert!(admits("allowed_groups=", "a@example.com", &[]));
    }

    #[test]
    fn what_cannot_be_read_one_way_is_refused() {
        assert!(auth("allowed_groups=a&allowed_groups=b").is_err());
        assert!(auth("allowed_emails=not-an-address").is_err());
        assert!(auth("allowed_email_domains=*.example.com").is_err());
    }

    #[test]
    fn restrictions_never_loosen_a_refusal_and_cannot_apply_to_a_public_route() {
        let allowed = auth("allowed_groups=sre").unwrap();
        assert!(matches!(
            allowed.narrow(Verdict::Unauthenticated),
            Narrowed::Verdict(Verdict::Unauthenticated)
        ));
        assert!(matches!(
            allowed.narrow(Verdict::Public),
            Narrowed::PublicRoute
        ));
        let none = auth("").unwrap();
        assert!(matches!(
            none.narrow(Verdict::Public),
            Narrowed::Verdict(Verdict::Public)
        ));
    }
}
