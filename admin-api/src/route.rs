//! [`AdminRoute`]: the admin API mounted into the S3 service as an s3s custom route.
//!
//! s3s verifies the SigV4 signature before any route sees a request, so a bad signature is refused there
//! (403 SignatureDoesNotMatch, S3 XML). This route then refuses unsigned requests in `check_access` (403
//! AccessDenied, S3 XML, like any unsigned S3 request) and, in `call`, callers the [`AdminAuthorizer`] does not allow
//! the endpoint's `kms:` action (403 AccessDenied, JSON, naming the action). Everything after authentication answers
//! in JSON.

use std::sync::Arc;

use coffer_kms::KmsManager;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use s3s::route::S3Route;
use s3s::{s3_error, Body, S3Request, S3Response, S3Result};

use crate::audit::{self, Outcome};
use crate::error::ApiError;
use crate::handlers::{Call, Handlers};
use crate::objects::ObjectAdmin;
use crate::permission::{AdminAuthorizer, AdminPermission, KeyRef};
use crate::query::Query;
use crate::routes::{self, Endpoint, Resolution};
use crate::users::UserAdmin;

/// Admin bodies are small JSON documents; anything bigger is a mistake.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The KMS admin API as an s3s route: serves `/coffer/admin/v3/kms/…` and its `/rustfs/…` and `/minio/…` aliases.
pub struct AdminRoute {
    handlers: Handlers,
    authorizer: Arc<dyn AdminAuthorizer>,
}

impl AdminRoute {
    /// `authorizer` decides which authenticated access key may make which call.
    pub fn new(kms: Arc<KmsManager>, authorizer: Arc<dyn AdminAuthorizer>) -> Self {
        Self { handlers: Handlers::new(kms), authorizer }
    }

    /// Serves users' identity policies (without it those endpoints answer 501).
    pub fn with_users(mut self, users: Arc<dyn UserAdmin>) -> Self {
        self.handlers.set_users(users);
        self
    }

    /// Serves key impact reports and jobs over stored objects (without it those endpoints answer 501).
    pub fn with_objects(mut self, objects: Arc<dyn ObjectAdmin>) -> Self {
        self.handlers.set_objects(objects);
        self
    }

    async fn respond(&self, mut req: S3Request<Body>, who: &str) -> S3Result<S3Response<Body>> {
        let (endpoint, subject) = match routes::resolve(&req.method, req.uri.path()) {
            Resolution::Found { endpoint, subject } => (endpoint, subject),
            Resolution::MethodNotAllowed(allowed) => return Ok(method_not_allowed(&req.method, &allowed)),
            Resolution::NotFound => {
                let message = format!("no admin endpoint at {}; see admin-api/openapi.yaml", req.uri.path());
                return Ok(error_response(&ApiError::new(StatusCode::NOT_FOUND, "UnknownEndpoint", message)));
            }
        };
        if let Some(refusal) = self.refusal(who, endpoint, subject.as_deref(), req.uri.query()) {
            audit::record(req.extensions.get(), who, endpoint.action(), subject.as_deref(), Outcome::Denied);
            return Ok(error_response(&refusal));
        }
        let (result, subject) = self.run(endpoint, subject, &mut req).await;
        if endpoint.changes_state() {
            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(err) => Outcome::Failed(err.code),
            };
            audit::record(req.extensions.get(), who, endpoint.action(), subject.as_deref(), outcome);
        }
        Ok(match result {
            Ok(document) => json_response(StatusCode::OK, document),
            Err(err) => error_response(&err),
        })
    }

    /// Why `who` may not call `endpoint`, if they may not.
    fn refusal(&self, who: &str, endpoint: Endpoint, subject: Option<&str>, query: Option<&str>) -> Option<ApiError> {
        // A malformed query is the handler's to report; only `store` matters here.
        let store = Query::parse(query).ok().and_then(|mut query| query.string("store"));
        let permission = AdminPermission::of(endpoint, subject, store.as_deref());
        if self.authorizer.allows(who, &permission) {
            return None;
        }
        let on = match (permission.key, permission.user) {
            (Some(KeyRef { store: Some(store), key_id }), _) => format!(" on key {key_id} of store {store}"),
            (Some(KeyRef { store: None, key_id }), _) => format!(" on key {key_id}"),
            (None, Some(user)) => format!(" on user {user}"),
            (None, None) => String::new(),
        };
        Some(ApiError::access_denied(format!("{who} is not allowed to perform {}{on}", permission.action)))
    }

    /// Runs the endpoint; also returns what the call was about (a key, store or bucket), for the audit line.
    async fn run(
        &self,
        endpoint: Endpoint,
        subject: Option<String>,
        req: &mut S3Request<Body>,
    ) -> (Result<Vec<u8>, ApiError>, Option<String>) {
        let body = match read_body(req).await {
            Ok(body) => body,
            Err(err) => return (Err(err), subject),
        };
        let query = match Query::parse(req.uri.query()) {
            Ok(query) => query,
            Err(err) => return (Err(err), subject),
        };
        let mut call = Call { endpoint, subject, query, body: &body };
        let result = self.handlers.handle(&mut call).await;
        (result, call.subject)
    }
}

#[async_trait::async_trait]
impl S3Route for AdminRoute {
    fn is_match(&self, _method: &Method, uri: &Uri, _headers: &HeaderMap, _extensions: &mut Extensions) -> bool {
        routes::is_admin_path(uri.path())
    }

    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        if req.credentials.is_some() {
            return Ok(());
        }
        let action = attempted_action(&req.method, &req.uri);
        audit::record(req.extensions.get(), "anonymous", &action, None, Outcome::Denied);
        Err(s3_error!(AccessDenied, "admin API requests must be signed with SigV4 (service s3) by an admin user"))
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let Some(who) = req.credentials.as_ref().map(|credentials| credentials.access_key.clone()) else {
            return Err(s3_error!(AccessDenied, "admin API requests must be signed"));
        };
        self.respond(req, &who).await
    }
}

/// The audit name of what a refused caller tried, before the route is known to exist.
fn attempted_action(method: &Method, uri: &Uri) -> String {
    match routes::resolve(method, uri.path()) {
        Resolution::Found { endpoint, .. } => endpoint.action().to_owned(),
        _ => format!("{method} {}", uri.path()),
    }
}

/// The request body, at most [`MAX_BODY_BYTES`]. A body that does not match its signed SHA-256 fails here, while
/// s3s's verifying stream is read.
async fn read_body(req: &mut S3Request<Body>) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        let message = format!("the request body is larger than {MAX_BODY_BYTES} bytes");
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLarge", message)
    };
    let declared = req.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    req.input.store_all_limited(MAX_BODY_BYTES).await.map_err(|err| {
        let message = format!("the request body could not be read or does not match its signed SHA-256: {err}");
        ApiError::bad_request("IncompleteBody", message)
    })
}

fn method_not_allowed(method: &Method, allowed: &[Method]) -> S3Response<Body> {
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let message = format!("{method} is not allowed here; use {}", names.join(" or "));
    let mut response = error_response(&ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message));
    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
        response.headers.insert(ALLOW, value);
    }
    response
}

fn error_response(err: &ApiError) -> S3Response<Body> {
    json_response(err.status, err.to_body())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> S3Response<Body> {
    let mut response = S3Response::with_status(Body::from(body), status);
    response.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
