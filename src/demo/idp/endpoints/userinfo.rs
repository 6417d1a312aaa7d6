//! `/userinfo` (OpenID Connect Core §5.3), for an access token of this provider.

use super::*;

impl Shared {
    pub(super) fn userinfo(&self, headers: &HeaderMap) -> Response<Body> {
        bump(&self.counters.userinfo_calls);
        let Some(user) = bearer(headers).and_then(|token| self.verify_access_token(token)) else {
            let mut res = demo_http::json(
                StatusCode::UNAUTHORIZED,
                &json!({ "error": "invalid_token" }),
            );
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return res;
        };
        no_store(demo_http::json(
            StatusCode::OK,
            &json!({
                "sub": user.username,
                "email": user.email,
                "email_verified": user.email_verified,
                "name": user.name,
                "preferred_username": user.username,
                "groups": user.groups,
            }),
        ))
    }

    /// Checks signature (by a published key), `typ`, issuer, audience and expiry, no leeway.
    fn verify_access_token(&self, token: &str) -> Option<&DevUser> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return None;
        }
        let key = self.keys.find(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation).ok()?;
        self.user(data.claims.get("sub")?.as_str()?)
    }
}
