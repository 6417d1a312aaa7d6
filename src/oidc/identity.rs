//! Who the user is, read from verified ID-token claims with the configured claim names.

use serde_json::{Map, Value};

use crate::config::ClaimNames;
use crate::session::Identity;

/// Builds the identity from verified claims. The user is the first of the user claims the
/// token has: a non-empty string (or a number, which some providers use for `sub`) without
/// control characters; a user claim of another shape is refused, not skipped (it would let a
/// later claim speak for the user). None of them present is no user. An email whose
/// `email_verified` is `false` is treated as no email at all.
pub(crate) fn from_claims(
    claims: &Map<String, Value>,
    names: &ClaimNames,
) -> Result<Identity, String> {
    let mut user = None;
    for name in &names.user {
        let value = match claims.get(name) {
            None => continue,
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(format!("claim {name} is not a usable user name")),
        };
        if has_control(&value) {
            return Err(format!("claim {name} contains control characters"));
        }
        user = Some(value);
        break;
    }
    // Absent means the provider does not say (many never do); some send the string "true".
    let verified = match claims.get("email_verified") {
        None | Some(Value::Bool(true)) => true,
        Some(Value::String(v)) => v == "true",
        Some(_) => false,
    };
    let email = claims
        .get(&names.email)
        .and_then(Value::as_str)
        .filter(|e| verified && is_plausible_email(e))
        .map(str::to_string);
    // Groups travel comma-joined in one header: a name with a comma could forge another group,
    // so such names are dropped.
    let usable_group = |g: &&str| !g.is_empty() && !has_control(g) && !g.contains(',');
    let groups = match claims.get(&names.groups) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(usable_group)
            .map(str::to_string)
            .collect(),
        Some(Value::String(g)) if usable_group(&g.as_str()) => vec![g.clone()],
        _ => Vec::new(),
    };
    let preferred_username = claims
        .get("preferred_username")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && !has_control(u))
        .map(str::to_string);
    Ok(Identity {
        user,
        email,
        groups,
        preferred_username,
        provider: None,
        issuer: None,
    })
}

/// A person signing in: as [`from_claims`], and the ID token must name them (a session
/// without a user could not be told from another).
pub(crate) fn of_person(
    claims: &Map<String, Value>,
    names: &ClaimNames,
) -> Result<Identity, String> {
    let identity = from_claims(claims, names)?;
    if identity.user.is_none() {
        return Err(format!(
            "the ID token has none of the user claims {:?}",
            names.user
        ));
    }
    Ok(identity)
}

/// Values go into HTTP headers: no control characters (CR/LF would split headers).
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Exactly one `@`, something on both sides, no whitespace or controls.
fn is_plausible_email(e: &str) -> bool {
    let mut parts = e.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && !d.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oidc() -> ClaimNames {
        crate::config::for_tests("\"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"")
            .oidc
            .unwrap()
            .first()
            .claims
            .clone()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn maps_standard_claims() {
        let id = from_claims(
            &claims(json!({"sub": "alice", "email": "a@example.com", "groups": ["sre", "dev"], "preferred_username": "alice"})),
            &oidc(),
        )
        .unwrap();
        assert_eq!(id.user(), Some("alice"));
        assert_eq!(id.email.as_deref(), Some("a@example.com"));
        assert_eq!(id.groups, ["sre", "dev"]);
    }

    #[test]
    fn unverified_or_odd_emails_are_dropped() {
        let o = oidc();
        let id = from_claims(
            &claims(json!({"sub": "a", "email": "a@x.com", "email_verified": false})),
            &o,
        )
        .unwrap();
        assert_eq!(id.email, None);
        let id = from_claims(
            &claims(json!({"sub": "a", "email": "a@evil.com@company.com"})),
            &o,
        )
        .unwrap();
        assert_eq!(id.email, None);
        let id = from_claims(
            &claims(json!({"sub": "a", "email": "a@x.com", "email_verified": "false"})),
            &o,
        )
        .unwrap();
        assert_eq!(id.email, None);
        let id = from_claims(
            &claims(json!({"sub": "a", "email": "a@x.com", "email_verified": "true"})),
            &o,
        )
        .unwrap();
        assert_eq!(id.email.as_deref(), Some("a@x.com"));
        let id = from_claims(
            &claims(json!({"sub": "a", "groups": ["dev,admins", "dev"]})),
            &o,
        )
        .unwrap();
        assert_eq!(id.groups, ["dev"]);
        assert!(from_claims(&claims(json!({"sub": ""})), &o).is_err());
        assert!(of_person(&claims(json!({"email": "a@x.com"})), &o).is_err());
        assert_eq!(
            from_claims(&claims(json!({"aud": "x"})), &o).unwrap().user,
            None
        );
        assert!(from_claims(&claims(json!({"sub": "a\r\nX-Forwarded-User: root"})), &o).is_err());
    }
}
