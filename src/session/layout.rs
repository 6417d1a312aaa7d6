//! The layouts a session has been stored in, and reading each back.
//!
//! Sessions are stored with postcard, which writes fields by position and names none: a new
//! field is a new layout, and a store tags what it writes with its layout's number. Each
//! store reads the layouts it ever wrote, so an upgrade signs nobody out; what a layout did
//! not have reads as absent (`None`), which every reader of [`SessionData`] already handles.

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;

use super::{Identity, SessionData};

/// The current layout: [`SessionData`] as it is.
pub(crate) fn current(bytes: &[u8]) -> Option<SessionData> {
    postcard::from_bytes(bytes).ok()
}

/// The layout with the provider's `sub` and `sid` and our session id, before an identity
/// recorded its provider and issuer (the cookie store's version 2, the Redis store's and
/// the hand-over's version 1).
pub(crate) fn with_login_ids(bytes: &[u8]) -> Option<SessionData> {
    postcard::from_bytes::<WithLoginIds>(bytes)
        .ok()
        .map(SessionData::from)
}

/// The first layout: no `sub`, `sid` or session id (the cookie store's version 1).
pub(crate) fn first(bytes: &[u8]) -> Option<SessionData> {
    postcard::from_bytes::<First>(bytes)
        .ok()
        .map(SessionData::from)
}

/// An identity before it recorded its provider and issuer.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct IdentityBeforeProviders {
    #[serde(with = "super::user_field")]
    user: Option<String>,
    email: Option<String>,
    groups: Vec<String>,
    preferred_username: Option<String>,
}

impl From<IdentityBeforeProviders> for Identity {
    fn from(old: IdentityBeforeProviders) -> Identity {
        Identity {
            user: old.user,
            email: old.email,
            groups: old.groups,
            preferred_username: old.preferred_username,
            provider: None,
            issuer: None,
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct WithLoginIds {
    identity: IdentityBeforeProviders,
    created_at: u64,
    expires_at: u64,
    tokens_expire_at: Option<u64>,
    refresh_token: Option<String>,
    id_token: Option<String>,
    access_token: Option<String>,
    sub: Option<String>,
    sid: Option<String>,
    id: Option<String>,
}

impl From<WithLoginIds> for SessionData {
    fn from(old: WithLoginIds) -> SessionData {
        SessionData {
            identity: old.identity.into(),
            created_at: old.created_at,
            expires_at: old.expires_at,
            tokens_expire_at: old.tokens_expire_at,
            refresh_token: old.refresh_token,
            id_token: old.id_token,
            access_token: old.access_token,
            sub: old.sub,
            sid: old.sid,
            id: old.id,
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub(crate) struct First {
    identity: IdentityBeforeProviders,
    created_at: u64,
    expires_at: u64,
    tokens_expire_at: Option<u64>,
    refresh_token: Option<String>,
    id_token: Option<String>,
    access_token: Option<String>,
}

impl From<First> for SessionData {
    fn from(old: First) -> SessionData {
        // The first layout is the second without the login ids.
        SessionData::from(WithLoginIds {
            identity: old.identity,
            created_at: old.created_at,
            expires_at: old.expires_at,
            tokens_expire_at: old.tokens_expire_at,
            refresh_token: old.refresh_token,
            id_token: old.id_token,
            access_token: old.access_token,
            sub: None,
            sid: None,
            id: None,
        })
    }
}

/// `data` in the first layout, for the stores' tests of reading it.
#[cfg(test)]
pub(crate) fn in_first_layout(data: &SessionData) -> Vec<u8> {
    let id = &data.identity;
    let first = First {
        identity: IdentityBeforeProviders {
            user: id.user.clone(),
            email: id.email.clone(),
            groups: id.groups.clone(),
            preferred_username: id.preferred_username.clone(),
        },
        created_at: data.created_at,
        expires_at: data.expires_at,
        tokens_expire_at: data.tokens_expire_at,
        refresh_token: data.refresh_token.clone(),
        id_token: data.id_token.clone(),
        access_token: data.access_token.clone(),
    };
    postcard::to_allocvec(&first).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_identity() -> IdentityBeforeProviders {
        IdentityBeforeProviders {
            user: Some("alice".into()),
            email: Some("alice@example.com".into()),
            groups: vec!["sre".into()],
            preferred_username: None,
        }
    }

    #[test]
    fn every_earlier_layout_reads_back_without_a_provider() {
        let first = First {
            identity: old_identity(),
            created_at: 1,
            expires_at: 2,
            tokens_expire_at: None,
            refresh_token: Some("r".into()),
            id_token: None,
            access_token: None,
        };
        let s = super::first(&postcard::to_allocvec(&first).unwrap()).unwrap();
        assert_eq!(s.identity.user.as_deref(), Some("alice"));
        assert_eq!((s.identity.provider, s.sub), (None, None));
        let with_ids = WithLoginIds {
            identity: old_identity(),
            created_at: 1,
            expires_at: 2,
            tokens_expire_at: None,
            refresh_token: None,
            id_token: None,
            access_token: None,
            sub: Some("alice-sub".into()),
            sid: Some("sid-1".into()),
            id: Some("s1".into()),
        };
        let s = with_login_ids(&postcard::to_allocvec(&with_ids).unwrap()).unwrap();
        assert_eq!(s.identity.groups, ["sre"]);
        assert_eq!(s.sub.as_deref(), Some("alice-sub"));
        assert_eq!(s.identity.issuer, None);
        // The current layout does not read an older one as itself.
        assert!(current(&postcard::to_allocvec(&with_ids).unwrap()).is_none());
    }
}
