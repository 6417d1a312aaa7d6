//! `/authorize`: the authorization request (RFC 6749 §4.1.1, PKCE of RFC 7636) and the login
//! form that answers it.

use super::*;

/// A validated authorization request.
struct AuthRequest<'a> {
    client_id: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    state: Option<&'a str>,
    nonce: Option<&'a str>,
    code_challenge: &'a str,
}

impl AuthRequest<'_> {
    /// The parameters the login form posts back.
    fn hidden_fields(&self) -> Vec<(&str, &str)> {
        let mut fields = vec![
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("response_type", "code"),
            ("scope", self.scope),
            ("code_challenge", self.code_challenge),
            ("code_challenge_method", "S256"),
        ];
        if let Some(state) = self.state {
            fields.push(("state", state));
        }
        if let Some(nonce) = self.nonce {
            fields.push(("nonce", nonce));
        }
        fields
    }
}

/// Why an authorization request is refused, and so how: before the redirect URI is known to be
/// registered the user gets a page; after, the client gets the error at its redirect URI.
enum Refusal<'a> {
    Page(String),
    Redirect {
        redirect_uri: &'a str,
        state: Option<&'a str>,
        error: &'static str,
        description: &'static str,
    },
}

impl Shared {
    fn check_authorize<'a>(&self, params: &'a Params) -> Result<AuthRequest<'a>, Refusal<'a>> {
        let client_id = param(params, "client_id")
            .ok_or_else(|| Refusal::Page("The request has no client_id.".into()))?;
        if client_id != self.config.client_id {
            return Err(Refusal::Page(format!("Unknown client_id {client_id:?}.")));
        }
        let redirect_uri = param(params, "redirect_uri")
            .ok_or_else(|| Refusal::Page("The request has no redirect_uri.".into()))?;
        if !self.config.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(Refusal::Page(format!(
                "redirect_uri {redirect_uri:?} is not registered for this client (exact match \
                 required)."
            )));
        }
        let state = param(params, "state");
        let refuse = |error, description| Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        };
        if param(params, "response_type") != Some("code") {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let scope = param(params, "scope").unwrap_or("");
        if !has_scope(scope, "openid") {
            return Err(refuse("invalid_scope", "scope must include openid"));
        }
        let Some(code_challenge) = param(params, "code_challenge") else {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        };
        if param(params, "code_challenge_method") != Some("S256") {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        if !is_s256_challenge(code_challenge) {
            return Err(refuse(
                "invalid_request",
                "code_challenge is not an unpadded base64url SHA-256 digest",
            ));
        }
        Ok(AuthRequest {
            client_id,
            redirect_uri,
            scope,
            state,
            nonce: param(params, "nonce"),
            code_challenge,
        })
    }

    /// `GET /authorize` shows the form; `POST /authorize` is the form coming back.
    pub(super) fn authorize(&self, raw: &[u8], submitted: bool) -> Response<Body> {
        let params = match parse_params(raw) {
            Ok(params) => params,
            Err(name) => {
                return self.refusal(Refusal::Page(format!(
                    "Parameter {name:?} was sent more than once."
                )))
            }
        };
        let request = match self.check_authorize(&params) {
            Ok(request) => request,
            Err(refusal) => return self.refusal(refusal),
        };
        if !submitted {
            let prompt = param(&params, "prompt").unwrap_or("");
            if has_scope(prompt, "none") {
                return self.refusal(Refusal::Redirect {
                    redirect_uri: request.redirect_uri,
                    state: request.state,
                    error: "login_required",
                    description: "the development IdP keeps no session; the user must sign in",
                });
            }
            let login_hint = param(&params, "login_hint").unwrap_or("");
            return self.login_form(&request, login_hint, None);
        }

        let username = param(&params, "username").unwrap_or("");
        let password = param(&params, "password").unwrap_or("");
        let Some(user) = self.check_password(username, password) else {
            tracing::info!("dev IdP login failed");
            return self.login_form(&request, username, Some("Wrong username or password."));
        };
        bump(&self.counters.logins);
        tracing::info!(user = %user.username, "dev IdP login");

        let code = random_token();
        let issued = Instant::now();
        {
            let mut codes = lock(&self.codes);
            codes.retain(|_, grant| grant.expires > issued);
            codes.insert(
                code.clone(),
                CodeGrant {
                    client_id: request.client_id.to_owned(),
                    redirect_uri: request.redirect_uri.to_owned(),
                    code_challenge: request.code_challenge.to_owned(),
                    nonce: request.nonce.map(str::to_owned),
                    username: user.username.clone(),
                    scope: request.scope.to_owned(),
                    auth_time: now(),
                    sid: random_token(),
                    expires: issued + CODE_TTL,
                },
            );
        }
        let mut pairs = vec![("code", code.as_str())];
        pairs.extend(request.state.map(|s| ("state", s)));
        pairs.push(("iss", self.issuer.as_str()));
        redirect_with(request.redirect_uri, &pairs)
    }

    fn refusal(&self, refusal: Refusal<'_>) -> Response<Body> {
        match refusal {
            Refusal::Page(message) => {
                demo_http::html(StatusCode::BAD_REQUEST, pages::error(&message))
            }
            Refusal::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut pairs = vec![("error", error), ("error_description", description)];
                pairs.extend(state.map(|s| ("state", s)));
                pairs.push(("iss", self.issuer.as_str()));
                redirect_with(redirect_uri, &pairs)
            }
        }
    }

    fn login_form(
        &self,
        request: &AuthRequest<'_>,
        username: &str,
        error: Option<&str>,
    ) -> Response<Body> {
        demo_http::html(
            StatusCode::OK,
            pages::login(
                request.client_id,
                &request.hidden_fields(),
                &self.config.users,
                username,
                error,
            ),
        )
    }

    fn check_password(&self, username: &str, password: &str) -> Option<&DevUser> {
        self.user(username)
            .filter(|user| secret_eq(password, &user.password))
    }
}
