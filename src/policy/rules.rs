//! Who may pass: the requirements a route (or the global `[authorization]` table) places on an
//! authenticated caller, and their evaluation.
//!
//! Matching is deliberately literal. Scopes and groups compare byte for byte, as the provider
//! issued them. Email addresses compare whole and ASCII case-insensitively, and only after
//! [`parse_email`] has found exactly one `@`: an address such as `a@evil.com@company.com` means
//! different things to different parsers, so it matches no rule at all.

use std::fmt;

/// An email domain rule: "example.com" matches exactly that domain; ".example.com" matches its
/// subdomains only (dot boundary: never "evilexample.com", never "example.com" itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// Lowercase, without the leading dot.
    domain: String,
    scope: DomainScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DomainScope {
    /// The domain itself and nothing else.
    Exact,
    /// Names with at least one more label in front of the domain; never the domain itself.
    Subdomains,
}

impl DomainRule {
    /// Reads `example.com` or `.example.com`, lowercasing it. Refuses anything else: wildcards,
    /// `@`, whitespace, empty labels, trailing dots, non-ASCII (write IDNs as `xn--`).
    pub fn parse(s: &str) -> Result<DomainRule, String> {
        let (scope, domain) = match s.strip_prefix('.') {
            Some(rest) => (DomainScope::Subdomains, rest),
            None => (DomainScope::Exact, s),
        };
        if domain.is_empty() {
            return Err(format!("email domain {s:?}: empty"));
        }
        if domain.len() > 253 {
            return Err(format!("email domain {s:?}: longer than 253 characters"));
        }
        if !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(format!(
                "email domain {s:?}: only letters, digits, '-' and '.' are allowed \
                 (no '@', wildcard, whitespace or non-ASCII)"
            ));
        }
        if domain.split('.').any(str::is_empty) {
            return Err(format!("email domain {s:?}: empty label"));
        }
        Ok(DomainRule {
            domain: domain.to_ascii_lowercase(),
            scope,
        })
    }

    /// Whether the domain of an address (from [`parse_email`]) falls under this rule. Letter
    /// case is ignored in case the caller did not lowercase.
    pub fn matches(&self, domain_lowercase: &str) -> bool {
        let candidate = domain_lowercase.as_bytes();
        let own = self.domain.as_bytes();
        match self.scope {
            DomainScope::Exact => candidate.eq_ignore_ascii_case(own),
            DomainScope::Subdomains => {
                // `x.example.com`: at least one byte, then the dot, then the domain.
                candidate.len() > own.len() + 1
                    && candidate[candidate.len() - own.len()..].eq_ignore_ascii_case(own)
                    && candidate[candidate.len() - own.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for DomainRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            DomainScope::Exact => f.write_str(&self.domain),
            DomainScope::Subdomains => write!(f, ".{}", self.domain),
        }
    }
}

/// Requirements of a route (or the global [authorization] table). Across kinds they AND; within
/// a kind: scopes all-of, groups any-of, and `emails` ∪ `email_domains` form one allow-list (any-of).
/// An empty kind imposes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Every one of these must be among a bearer token's scopes. Browser sessions carry no
    /// scopes, so a route with scopes is for bearer tokens only.
    pub scopes: Vec<String>,
    /// At least one of these must be among the caller's groups.
    pub groups: Vec<String>,
    /// Addresses allowed by name (compared ASCII case-insensitively).
    pub emails: Vec<String>,
    /// Domains whose addresses are allowed.
    pub email_domains: Vec<DomainRule>,
}

/// What a rule sees of the caller.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The caller's address, only if the provider vouches for it (`email_verified` is not
    /// false); `None` otherwise. Not trusted here beyond that: it is parsed again.
    pub email: Option<&'a str>,
    /// The caller's groups, as the provider issued them.
    pub groups: &'a [String],
    /// The bearer token's scopes; `None` for browser sessions (they carry no scopes).
    pub scopes: Option<&'a [String]>,
}

/// The outcome of [`Requirements::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The caller meets every requirement.
    Allow,
    /// Authenticated but not allowed (403).
    Deny,
    /// A bearer token without the scopes (403 `insufficient_scope`, RFC 6750); `needed` lists
    /// the required scopes the token lacks, in the order they are configured.
    InsufficientScope {
        /// The missing scopes.
        needed: Vec<String>,
    },
}

impl Requirements {
    /// True when nothing beyond authentication is required.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
            && self.groups.is_empty()
            && self.emails.is_empty()
            && self.email_domains.is_empty()
    }

    /// Decides whether `who` may pass. Scopes come first, so that a token lacking them learns
    /// which ones to ask for rather than getting a bare 403.
    pub fn evaluate(&self, who: &Subject<'_>) -> Decision {
        if !self.scopes.is_empty() {
            let Some(held) = who.scopes else {
                // A browser session can never satisfy a scope rule.
                return Decision::Deny;
            };
            let needed: Vec<String> = self
                .scopes
                .iter()
                .filter(|s| !held.contains(s))
                .cloned()
                .collect();
            if !needed.is_empty() {
                return Decision::InsufficientScope { needed };
            }
        }
        if !self.groups.is_empty() && !self.groups.iter().any(|g| who.groups.contains(g)) {
            return Decision::Deny;
        }
        if (!self.emails.is_empty() || !self.email_domains.is_empty()) && !self.email_allowed(who) {
            return Decision::Deny;
        }
        Decision::Allow
    }

    fn email_allowed(&self, who: &Subject<'_>) -> bool {
        let Some((address, domain)) = who.email.and_then(parse_email) else {
            return false;
        };
        self.emails
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&address))
            || self.email_domains.iter().any(|rule| rule.matches(&domain))
    }
}

/// Parses an email for rule matching: exactly one '@', non-empty local part and domain, no
/// whitespace/control; returns (whole address lowercased, domain lowercased). None = no usable email.
///
/// The domain must also have no empty label (`a@.example.com`, `a@example.com.`), which would
/// otherwise slip past the dot boundary of a `.example.com` rule or differ from `example.com`
/// only in spelling.
pub fn parse_email(e: &str) -> Option<(String, String)> {
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = e.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    if domain.split('.').any(str::is_empty) {
        return None;
    }
    Some((e.to_ascii_lowercase(), domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn domains(v: &[&str]) -> Vec<DomainRule> {
        v.iter()
            .map(|s| DomainRule::parse(s).expect("valid rule"))
            .collect()
    }

    fn session<'a>(email: Option<&'a str>, groups: &'a [String]) -> Subject<'a> {
        Subject {
            email,
            groups,
            scopes: None,
        }
    }

    #[test]
    fn exact_domain_rule() {
        let rule = DomainRule::parse("example.com").expect("valid");
        assert!(rule.matches("example.com"));
        assert!(rule.matches("EXAMPLE.COM"));
        assert!(!rule.matches("sub.example.com"));
        assert!(!rule.matches("evilexample.com"));
        assert!(!rule.matches("example.com.evil"));
        assert!(!rule.matches("example.co"));
        assert!(!rule.matches(""));
    }

    #[test]
    fn subdomain_rule_has_a_dot_boundary() {
        let rule = DomainRule::parse(".example.com").expect("valid");
        assert!(rule.matches("sub.example.com"));
        assert!(rule.matches("a.b.example.com"));
        assert!(rule.matches("SUB.EXAMPLE.COM"));
        assert!(!rule.matches("example.com"));
        assert!(!rule.matches(".example.com"));
        assert!(!rule.matches("evilexample.com"));
        assert!(!rule.matches("sub.evilexample.com"));
        assert!(!rule.matches("example.com.evil"));
    }

    #[test]
    fn domain_rules_are_lowercased_and_strict() {
        assert_eq!(
            DomainRule::parse("EXAMPLE.COM").expect("valid"),
            DomainRule::parse("example.com").expect("valid")
        );
        assert_eq!(
            DomainRule::parse(".Example.Com")
                .expect("valid")
                .to_string(),
            ".example.com"
        );
        for bad in [
            "",
            ".",
            "..example.com",
            "example.com.",
            "a..b",
            "*.example.com",
            "@example.com",
            "user@example.com",
            " example.com",
            "exämple.com",
            "example.com/x",
        ] {
            assert!(DomainRule::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parse_email_cases() {
        assert_eq!(
            parse_email("Alice@Example.COM"),
            Some(("alice@example.com".to_owned(), "example.com".to_owned()))
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a@evil.com@company.com",
            "alice @example.com",
            "alice@example.com\n",
            "alice@.example.com",
            "alice@example.com.",
            "alice@a..com",
        ] {
            assert_eq!(parse_email(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn empty_requirements_allow() {
        let none = Requirements::default();
        assert!(none.is_empty());
        assert_eq!(none.evaluate(&session(None, &[])), Decision::Allow);
        let token = Subject {
            email: None,
            groups: &[],
            scopes: Some(&[]),
        };
        assert_eq!(none.evaluate(&token), Decision::Allow);
    }

    #[test]
    fn groups_are_any_of() {
        let req = Requirements {
            groups: strings(&["sre", "admin"]),
            ..Requirements::default()
        };
        assert!(!req.is_empty());
        assert_eq!(
            req.evaluate(&session(None, &strings(&["dev", "sre"]))),
            Decision::Allow
        );
        assert_eq!(
            req.evaluate(&session(None, &strings(&["dev"]))),
            Decision::Deny
        );
        assert_eq!(
            req.evaluate(&session(None, &strings(&["SRE"]))),
            Decision::Deny
        );
        assert_eq!(req.evaluate(&session(None, &[])), Decision::Deny);
    }

    #[test]
    fn scopes_are_all_of_and_name_the_missing_ones() {
        let req = Requirements {
            scopes: strings(&["read", "write", "admin"]),
            ..Requirements::default()
        };
        let all = strings(&["admin", "write", "read", "extra"]);
        let some = strings(&["write"]);
        let token = |scopes| Subject {
            email: None,
            groups: &[],
            scopes: Some(scopes),
        };
        assert_eq!(req.evaluate(&token(&all)), Decision::Allow);
        assert_eq!(
            req.evaluate(&token(&some)),
            Decision::InsufficientScope {
                needed: strings(&["read", "admin"])
            }
        );
        assert_eq!(
            req.evaluate(&token(&[])),
            Decision::InsufficientScope {
                needed: strings(&["read", "write", "admin"])
            }
        );
        // A browser session can never satisfy a scope rule.
        assert_eq!(req.evaluate(&session(None, &all)), Decision::Deny);
    }

    #[test]
    fn emails_and_domains_form_one_allow_list() {
        let req = Requirements {
            emails: strings(&["Boss@Partner.org"]),
            email_domains: domains(&["example.com", ".corp.example.net"]),
            ..Requirements::default()
        };
        for allowed in [
            "boss@partner.org",
            "BOSS@PARTNER.ORG",
            "alice@example.com",
            "alice@EXAMPLE.com",
            "bob@eu.corp.example.net",
        ] {
            assert_eq!(
                req.evaluate(&session(Some(allowed), &[])),
                Decision::Allow,
                "{allowed}"
            );
        }
        for denied in [
            "other@partner.org",
            "alice@sub.example.com",
            "alice@evilexample.com",
            "bob@corp.example.net",
            "alice@example.com.evil.org",
            "boss@partner.org@example.org",
        ] {
            assert_eq!(
                req.evaluate(&session(Some(denied), &[])),
                Decision::Deny,
                "{denied}"
            );
        }
        assert_eq!(req.evaluate(&session(None, &[])), Decision::Deny);
    }

    #[test]
    fn two_at_signs_match_nothing() {
        let who = session(Some("a@evil.com@company.com"), &[]);
        let by_address = Requirements {
            emails: strings(&["a@evil.com"]),
            ..Requirements::default()
        };
        let by_domain = Requirements {
            email_domains: domains(&["company.com", "evil.com"]),
            ..Requirements::default()
        };
        assert_eq!(by_address.evaluate(&who), Decision::Deny);
        assert_eq!(by_domain.evaluate(&who), Decision::Deny);
    }

    #[test]
    fn kinds_combine_with_and() {
        let req = Requirements {
            scopes: strings(&["api"]),
            groups: strings(&["sre"]),
            email_domains: domains(&["example.com"]),
            ..Requirements::default()
        };
        let sre = strings(&["sre"]);
        let dev = strings(&["dev"]);
        let api = strings(&["api"]);
        let who = |email, groups, scopes| Subject {
            email,
            groups,
            scopes,
        };
        let good = Some("alice@example.com");
        assert_eq!(req.evaluate(&who(good, &sre, Some(&api))), Decision::Allow);
        assert_eq!(req.evaluate(&who(good, &dev, Some(&api))), Decision::Deny);
        assert_eq!(
            req.evaluate(&who(Some("alice@other.com"), &sre, Some(&api))),
            Decision::Deny
        );
        assert_eq!(req.evaluate(&who(None, &sre, Some(&api))), Decision::Deny);
        // Scopes are checked first, even when other kinds fail too.
        assert_eq!(
            req.evaluate(&who(None, &dev, Some(&[]))),
            Decision::InsufficientScope {
                needed: strings(&["api"])
            }
        );

        let session_rule = Requirements {
            groups: strings(&["sre"]),
            emails: strings(&["alice@example.com"]),
            ..Requirements::default()
        };
        assert_eq!(session_rule.evaluate(&session(good, &sre)), Decision::Allow);
        assert_eq!(
            session_rule.evaluate(&session(Some("bob@example.com"), &sre)),
            Decision::Deny
        );
        assert_eq!(session_rule.evaluate(&session(good, &dev)), Decision::Deny);
    }
}
