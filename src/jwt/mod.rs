//! JSON Web Tokens, shared by the ID-token checks of a login ([`crate::oidc`]) and the
//! bearer-token checks ([`crate::bearer`]): the crypto backend ([`provider`]), the keys an
//! issuer publishes ([`keys`]), key sets fetched over HTTP and kept fresh ([`remote`]), and
//! the signature and registered-claim checks ([`verify`]).

pub mod keys;
pub mod provider;
pub mod remote;
pub mod verify;
