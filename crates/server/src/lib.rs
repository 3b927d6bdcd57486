//! Coffer's S3 protocol layer and the `coffer server` process.
//!
//! This crate owns everything between the socket and `coffer-store`: configuration (flags, `COFFER_*` env, TOML
//! file), users and SigV4 credentials, the hyper/rustls listener with graceful shutdown and request logs, and the
//! S3 operations implemented on s3s, and bringing up the KMS and server-side encryption (coffer-kms, coffer-sse)
//! with the server. Object bytes flow through [`object_io`] only, in bounded chunks, encrypted and decrypted there:
//! no request ever holds a whole object in memory.
//!
//! It must not reach into the store's on-disk layout (only the `coffer-store` API), must not log or echo secrets,
//! signatures or keys, and must not store anything from a request that failed validation.

pub mod audit_log;
pub mod authz;
pub mod body_taps;
pub mod checksum;
pub mod cluster;
pub mod conditions;
pub mod config;
pub mod encryption;
pub mod errors;
pub mod health;
pub mod http_server;
pub mod jobs;
pub mod kms;
pub mod listing;
pub mod logging;
pub mod metrics;
pub mod object_headers;
pub mod object_io;
pub mod policy;
pub mod presigned;
pub mod reload;
pub mod request_record;
pub mod resources;
pub mod s3;
pub mod service;
pub mod tls;
pub mod user_policies;
pub mod users;
