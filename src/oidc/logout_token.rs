//! OpenID Connect Back-Channel Logout 1.0 §2.4–2.6: the logout token a provider posts when a
//! login ends there. Signed by the provider's keys, for us, and unlike any ID token: it names
//! an event, carries no nonce, and names the login (`sid`), the user (`sub`) or both.

use serde_json::{Map, Value};

use super::Provider;
use crate::clock::UnixTime;
use crate::jwt::verify::{self, Expect};

/// The event a logout token must name.
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a valid logout token ends, and its id (refused a second time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogoutToken {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
}

impl Provider {
    /// Verifies a logout token from this provider: signature with its keys, `iss`, `aud` =
    /// our client id, `exp`, `iat`, then [`check`]. The error is the exact reason, for the log.
    pub(crate) async fn verify_logout_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<LogoutToken, String> {
        let header = verify::header(token).map_err(|e| e.to_string())?;
        if let Some(typ) = &header.typ {
            if !typ.eq_ignore_ascii_case("logout+jwt")
                && !typ.eq_ignore_ascii_case("application/logout+jwt")
            {
                return Err(format!("typ {typ:?} is not logout+jwt"));
            }
        }
        let keys = self
            .keys()
            .keys_for(header.kid.as_deref())
            .await
            .ok_or("the provider's keys are not loaded")?;
        let oidc = self.oidc();
        let audiences = [oidc.client_id.clone()];
        let verified = verify::verify(
            token,
            &keys,
            &Expect {
                issuer: &oidc.issuer,
                audiences: &audiences,
                leeway: oidc.leeway,
                now,
            },
        )
        .map_err(|e| e.to_string())?;
        check(&verified.claims)
    }
}

/// The claims a logout token must (and must not) have, past the signature and `iss`/`aud`/
/// times.
pub(crate) fn check(claims: &Map<String, Value>) -> Result<LogoutToken, String> {
    if !claims.get("iat").is_some_and(Value::is_u64) {
        return Err("missing claim iat".into());
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or("missing claim jti")?;
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get(EVENT));
    if !event.is_some_and(Value::is_object) {
        return Err(format!("events does not name {EVENT}"));
    }
    if claims.contains_key("nonce") {
        return Err("a nonce: this is not a logout token".into());
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("claim {name} is not a string")),
        }
    };
    let (sub, sid) = (text("sub")?, text("sid")?);
    if sub.is_none() && sid.is_none() {
        return Err("neither sub nor sid".into());
    }
    Ok(LogoutToken {
        sub,
        sid,
        jti: jti.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_logout_token_names_the_event_a_login_and_no_nonce() {
        let good = json!({"iat": 1, "jti": "j1", "sid": "s1", "events": {EVENT: {}}});
        assert_eq!(
            check(&claims(good.clone())).unwrap(),
            LogoutToken {
                sub: None,
                sid: Some("s1".into()),
                jti: "j1".into()
            }
        );
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut c = good.clone();
            f(&mut c);
            check(&claims(c)).unwrap_err()
        };
        assert!(edit(&|c| c["nonce"] = json!("n")).contains("nonce"));
        assert!(edit(&|c| c["events"] = json!({})).contains("events"));
        assert!(edit(&|c| c["events"] = json!({EVENT: "yes"})).contains("events"));
        assert!(edit(&|c| {
            c.as_object_mut().unwrap().remove("sid");
        })
        .contains("neither"));
        assert!(edit(&|c| {
            c.as_object_mut().unwrap().remove("jti");
        })
        .contains("jti"));
        assert!(edit(&|c| {
            c.as_object_mut().unwrap().remove("iat");
        })
        .contains("iat"));
        assert!(edit(&|c| c["sub"] = json!(5)).contains("sub"));
    }
}
