//! JSON Web Tokens: the crypto backend ([`provider`]) and the keys an issuer publishes ([`keys`]).
//! Shared by ID-token checks at login and, later, by bearer-token checks.

pub mod keys;
pub mod provider;
pub mod remote;
pub mod verify;
