//! `/token`: client authentication and the authorization-code, refresh-token and
//! client-credentials grants, and the tokens they issue.

use super::*;

/// Who passed client authentication at `/token`; each kind has its own grants.
enum Client<'a> {
    /// The web client: authorization code and refresh token grants.
    Web,
    /// A machine client: the client credentials grant.
    Service(&'a ServiceClient),
}

impl Shared {
    pub(super) fn token(&self, req: &Request<Bytes>) -> Response<Body> {
        let params = parse_params(req.body());
        let grant_type = params
            .as_ref()
            .ok()
            .and_then(|p| param(p, "grant_type"))
            .map(str::to_owned);
        let result = if !is_form(req.headers()) {
            Err(OAuthError::invalid_request(
                "the token request must be application/x-www-form-urlencoded",
            ))
        } else {
            match &params {
                Ok(params) => self.token_grant(req.headers(), params),
                Err(name) => Err(OAuthError::invalid_request(format!(
                    "parameter {name:?} was sent more than once"
                ))),
            }
        };
        let counters = &self.counters;
        let (ok, failed) = match grant_type.as_deref() {
            Some("authorization_code") => (
                Some(&counters.authorization_code_grants),
                Some(&counters.authorization_code_grants_failed),
            ),
            Some("refresh_token") => (
                Some(&counters.refresh_token_grants),
                Some(&counters.refresh_token_grants_failed),
            ),
            Some("client_credentials") => (
                Some(&counters.client_credentials_grants),
                Some(&counters.client_credentials_grants_failed),
            ),
            _ => (None, None),
        };
        match result {
            Ok(body) => {
                if let Some(counter) = ok {
                    bump(counter);
                }
                no_store(demo_http::json(StatusCode::OK, &body))
            }
            Err(err) => {
                if let Some(counter) = failed {
                    bump(counter);
                }
                tracing::info!(
                    grant_type = grant_type.as_deref().unwrap_or("-"),
                    error = err.error,
                    "dev IdP token request refused"
                );
                err.into_response()
            }
        }
    }

    fn token_grant(&self, headers: &HeaderMap, params: &Params) -> Result<Value, OAuthError> {
        let client = self.authenticate_client(headers, params)?;
        match (param(params, "grant_type"), client) {
            (Some("authorization_code"), Client::Web) => self.code_grant(params),
            (Some("refresh_token"), Client::Web) => self.refresh_grant(params),
            (Some("client_credentials"), Client::Service(service)) => {
                self.client_credentials_grant(service, params)
            }
            (Some("authorization_code" | "refresh_token"), Client::Service(_)) => Err(
                OAuthError::unauthorized_client("a service client may only use client_credentials"),
            ),
            (Some("client_credentials"), Client::Web) => Err(OAuthError::unauthorized_client(
                "the web client may not use client_credentials",
            )),
            (Some(_), _) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported grant types: authorization_code, refresh_token, client_credentials",
            )),
            (None, _) => Err(OAuthError::invalid_request("grant_type is required")),
        }
    }

    pub(in crate::demo::idp) fn service_client(&self, client_id: &str) -> Option<&ServiceClient> {
        self.config
            .service_clients
            .iter()
            .find(|c| c.client_id == client_id)
    }

    /// RFC 6749 §2.3.1: HTTP Basic or `client_id`/`client_secret` in the body, never both.
    /// Client ids are public, so finding the client may take variable time; only the secret
    /// comparison must not.
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Client<'_>, OAuthError> {
        let (client_id, secret, basic) = match headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let (id, secret) = parse_basic(value).ok_or_else(|| {
                    OAuthError::invalid_client(true, "malformed HTTP Basic client credentials")
                })?;
                if params.contains_key("client_secret") {
                    return Err(OAuthError::invalid_request(
                        "use one client authentication method, not two",
                    ));
                }
                if param(params, "client_id").is_some_and(|body_id| body_id != id) {
                    return Err(OAuthError::invalid_client(
                        true,
                        "client_id in the body differs from the authenticated client",
                    ));
                }
                (id, secret, true)
            }
            None => {
                let missing =
                    || OAuthError::invalid_client(false, "client authentication is required");
                let id = param(params, "client_id").ok_or_else(missing)?;
                let secret = param(params, "client_secret").ok_or_else(missing)?;
                (id.to_owned(), secret.to_owned(), false)
            }
        };
        let (client, expected) = if client_id == self.config.client_id {
            (Client::Web, self.config.client_secret.as_str())
        } else if let Some(service) = self.service_client(&client_id) {
            (Client::Service(service), service.client_secret.as_str())
        } else {
            return Err(OAuthError::invalid_client(
                basic,
                "client authentication failed",
            ));
        };
        if secret_eq(&secret, expected) {
            Ok(client)
        } else {
            Err(OAuthError::invalid_client(
                basic,
                "client authentication failed",
            ))
        }
    }

    /// RFC 6749 §4.4: a token for the client itself. The requested scope must be within the
    /// client's; none requested means all of them (§3.3 lets the server pick a default).
    fn client_credentials_grant(
        &self,
        client: &ServiceClient,
        params: &Params,
    ) -> Result<Value, OAuthError> {
        let mut granted: Vec<&str> = Vec::new();
        for wanted in param(params, "scope")
            .unwrap_or("")
            .split_ascii_whitespace()
        {
            if !client.scopes.iter().any(|s| s == wanted) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("scope {wanted:?} is not allowed for this client"),
                ));
            }
            if !granted.contains(&wanted) {
                granted.push(wanted);
            }
        }
        if granted.is_empty() {
            granted = client.scopes.iter().map(String::as_str).collect();
        }
        let scope = granted.join(" ");
        let claims = self.service_access_token_claims(client, &scope, now());
        let access_token = self.keys.sign(ACCESS_TOKEN_TYP, &claims)?;
        tracing::info!(
            client_id = %client.client_id,
            scope = %scope,
            "dev IdP client credentials grant"
        );
        // No refresh token (RFC 6749 §4.4.3: the client can simply ask again) and no ID token
        // (there is no user).
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl.as_secs(),
            "scope": scope,
        }))
    }

    /// RFC 9068 access token claims for a machine client: it is its own subject, and the
    /// audience is the API it calls, not the IdP.
    pub(in crate::demo::idp) fn service_access_token_claims(
        &self,
        client: &ServiceClient,
        scope: &str,
        now: u64,
    ) -> Value {
        json!({
            "iss": self.issuer,
            "sub": client.client_id,
            "aud": client.audience,
            "client_id": client.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + self.config.access_token_ttl.as_secs(),
            "jti": random_token(),
        })
    }

    fn code_grant(&self, params: &Params) -> Result<Value, OAuthError> {
        let code =
            param(params, "code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        // Single use: the code is gone whatever happens next.
        let grant = lock(&self.codes)
            .remove(code)
            .ok_or_else(|| OAuthError::invalid_grant("unknown or already used code"))?;
        if grant.expires <= Instant::now() {
            return Err(OAuthError::invalid_grant("code expired"));
        }
        if grant.client_id != self.config.client_id {
            return Err(OAuthError::invalid_grant(
                "code was issued to another client",
            ));
        }
        if param(params, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        let verifier = param(params, "code_verifier")
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required (PKCE)"))?;
        if !is_valid_verifier(verifier) || !secret_eq(&s256(verifier), &grant.code_challenge) {
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        let user = self
            .user(&grant.username)
            .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
        let refresh_token = random_token();
        let now = Instant::now();
        {
            let mut tokens = lock(&self.refresh_tokens);
            tokens.retain(|_, g| g.expires > now);
            tokens.insert(
                refresh_token.clone(),
                RefreshGrant {
                    client_id: grant.client_id.clone(),
                    username: grant.username.clone(),
                    scope: grant.scope.clone(),
                    auth_time: grant.auth_time,
                    sid: grant.sid.clone(),
                    expires: now + self.config.refresh_token_ttl,
                },
            );
        }
        self.token_response(
            user,
            &grant.scope,
            grant.auth_time,
            &grant.sid,
            grant.nonce.as_deref(),
            Some(refresh_token),
        )
    }

    fn refresh_grant(&self, params: &Params) -> Result<Value, OAuthError> {
        let token = param(params, "refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let now = Instant::now();
        let (grant, new_token) = {
            let mut tokens = lock(&self.refresh_tokens);
            let grant = match tokens.get(token) {
                Some(grant) if grant.expires > now => grant.clone(),
                Some(_) => {
                    tokens.remove(token);
                    return Err(OAuthError::invalid_grant("refresh token expired"));
                }
                None => {
                    return Err(OAuthError::invalid_grant(
                        "unknown, already used or revoked refresh token",
                    ))
                }
            };
            if grant.client_id != self.config.client_id {
                return Err(OAuthError::invalid_grant(
                    "refresh token was issued to another client",
                ));
            }
            if let Some(requested) = param(params, "scope") {
                if !requested
                    .split_ascii_whitespace()
                    .all(|s| has_scope(&grant.scope, s))
                {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "a refresh cannot widen the granted scope",
                    ));
                }
            }
            let new_token = if self.config.rotate_refresh_tokens {
                // The old token dies in the same critical section: a concurrent second use of it
                // finds nothing, exactly like a replay.
                tokens.remove(token);
                let new_token = random_token();
                tokens.insert(
                    new_token.clone(),
                    RefreshGrant {
                        expires: now + self.config.refresh_token_ttl,
                        ..grant.clone()
                    },
                );
                Some(new_token)
            } else {
                None
            };
            (grant, new_token)
        };
        let user = self
            .user(&grant.username)
            .ok_or_else(|| OAuthError::invalid_grant("user no longer exists"))?;
        let scope = param(params, "scope").unwrap_or(&grant.scope);
        self.token_response(user, scope, grant.auth_time, &grant.sid, None, new_token)
    }

    fn token_response(
        &self,
        user: &DevUser,
        scope: &str,
        auth_time: u64,
        sid: &str,
        nonce: Option<&str>,
        refresh_token: Option<String>,
    ) -> Result<Value, OAuthError> {
        let now = now();
        let access_token = self.keys.sign(
            ACCESS_TOKEN_TYP,
            &self.access_token_claims(user, scope, now),
        )?;
        let id_token = self.keys.sign(
            "JWT",
            &self.id_token_claims(user, now, auth_time, sid, nonce),
        )?;
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl.as_secs(),
            "id_token": id_token,
            "scope": scope,
        });
        if let Some(refresh_token) = refresh_token {
            body["refresh_token"] = Value::String(refresh_token);
        }
        Ok(body)
    }

    /// An RFC 9068-style access token for this IdP's own `/userinfo` (and for relying parties
    /// that accept bearer tokens), audience the client.
    fn access_token_claims(&self, user: &DevUser, scope: &str, now: u64) -> Value {
        json!({
            "iss": self.issuer,
            "sub": user.username,
            "aud": self.config.client_id,
            "client_id": self.config.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + self.config.access_token_ttl.as_secs(),
            "jti": random_token(),
            "groups": user.groups,
        })
    }

    /// ID token claims. Profile, email and groups are included whatever the scope: the proxy is
    /// the only client, and tests want them without negotiating scopes.
    pub(in crate::demo::idp) fn id_token_claims(
        &self,
        user: &DevUser,
        now: u64,
        auth_time: u64,
        sid: &str,
        nonce: Option<&str>,
    ) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "sub": user.username,
            "aud": self.config.client_id,
            "azp": self.config.client_id,
            "exp": now + self.config.id_token_ttl.as_secs(),
            "iat": now,
            "auth_time": auth_time,
            "sid": sid,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "preferred_username": user.username,
            "groups": user.groups,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::String(nonce.to_owned());
        }
        claims
    }
}
