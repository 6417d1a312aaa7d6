//! Discovery (`/.well-known/openid-configuration`) and the key set (`/jwks`).

use super::*;

impl Shared {
    pub(super) fn discovery(&self) -> Response<Body> {
        bump(&self.counters.discovery_fetches);
        let iss = &self.issuer;
        demo_http::json(
            StatusCode::OK,
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/authorize"),
                "token_endpoint": format!("{iss}/token"),
                "userinfo_endpoint": format!("{iss}/userinfo"),
                "jwks_uri": format!("{iss}/jwks"),
                "end_session_endpoint": format!("{iss}/logout"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "scopes_supported": SCOPES,
                "claims_supported": CLAIMS,
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": true,
            }),
        )
    }

    pub(super) fn jwks(&self) -> Response<Body> {
        bump(&self.counters.jwks_fetches);
        let mut res = demo_http::json(StatusCode::OK, &self.keys.jwks());
        // Like real providers: cacheable, so a relying party must refetch on an unknown `kid`.
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        res
    }
}
