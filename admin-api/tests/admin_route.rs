//! The admin route inside a real s3s service, driving a real `KmsManager` (local backend in a temp dir), with
//! requests signed by the CLI's own SigV4 signer: what an operator gets from awscurl or `coffer admin`, minus the
//! network.

use std::sync::Arc;

use coffer_admin_api::cli::{AdminClient, SigningKeys};
use coffer_admin_api::{AdminPermission, AdminRoute, KeyRef};
use coffer_kms::KmsManager;
use http::{Method, StatusCode};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, S3};
use serde_json::{json, Value};

const ENDPOINT: &str = "http://127.0.0.1:9000";
const KMS: &str = "/coffer/admin/v3/kms";
const ROOT: (&str, &str) = ("root", "root-secret-key");
const READER: (&str, &str) = ("reader", "reader-secret-key");

/// An S3 implementation with no operations: only the admin route answers.
struct NoObjects;

#[async_trait::async_trait]
impl S3 for NoObjects {}

struct Harness {
    service: S3Service,
    dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text))
    }

    fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        self.json()
    }

    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        body
    }
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kms = KmsManager::open(dir.path().join("kms")).unwrap();
        kms.ensure_embedded_default().await.unwrap();
        let mut auth = SimpleAuth::new();
        auth.register(ROOT.0.into(), ROOT.1.into());
        auth.register(READER.0.into(), READER.1.into());
        let mut builder = S3ServiceBuilder::new(NoObjects);
        builder.set_auth(auth);
        // The reader may only rotate the key `reader-key` of the default store.
        let authorizer = |access_key: &str, permission: &AdminPermission<'_>| {
            access_key == ROOT.0
                || (permission.action == "kms:RotateKey"
                    && permission.key == Some(KeyRef { store: None, key_id: "reader-key" }))
        };
        builder.set_route(AdminRoute::new(Arc::clone(&kms), Arc::new(authorizer)));
        Self { service: builder.build(), dir }
    }

    async fn send_as(&self, keys: (&str, &str), method: Method, path: &str, body: Option<&str>) -> Answer {
        let keys = SigningKeys { access_key: keys.0.into(), secret_key: keys.1.into() };
        let signer = AdminClient::new(ENDPOINT, keys, "us-east-1".into(), None).unwrap();
        let url = reqwest::Url::parse(&format!("{ENDPOINT}{path}")).unwrap();
        let body = body.unwrap_or_default().as_bytes().to_vec();
        let headers = signer.signature_headers(&method, &url, &body).unwrap();
        self.send_signed(method, path, headers, body).await
    }

    async fn send_signed(&self, method: Method, path: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Answer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:9000")
            .header("content-length", body.len());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = self.service.call(request.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().store_all_limited(1 << 20).await.unwrap();
        Answer { status, text: String::from_utf8(bytes.to_vec()).unwrap() }
    }

    async fn admin(&self, method: Method, path: &str, body: Option<&str>) -> Answer {
        self.send_as(ROOT, method, &format!("{KMS}{path}"), body).await
    }

    fn local_config(&self, name: &str) -> Value {
        json!({
            "backend_type": "local",
            "key_dir": self.dir.path().join(name).to_str().unwrap(),
            "master_key": "m".repeat(40) + name,
            "default_key_id": format!("{name}-default"),
        })
    }
}

#[tokio::test]
async fn status_answers_under_every_prefix() {
    let harness = Harness::new().await;
    for prefix in ["/coffer/admin/v3/kms", "/rustfs/admin/v3/kms", "/minio/admin/v3/kms"] {
        let status = harness.send_as(ROOT, Method::GET, &format!("{prefix}/status"), None).await.ok();
        assert_eq!(status["status"], "Running", "{status}");
        assert_eq!(status["healthy"], true, "{status}");
        assert_eq!(status["backend_type"], "local");
        for field in ["enabled", "hit_count", "miss_count", "entry_count", "eviction_count"] {
            assert!(status["cache"].get(field).is_some(), "cache.{field} missing: {status}");
        }
        assert!(status["kms_calls"].is_object(), "{status}");
    }
}

#[tokio::test]
async fn only_signed_admin_callers_get_in() {
    let harness = Harness::new().await;
    let refused = harness.send_as(READER, Method::POST, &format!("{KMS}/stop"), None).await;
    refused.error(StatusCode::FORBIDDEN, "AccessDenied");
    assert!(refused.text.contains("kms:Configure"), "{}", refused.text);
    assert!(!refused.text.contains(READER.1));
    assert_eq!(harness.admin(Method::GET, "/status", None).await.ok()["status"], "Running");

    // Key permissions follow the key (and its store) named in the path.
    harness.admin(Method::POST, "/keys", Some(r#"{"key_id":"reader-key"}"#)).await.ok();
    harness.admin(Method::POST, "/keys", Some(r#"{"key_id":"other-key"}"#)).await.ok();
    harness.send_as(READER, Method::POST, &format!("{KMS}/keys/reader-key/rotate"), None).await.ok();
    let other = harness.send_as(READER, Method::POST, &format!("{KMS}/keys/other-key/rotate"), None).await;
    other.error(StatusCode::FORBIDDEN, "AccessDenied");
    assert!(other.text.contains("kms:RotateKey on key other-key"), "{}", other.text);
    let elsewhere = format!("{KMS}/keys/reader-key/rotate?store=local");
    harness.send_as(READER, Method::POST, &elsewhere, None).await.error(StatusCode::FORBIDDEN, "AccessDenied");

    let unsigned = harness.send_signed(Method::GET, &format!("{KMS}/status"), Vec::new(), Vec::new()).await;
    assert_eq!(unsigned.status, StatusCode::FORBIDDEN);
    assert!(unsigned.text.contains("<Code>AccessDenied</Code>"), "{}", unsigned.text);

    let forged = harness.send_as((ROOT.0, "not-the-secret"), Method::GET, &format!("{KMS}/status"), None).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.text.contains("<Code>SignatureDoesNotMatch</Code>"), "{}", forged.text);
}

#[tokio::test]
async fn paths_outside_the_admin_prefixes_are_not_the_routes_business() {
    let harness = Harness::new().await;
    let answer = harness.send_as(ROOT, Method::GET, "/coffer/admin/v3/config", None).await;
    assert_ne!(answer.status, StatusCode::OK);
    assert!(answer.text.starts_with('<'), "S3 answered, not the admin API: {}", answer.text);
    harness.admin(Method::GET, "/unknown", None).await.error(StatusCode::NOT_FOUND, "UnknownEndpoint");
    harness.admin(Method::PUT, "/status", None).await.error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
}

#[tokio::test]
async fn reset_sequence_and_configure_rules() {
    let harness = Harness::new().await;
    let config = harness.local_config("second").to_string();

    let conflict = harness.admin(Method::POST, "/configure", Some(&config)).await;
    let body = conflict.error(StatusCode::CONFLICT, "InvalidKMSState");
    assert!(body["message"].as_str().unwrap().contains("reconfigure"), "{body}");

    assert_eq!(harness.admin(Method::POST, "/stop", None).await.ok()["status"], "Stopped");
    let before = harness.admin(Method::GET, "/config", None).await.ok();
    let refused = harness
        .admin(Method::POST, "/configure", Some(r#"{"backend_type":"local","key_dir":"/k","colour":"red"}"#))
        .await;
    assert_eq!(refused.error(StatusCode::BAD_REQUEST, "UnknownField")["field"], "colour");
    assert_eq!(harness.admin(Method::GET, "/config", None).await.ok(), before, "a refused body changed the config");

    assert_eq!(harness.admin(Method::POST, "/configure", Some(&config)).await.ok()["status"], "Configured");
    assert_eq!(harness.admin(Method::POST, "/start", None).await.ok()["status"], "Running");
    let status = harness.admin(Method::GET, "/status", None).await.ok();
    assert_eq!(
        (status["status"].as_str(), status["default_key_id"].as_str()),
        (Some("Running"), Some("second-default"))
    );

    let shown = harness.admin(Method::GET, "/config", None).await.text;
    assert!(shown.contains("***") && !shown.contains(&"m".repeat(40)), "{shown}");
    assert!(harness.dir.path().join("second").is_dir());
}

#[tokio::test]
async fn kms_validation_errors_name_their_field() {
    let harness = Harness::new().await;
    harness.admin(Method::POST, "/stop", None).await.ok();
    let answer = harness.admin(Method::POST, "/configure", Some(r#"{"backend_type":"local"}"#)).await;
    let body = answer.error(StatusCode::BAD_REQUEST, "InvalidConfig");
    assert_eq!(body["field"], "key_dir");
    assert_eq!(body["message"], "KMS key directory is required for local backend");
}

#[tokio::test]
async fn keys_round_trip() {
    let harness = Harness::new().await;
    let created =
        harness.admin(Method::POST, "/keys", Some(r#"{"key_id":"orders","description":"order data"}"#)).await.ok();
    assert_eq!((created["key_id"].as_str(), created["state"].as_str()), (Some("orders"), Some("Enabled")));
    let generated = harness.admin(Method::POST, "/keys", None).await.ok();
    assert!(generated["key_id"].as_str().unwrap().starts_with("coffer-"), "{generated}");
    harness
        .admin(Method::POST, "/keys", Some(r#"{"key_id":"orders"}"#))
        .await
        .error(StatusCode::CONFLICT, "KeyAlreadyExists");

    let first = harness.admin(Method::GET, "/keys?limit=1", None).await.ok();
    assert_eq!(first["keys"].as_array().unwrap().len(), 1);
    let marker = first["next_marker"].as_str().expect("more than one key exists");
    let rest = harness.admin(Method::GET, &format!("/keys?marker={marker}"), None).await.ok();
    let ids: Vec<&str> = first["keys"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["keys"].as_array().unwrap())
        .map(|key| key["key_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"orders") && ids.contains(&generated["key_id"].as_str().unwrap()), "{ids:?}");

    assert_eq!(harness.admin(Method::POST, "/keys/orders/rotate", None).await.ok()["current_version"], 2);
    assert_eq!(harness.admin(Method::POST, "/keys/orders/disable", None).await.ok()["state"], "Disabled");
    assert_eq!(harness.admin(Method::POST, "/keys/orders/enable", None).await.ok()["state"], "Enabled");
    let pending = harness.admin(Method::DELETE, "/keys/orders?pending_window_days=7", None).await.ok();
    assert_eq!(pending["state"], "PendingDeletion");
    assert!(pending["deletion_date"].is_string(), "{pending}");
    let restored = harness.admin(Method::POST, "/keys/orders/cancel-deletion", None).await.ok();
    assert!(restored["deletion_date"].is_null(), "{restored}");
    let described = harness.admin(Method::GET, "/keys/orders", None).await.ok();
    assert_eq!(described["versions"].as_array().unwrap().len(), 2, "{described}");
    assert_eq!(described["min_decryption_version"], 1, "{described}");

    // Retiring version 1 (the key is disabled after the cancelled deletion: that does not matter here).
    let minimum = "/keys/orders/min-decryption-version";
    for refused in [r#"{"min_decryption_version":3}"#, r#"{"min_decryption_version":0}"#] {
        let error =
            harness.admin(Method::PUT, minimum, Some(refused)).await.error(StatusCode::BAD_REQUEST, "InvalidArgument");
        assert_eq!(error["field"], "min_decryption_version", "{error}");
    }
    for (malformed, code) in [(r#"{"min_decryption_version":-1}"#, "InvalidField"), ("{}", "MissingField")] {
        harness.admin(Method::PUT, minimum, Some(malformed)).await.error(StatusCode::BAD_REQUEST, code);
    }
    let raised = harness.admin(Method::PUT, minimum, Some(r#"{"min_decryption_version":2}"#)).await.ok();
    assert_eq!((&raised["min_decryption_version"], &raised["current_version"]), (&2.into(), &2.into()), "{raised}");
    assert_eq!(raised["versions"].as_array().unwrap().len(), 1, "only the versions that still decrypt: {raised}");
    let listed = harness.admin(Method::GET, "/keys?marker=order&limit=1", None).await.ok();
    assert_eq!(listed["keys"][0]["min_decryption_version"], 2, "{listed}");

    harness.admin(Method::GET, "/keys/missing", None).await.error(StatusCode::NOT_FOUND, "KeyNotFound");
    let out_of_range = harness.admin(Method::DELETE, "/keys/orders?pending_window_days=1", None).await;
    assert_eq!(out_of_range.status, StatusCode::BAD_REQUEST, "{}", out_of_range.text);
    harness
        .admin(Method::POST, "/keys/orders/rotate", Some("{}"))
        .await
        .error(StatusCode::BAD_REQUEST, "UnexpectedBody");
}

#[tokio::test]
async fn minio_key_endpoints() {
    let harness = Harness::new().await;
    let minio = |path: &str| format!("/minio/admin/v3/kms{path}");
    harness.send_as(ROOT, Method::POST, &minio("/key/create?key-id=app-1"), None).await.ok();
    harness.send_as(ROOT, Method::POST, &minio("/key/create?key-id=web-1"), None).await.ok();
    let status = harness.send_as(ROOT, Method::GET, &minio("/key/status?key-id=app-1"), None).await.ok();
    assert_eq!(status, json!({"key-id": "app-1"}));
    let listed = harness.send_as(ROOT, Method::GET, &minio("/key/list?pattern=app-*"), None).await.ok();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|key| key["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["app-1"]);
    harness
        .send_as(ROOT, Method::GET, &minio("/key/status"), None)
        .await
        .error(StatusCode::BAD_REQUEST, "MissingParameter");

    harness.admin(Method::POST, "/keys/app-1/disable", None).await.ok();
    harness
        .send_as(ROOT, Method::GET, &minio("/key/status?key-id=app-1"), None)
        .await
        .error(StatusCode::CONFLICT, "KeyDisabled");
}

#[tokio::test]
async fn a_stopped_kms_refuses_key_work_but_reports_status() {
    let harness = Harness::new().await;
    harness.admin(Method::POST, "/stop", None).await.ok();
    harness.admin(Method::GET, "/keys", None).await.error(StatusCode::CONFLICT, "KMSNotRunning");
    let status = harness.admin(Method::GET, "/status", None).await.ok();
    assert_eq!((status["status"].as_str(), status["healthy"].as_bool()), (Some("Stopped"), Some(false)));
    assert!(status["reason"].is_string(), "{status}");
    harness.admin(Method::POST, "/clear-cache", None).await.ok();
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_anything_happens() {
    let harness = Harness::new().await;
    let huge = format!(r#"{{"backend_type":"local","key_dir":"{}"}}"#, "k".repeat(70 * 1024));
    harness
        .admin(Method::POST, "/reconfigure", Some(&huge))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLarge");
    assert_eq!(harness.admin(Method::GET, "/status", None).await.ok()["status"], "Running");
}
