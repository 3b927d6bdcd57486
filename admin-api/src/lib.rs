//! coffer-admin-api: the KMS admin HTTP API and its command-line client.
//!
//! This crate owns the admin endpoints under `/coffer/admin/v3/kms/` (with the RustFS and MinIO aliases), their
//! request and response documents, `openapi.yaml`, the audit lines of admin actions and the `coffer admin` CLI.
//! [`AdminRoute`] is an s3s route the server mounts, so the same SigV4 verification guards it; it reaches the KMS
//! only through `coffer_kms::KmsManager`.
//!
//! It must not touch object data or the store, and must not reach into the server: the server hands it a KMS
//! manager, an [`AdminAuthorizer`] (who may perform which action on which key or user), an [`ObjectAdmin`] (impact
//! reports and jobs over objects) and a [`UserAdmin`] (users' identity policies), nothing more. Secrets submitted to it (tokens, secret ids, master
//! keys) go to the KMS and nowhere else: not into answers, error messages or logs.

pub mod api;
mod audit;
mod body;
pub mod cli;
mod error;
mod handlers;
pub mod objects;
mod permission;
mod query;
mod route;
pub mod routes;
mod users;

pub use audit::{RequestId, AUDIT_TARGET};
pub use objects::{ImpactScope, JobAction, ObjectAdmin, ObjectAdminError};
pub use permission::{AdminAuthorizer, AdminPermission, KeyRef};
pub use route::AdminRoute;
pub use users::{UserAdmin, UserAdminError, UserPolicy};
