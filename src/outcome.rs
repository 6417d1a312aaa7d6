//! What became of a request, in one word: the access log's `outcome` and the label of
//! `portcullis_requests_total`. A closed set, so a metric label can never grow without bound.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered by a built-in endpoint (`/oauth2/...`, `/ping`, `/ready`).
    Endpoint,
    /// A public route: forwarded without authentication.
    Public,
    /// Forwarded for a valid session cookie.
    Cookie,
    /// Forwarded for a valid bearer token.
    Bearer,
    /// Forwarded for a verified client certificate alone.
    ClientCert,
    /// A browser without a session, sent to log in.
    LoginRedirect,
    /// 401: no credentials (or none that still work).
    Unauthenticated,
    /// 401: a bearer token that is not valid.
    InvalidToken,
    /// 403: authenticated, but the rules say no.
    Forbidden,
    /// 403: a bearer token without the route's scopes.
    InsufficientScope,
    /// 400: a path or host that could be read two ways.
    BadRequest,
    /// 503: a session cookie that could not be checked (the session store is unreachable).
    Unavailable,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 12] = [
        Outcome::Endpoint,
        Outcome::Public,
        Outcome::Cookie,
        Outcome::Bearer,
        Outcome::ClientCert,
        Outcome::LoginRedirect,
        Outcome::Unauthenticated,
        Outcome::InvalidToken,
        Outcome::Forbidden,
        Outcome::InsufficientScope,
        Outcome::BadRequest,
        Outcome::Unavailable,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Endpoint => "endpoint",
            Outcome::Public => "public",
            Outcome::Cookie => "cookie",
            Outcome::Bearer => "bearer",
            Outcome::ClientCert => "client_cert",
            Outcome::LoginRedirect => "login_redirect",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::InvalidToken => "invalid_token",
            Outcome::Forbidden => "forbidden",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::BadRequest => "bad_request",
            Outcome::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_outcome_once_in_index_order() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }
}
