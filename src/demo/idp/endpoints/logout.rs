//! `/logout`: RP-initiated logout, ending the provider session and its refresh tokens.

use super::*;

impl Shared {
    /// An `id_token_hint` is trusted if one of our published keys signed it for our client;
    /// expiry does not matter (OpenID RP-Initiated Logout §2).
    fn verify_id_token_hint(&self, token: &str) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.keys.find(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// RP-initiated logout. A valid `id_token_hint` ends that login's refresh tokens. The user
    /// goes back to `post_logout_redirect_uri` only if it is registered *and* the request is
    /// tied to our client (valid hint or matching `client_id`); otherwise a signed-out page.
    pub(super) fn logout(&self, raw: &[u8]) -> Response<Body> {
        bump(&self.counters.logouts);
        let Ok(params) = parse_params(raw) else {
            return demo_http::html(
                StatusCode::BAD_REQUEST,
                pages::error("A logout parameter was sent more than once."),
            );
        };
        let hint = param(&params, "id_token_hint").and_then(|t| self.verify_id_token_hint(t));
        if let Some(sid) = hint
            .as_ref()
            .and_then(|claims| claims.get("sid"))
            .and_then(Value::as_str)
        {
            lock(&self.refresh_tokens).retain(|_, grant| grant.sid != sid);
        }
        let for_our_client = match param(&params, "client_id") {
            Some(client_id) => client_id == self.config.client_id,
            None => hint.is_some(),
        };
        let target = param(&params, "post_logout_redirect_uri").filter(|uri| {
            self.config
                .post_logout_redirect_uris
                .iter()
                .any(|allowed| allowed == uri)
        });
        match target {
            Some(target) if for_our_client => {
                let state: Vec<_> = param(&params, "state")
                    .map(|s| ("state", s))
                    .into_iter()
                    .collect();
                redirect_with(target, &state)
            }
            _ => demo_http::html(StatusCode::OK, pages::signed_out()),
        }
    }
}
