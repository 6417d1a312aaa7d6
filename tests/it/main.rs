//! The integration tests, one binary: the real `portcullis` binary as a child process against
//! the development provider and echo upstream (see [`support`]), one module per area. All tests
//! share this process and run in parallel, so none may rely on process-wide state: each gets
//! its own ports, scratch files and servers.

mod support;

mod bearer;
mod cli;
mod cookie_abuse;
mod corpus;
mod demo;
mod dpop;
mod ext_authz;
mod faults;
mod grpc;
mod login;
mod metrics;
mod oauth2_proxy;
mod policy;
mod providers;
mod redis_sessions;
mod reload;
mod resource_metadata;
mod resource_server;
mod session;
mod signed_identity;
mod tls;
