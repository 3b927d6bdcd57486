//! The Vault transit backend against a real OpenBao dev server (started per test on a free port, in its own process
//! group, killed as a group when the test ends).
//!
//! `bao` is found through `COFFER_BAO_BIN`, then the repository's `.venv/bin/bao` (installed by scripts/setup.sh),
//! then `PATH`; without it these tests fail and say how to install it. OpenBao's own audit log counts the transit
//! calls Coffer makes, so call counts are measured on the server's side.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use coffer_kms::vault::VaultTransitBackend;
use coffer_kms::{
    BackendConfig, BackendOptions, EncryptionContext, KeyState, KmsBackend, KmsConfig, KmsError,
    KmsManager, Secret, VaultAuth, VaultConfig, WrappedKey,
};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The policy docs/kms-vault.md gives operators; the AppRole and token-file tests run with exactly this.
const COFFER_POLICY: &str = r#"
path "transit/keys" {
  capabilities = ["list"]
}
path "transit/keys/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "transit/encrypt/*" {
  capabilities = ["update"]
}
path "transit/decrypt/*" {
  capabilities = ["update"]
}
path "transit/rewrap/*" {
  capabilities = ["update"]
}
"#;

/// A guard for calls that must return on their own within their timeout budget; far larger than the budget, it
/// only catches hangs.
const HANG_GUARD: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------------------------
// OpenBao dev server harness
// ---------------------------------------------------------------------------------------------------------------

fn bao_binary() -> PathBuf {
    let install =
        "run scripts/setup.sh (it installs OpenBao's `bao` into .venv/) or set COFFER_BAO_BIN; \
                   these tests need a real OpenBao server";
    if let Some(path) = std::env::var_os("COFFER_BAO_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "COFFER_BAO_BIN={} is not a file: {install}",
            path.display()
        );
        return path;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/bao");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("bao"))
                .find(|bao| bao.is_file())
        })
        .unwrap_or_else(|| panic!("OpenBao (`bao`) was not found: {install}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `bao server -dev` with an audit log, transit enabled at `transit/`.
struct OpenBao {
    child: Option<Child>,
    port: u16,
    root_token: String,
    dir: TempDir,
    http: reqwest::Client,
}

impl OpenBao {
    async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> Self {
        use std::os::unix::process::CommandExt as _;

        let dir = tempfile::tempdir().unwrap();
        let root_token = format!(
            "coffer-root-{}",
            std::process::id() as u64 * 1000 + u64::from(port)
        );
        let config = dir.path().join("bao.hcl");
        let audit = dir.path().join("audit.log");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"a\" {{\n  options {{ file_path = \"{}\" }}\n}}\n",
                audit.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(bao_binary())
            .arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-config={}", config.display()))
            // dev mode stores its root token in $HOME; keep that inside the test's directory.
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("starting bao");
        let mut bao = Self {
            child: Some(child),
            port,
            root_token,
            dir,
            http: reqwest::Client::new(),
        };
        bao.wait_ready().await;
        bao.api(
            "POST",
            "sys/mounts/transit",
            Some(json!({"type": "transit"})),
        )
        .await;
        bao
    }

    async fn wait_ready(&mut self) {
        for _ in 0..300 {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("bao exited with {status}: {}", self.server_log());
            }
            let health = self
                .http
                .get(format!("{}/v1/sys/health", self.address()))
                .send()
                .await;
            if health.is_ok_and(|response| response.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("bao did not become ready: {}", self.server_log());
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls the HTTP API with the root token; panics on errors. Returns the JSON body (Null when empty).
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.try_api(method, path, body).await;
        assert!(status < 300, "{method} {path} answered {status}: {body}");
        body
    }

    async fn try_api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.address()))
            .header("X-Vault-Token", &self.root_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    /// Requests OpenBao received for `path` (e.g. `transit/encrypt/KEY`), from its audit log.
    fn audited_requests(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["type"] == "request" && entry["request"]["path"] == path)
            .count()
    }

    /// How many `transit/encrypt` calls OpenBao served for `key_id`: the KMS calls that made data keys.
    fn encrypt_calls(&self, key_id: &str) -> usize {
        self.audited_requests(&format!("transit/encrypt/{key_id}"))
    }

    /// Runs the bao CLI against this server as root.
    fn cli(&self, args: &[&str]) {
        let output = Command::new(bao_binary())
            .args(args)
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", &self.root_token)
            .env("HOME", self.dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "bao {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Sends `signal` to the server's whole process group (the PyPI `bao` is a wrapper around the real binary).
    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill")
            .args([signal, "--", &format!("-{}", child.id())])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the server for good and hands back its port.
    fn kill(mut self) -> u16 {
        self.stop();
        self.port
    }

    fn stop(&mut self) {
        if self.child.is_some() {
            self.signal("-KILL");
            let _ = self.child.take().unwrap().wait();
        }
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Backend helpers
// ---------------------------------------------------------------------------------------------------------------

fn options(state_dir: &Path) -> BackendOptions {
    BackendOptions {
        timeout: Duration::from_secs(5),
        retry_attempts: 3,
        state_dir: state_dir.to_owned(),
    }
}

fn vault_config(bao: &OpenBao, auth: VaultAuth) -> VaultConfig {
    VaultConfig {
        address: bao.address(),
        mount_path: "transit".into(),
        namespace: None,
        auth,
        ca_cert_path: None,
        client_cert_path: None,
        client_key_path: None,
        skip_tls_verify: false,
    }
}

fn root_auth(bao: &OpenBao) -> VaultAuth {
    VaultAuth::Token {
        token: Secret::new(bao.root_token.clone()),
    }
}

async fn root_backend(bao: &OpenBao, state_dir: &Path) -> VaultTransitBackend {
    VaultTransitBackend::connect(&vault_config(bao, root_auth(bao)), &options(state_dir))
        .await
        .unwrap()
}

fn context(object: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("aws:s3:arn", format!("arn:aws:s3:::bucket/{object}"))
        .with("bucket", "bucket")
}

/// Installs the documented policy as `coffer`.
async fn install_policy(bao: &OpenBao) {
    bao.api(
        "PUT",
        "sys/policies/acl/coffer",
        Some(json!({ "policy": COFFER_POLICY })),
    )
    .await;
}

/// A token with the documented policy.
async fn policy_token(bao: &OpenBao) -> String {
    let created = bao
        .api(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["coffer"], "ttl": "1h"})),
        )
        .await;
    created["auth"]["client_token"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn key_lifecycle_create_describe_list_rotate_enable_disable_delete() {
    let bao = OpenBao::start().await;
    let state = tempfile::tempdir().unwrap();
    let backend = root_backend(&bao, state.path()).await;

    let created = backend
        .create_key(Some("orders"), Some("orders bucket"))
        .await
        .unwrap();
    assert_eq!(created.key_id, "orders");
    assert_eq!(created.state, KeyState::Enabled);
    assert_eq!(created.current_version, 1);
    assert_eq!(created.description.as_deref(), Some("orders bucket"));
    // Created as a derived aes256-gcm96 transit key.
    let transit_key = bao.api("GET", "transit/keys/orders", None).await;
    assert_eq!(transit_key["data"]["type"], "aes256-gcm96");
    assert_eq!(transit_key["data"]["derived"], true);

    assert!(
        matches!(backend.create_key(Some("orders"), None).await, Err(KmsError::KeyExists(id)) if id == "orders")
    );
    assert!(matches!(
        backend.create_key(Some("../sys"), None).await,
        Err(KmsError::InvalidKeyId(_))
    ));
    assert!(
        matches!(backend.describe_key("missing").await, Err(KmsError::KeyNotFound(id)) if id == "missing")
    );
    let generated = backend.create_key(None, None).await.unwrap();
    assert!(
        generated.key_id.starts_with("coffer-"),
        "{}",
        generated.key_id
    );

    let described = backend.describe_key("orders").await.unwrap();
    assert_eq!(described, created);

    // Rotation adds a version with its creation time.
    let rotated = backend.rotate_key("orders").await.unwrap();
    assert_eq!(rotated.current_version, 2);
    assert_eq!(
        rotated
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(rotated.created_at, created.created_at);

    // Paged listing in id order.
    for id in ["k-a", "k-b", "k-c"] {
        backend.create_key(Some(id), None).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = backend.list_keys(2, marker.as_deref()).await.unwrap();
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.iter().map(|key| key.key_id.clone()));
        match page.next_marker {
            Some(next) => marker = Some(next),
            None => break,
        }
    }
    let mut expected = vec![
        generated.key_id.clone(),
        "k-a".into(),
        "k-b".into(),
        "k-c".into(),
        "orders".into(),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    // Disable / enable.
    let disabled = backend.disable_key("orders").await.unwrap();
    assert_eq!(disabled.state, KeyState::Disabled);
    assert!(matches!(
        backend.rotate_key("orders").await,
        Err(KmsError::KeyDisabled(_))
    ));
    assert_eq!(
        backend.enable_key("orders").await.unwrap().state,
        KeyState::Enabled
    );

    // Scheduled deletion and its cancellation (which leaves the key disabled, as in AWS KMS).
    assert!(matches!(
        backend.schedule_deletion("orders", 3).await,
        Err(KmsError::InvalidArgument { .. })
    ));
    let pending = backend.schedule_deletion("orders", 7).await.unwrap();
    assert_eq!(pending.state, KeyState::PendingDeletion);
    let days = (pending.deletion_date.unwrap() - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((7 * 24 - 1..=7 * 24).contains(&days), "{days}");
    assert!(matches!(
        backend.enable_key("orders").await,
        Err(KmsError::KeyPendingDeletion(_))
    ));
    assert!(matches!(
        backend.schedule_deletion("orders", 7).await,
        Err(KmsError::KeyPendingDeletion(_))
    ));
    let cancelled = backend.cancel_deletion("orders").await.unwrap();
    assert_eq!(
        (cancelled.state, cancelled.deletion_date),
        (KeyState::Disabled, None)
    );

    // The lifecycle survives a new backend over the same state directory.
    drop(backend);
    let reopened = root_backend(&bao, state.path()).await;
    let again = reopened.describe_key("orders").await.unwrap();
    assert_eq!(again.state, KeyState::Disabled);
    assert_eq!(again.description.as_deref(), Some("orders bucket"));
}

#[tokio::test]
async fn data_keys_round_trip_survive_rotation_and_rewrap_and_bind_the_context() {
    let bao = OpenBao::start().await;
    let state = tempfile::tempdir().unwrap();
    let backend = root_backend(&bao, state.path()).await;
    backend.create_key(Some("data"), None).await.unwrap();

    let ctx = context("a.txt");
    let old = backend.generate_data_key("data", &ctx).await.unwrap();
    assert_eq!((old.key_id.as_str(), old.key_version), ("data", 1));
    let header = old.wrapped.header().unwrap();
    assert_eq!((header.key_id, header.key_version), ("data", 1));
    assert!(header.payload.starts_with(b"vault:v1:"));
    let opened = backend.decrypt_data_key(&old.wrapped, &ctx).await.unwrap();
    assert_eq!(opened.as_bytes(), old.plaintext.as_bytes());
    // Fresh key material every time.
    let other = backend.generate_data_key("data", &ctx).await.unwrap();
    assert_ne!(other.plaintext.as_bytes(), old.plaintext.as_bytes());

    // The context is bound: another context, an extra pair or an empty context do not open the blob.
    for wrong in [
        context("b.txt"),
        context("a.txt").with("extra", "1"),
        EncryptionContext::new(),
    ] {
        assert!(matches!(
            backend.decrypt_data_key(&old.wrapped, &wrong).await,
            Err(KmsError::InvalidCiphertext)
        ));
    }
    // Tampering with the ciphertext or the header's version is detected.
    let mut payload = header.payload.to_vec();
    let last = payload.len() - 2;
    payload[last] = if payload[last] == b'A' { b'B' } else { b'A' };
    let tampered =
        WrappedKey::new(coffer_kms::BackendKind::VaultTransit, "data", 1, &payload).unwrap();
    assert!(matches!(
        backend.decrypt_data_key(&tampered, &ctx).await,
        Err(KmsError::InvalidCiphertext)
    ));
    let relabelled = WrappedKey::new(
        coffer_kms::BackendKind::VaultTransit,
        "data",
        2,
        header.payload,
    )
    .unwrap();
    assert!(matches!(
        backend.decrypt_data_key(&relabelled, &ctx).await,
        Err(KmsError::InvalidCiphertext)
    ));
    let foreign =
        WrappedKey::new(coffer_kms::BackendKind::Local, "data", 1, header.payload).unwrap();
    assert!(matches!(
        backend.decrypt_data_key(&foreign, &ctx).await,
        Err(KmsError::InvalidCiphertext)
    ));
    // A blob naming another key does not open either.
    backend.create_key(Some("other"), None).await.unwrap();
    let moved = WrappedKey::new(
        coffer_kms::BackendKind::VaultTransit,
        "other",
        1,
        header.payload,
    )
    .unwrap();
    assert!(matches!(
        backend.decrypt_data_key(&moved, &ctx).await,
        Err(KmsError::InvalidCiphertext)
    ));

    // Rotation: new data keys use version 2, the old blob still opens.
    backend.rotate_key("data").await.unwrap();
    let new = backend.generate_data_key("data", &ctx).await.unwrap();
    assert_eq!(new.key_version, 2);
    assert_eq!(
        backend
            .decrypt_data_key(&old.wrapped, &ctx)
            .await
            .unwrap()
            .as_bytes(),
        old.plaintext.as_bytes()
    );
    assert_eq!(
        backend
            .decrypt_data_key(&new.wrapped, &ctx)
            .await
            .unwrap()
            .as_bytes(),
        new.plaintext.as_bytes()
    );

    // Rewrap moves the old blob to version 2 inside Vault; same data key, same context binding.
    let rewrapped = backend.rewrap(&old.wrapped, &ctx).await.unwrap();
    assert_eq!(rewrapped.header().unwrap().key_version, 2);
    assert_eq!(
        backend
            .decrypt_data_key(&rewrapped, &ctx)
            .await
            .unwrap()
            .as_bytes(),
        old.plaintext.as_bytes()
    );
    assert!(matches!(
        backend
            .decrypt_data_key(&rewrapped, &context("b.txt"))
            .await,
        Err(KmsError::InvalidCiphertext)
    ));
    assert!(matches!(
        backend.rewrap(&old.wrapped, &context("b.txt")).await,
        Err(KmsError::InvalidCiphertext)
    ));

    // Disabled keys refuse both directions; keys pending deletion still decrypt but make no new data keys.
    backend.disable_key("data").await.unwrap();
    assert!(matches!(
        backend.generate_data_key("data", &ctx).await,
        Err(KmsError::KeyDisabled(_))
    ));
    assert!(matches!(
        backend.decrypt_data_key(&old.wrapped, &ctx).await,
        Err(KmsError::KeyDisabled(_))
    ));
    assert!(matches!(
        backend.rewrap(&old.wrapped, &ctx).await,
        Err(KmsError::KeyDisabled(_))
    ));
    backend.enable_key("data").await.unwrap();
    backend.schedule_deletion("data", 7).await.unwrap();
    assert!(matches!(
        backend.generate_data_key("data", &ctx).await,
        Err(KmsError::KeyPendingDeletion(_))
    ));
    assert_eq!(
        backend
            .decrypt_data_key(&old.wrapped, &ctx)
            .await
            .unwrap()
            .as_bytes(),
        old.plaintext.as_bytes()
    );

    // Data keys for a key that does not exist are refused; transit does not quietly create it.
    assert!(matches!(
        backend.generate_data_key("nope", &ctx).await,
        Err(KmsError::KeyNotFound(_))
    ));
    assert_eq!(bao.try_api("GET", "transit/keys/nope", None).await.0, 404);
}

#[tokio::test]
async fn transit_keys_coffer_cannot_bind_a_context_with_are_refused() {
    let bao = OpenBao::start().await;
    let state = tempfile::tempdir().unwrap();
    let backend = root_backend(&bao, state.path()).await;
    // Not derived: transit would silently ignore the context.
    bao.api(
        "POST",
        "transit/keys/plain",
        Some(json!({"type": "aes256-gcm96"})),
    )
    .await;
    // Created by an operator as Coffer needs it: usable as it is.
    bao.api(
        "POST",
        "transit/keys/operator-made",
        Some(json!({"type": "aes256-gcm96", "derived": true})),
    )
    .await;

    let err = backend
        .generate_data_key("plain", &context("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Backend(message) if message.contains("derived=true")),
        "{err}"
    );
    assert_eq!(bao.encrypt_calls("plain"), 0);
    let page = backend.list_keys(100, None).await.unwrap();
    assert_eq!(
        page.keys
            .iter()
            .map(|key| key.key_id.as_str())
            .collect::<Vec<_>>(),
        ["operator-made"]
    );
    let data_key = backend
        .generate_data_key("operator-made", &context("x"))
        .await
        .unwrap();
    assert_eq!(
        backend
            .decrypt_data_key(&data_key.wrapped, &context("x"))
            .await
            .unwrap()
            .as_bytes(),
        data_key.plaintext.as_bytes()
    );
}

#[tokio::test]
async fn a_key_past_its_deletion_date_is_deleted_from_transit_on_next_touch() {
    let bao = OpenBao::start().await;
    let state = tempfile::tempdir().unwrap();
    let backend = root_backend(&bao, state.path()).await;
    for id in ["doomed", "listed-doomed", "kept"] {
        backend.create_key(Some(id), None).await.unwrap();
    }
    backend.schedule_deletion("doomed", 7).await.unwrap();
    backend.schedule_deletion("listed-doomed", 7).await.unwrap();
    drop(backend);

    // Seven days pass: move the recorded deletion dates into the past.
    let file = state.path().join("vault-transit-keys.json");
    let mut recorded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let past = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for keys in recorded["scopes"].as_object_mut().unwrap().values_mut() {
        for id in ["doomed", "listed-doomed"] {
            keys[id]["deletion_date"] = json!(past);
        }
    }
    std::fs::write(&file, serde_json::to_vec(&recorded).unwrap()).unwrap();

    let backend = root_backend(&bao, state.path()).await;
    assert!(matches!(
        backend.describe_key("doomed").await,
        Err(KmsError::KeyNotFound(_))
    ));
    assert_eq!(bao.try_api("GET", "transit/keys/doomed", None).await.0, 404);
    let listed = backend.list_keys(10, None).await.unwrap();
    assert_eq!(
        listed
            .keys
            .iter()
            .map(|key| key.key_id.as_str())
            .collect::<Vec<_>>(),
        ["kept"]
    );
    assert_eq!(
        bao.try_api("GET", "transit/keys/listed-doomed", None)
            .await
            .0,
        404
    );
    // The id is free again.
    assert_eq!(
        backend
            .create_key(Some("doomed"), None)
            .await
            .unwrap()
            .state,
        KeyState::Enabled
    );
}

#[tokio::test]
async fn token_file_auth_follows_a_replaced_token_and_never_shows_it() {
    let bao = OpenBao::start().await;
    install_policy(&bao).await;
    let state = tempfile::tempdir().unwrap();
    let token_file = state.path().join("vault-token");
    let first = policy_token(&bao).await;
    std::fs::write(&token_file, format!("{first}\n")).unwrap();

    let config = vault_config(
        &bao,
        VaultAuth::TokenFile {
            path: token_file.clone(),
        },
    );
    let backend = VaultTransitBackend::connect(&config, &options(state.path()))
        .await
        .unwrap();
    assert!(backend.health().await.healthy);
    backend.create_key(Some("tf"), None).await.unwrap();
    let data_key = backend
        .generate_data_key("tf", &context("x"))
        .await
        .unwrap();

    // Vault Agent style rotation: a new token lands in the file and the old one is revoked.
    let second = policy_token(&bao).await;
    std::fs::write(&token_file, &second).unwrap();
    bao.api("POST", "auth/token/revoke", Some(json!({ "token": first })))
        .await;
    let opened = backend
        .decrypt_data_key(&data_key.wrapped, &context("x"))
        .await
        .unwrap();
    assert_eq!(opened.as_bytes(), data_key.plaintext.as_bytes());

    // A token Vault does not know: a clear error that does not contain it.
    let bogus = "s.bogus-token-that-must-not-leak";
    std::fs::write(&token_file, bogus).unwrap();
    bao.api(
        "POST",
        "auth/token/revoke",
        Some(json!({ "token": second })),
    )
    .await;
    let err = backend
        .generate_data_key("tf", &context("x"))
        .await
        .unwrap_err();
    let health = backend.health().await;
    assert!(!health.healthy);
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{health:?}"),
        format!("{backend:?}"),
        format!("{config:?}"),
    ] {
        for secret in [bogus, first.as_str(), second.as_str()] {
            assert!(!shown.contains(secret), "secret leaked into {shown}");
        }
    }
    assert!(err.to_string().contains("denied"), "{err}");
}

#[tokio::test]
async fn approle_auth_logs_in_again_after_expiry_and_revocation() {
    let bao = OpenBao::start().await;
    install_policy(&bao).await;
    bao.api("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    bao.api(
        "POST",
        "auth/approle/role/coffer",
        Some(json!({"token_policies": ["coffer"], "token_ttl": "3s", "token_max_ttl": "3s"})),
    )
    .await;
    let role_id = bao
        .api("GET", "auth/approle/role/coffer/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao
        .api("POST", "auth/approle/role/coffer/secret-id", None)
        .await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = tempfile::tempdir().unwrap();
    let secret_file = state.path().join("secret-id");
    std::fs::write(&secret_file, &secret_id).unwrap();
    let logins = || bao.audited_requests("auth/approle/login");

    let config = vault_config(
        &bao,
        VaultAuth::AppRole {
            role_id: role_id.clone(),
            secret_id: None,
            secret_id_file: Some(secret_file),
            mount: "approle".into(),
        },
    );
    let backend = VaultTransitBackend::connect(&config, &options(state.path()))
        .await
        .unwrap();
    assert_eq!(logins(), 0, "connect must not need Vault");
    backend.create_key(Some("ar"), None).await.unwrap();
    let data_key = backend
        .generate_data_key("ar", &context("x"))
        .await
        .unwrap();
    assert_eq!(logins(), 1);

    // The 3 s token expires while Coffer is idle; the next call logs in again and succeeds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let opened = backend
        .decrypt_data_key(&data_key.wrapped, &context("x"))
        .await
        .unwrap();
    assert_eq!(opened.as_bytes(), data_key.plaintext.as_bytes());
    assert_eq!(logins(), 2);

    // A revoked token: Vault answers 403, Coffer logs in again once and the call succeeds.
    bao.api("PUT", "sys/leases/revoke-prefix/auth/approle/login", None)
        .await;
    backend
        .generate_data_key("ar", &context("x"))
        .await
        .unwrap();
    assert_eq!(logins(), 3);

    // The same role with the secret id given as a value, and a wrong one refused cleanly.
    let by_value = vault_config(
        &bao,
        VaultAuth::AppRole {
            role_id: role_id.clone(),
            secret_id: Some(Secret::new(secret_id.clone())),
            secret_id_file: None,
            mount: "approle".into(),
        },
    );
    let other_state = tempfile::tempdir().unwrap();
    let backend = VaultTransitBackend::connect(&by_value, &options(other_state.path()))
        .await
        .unwrap();
    assert!(backend.health().await.healthy);
    let wrong = vault_config(
        &bao,
        VaultAuth::AppRole {
            role_id,
            secret_id: Some(Secret::new("00000000-wrong-secret-id")),
            secret_id_file: None,
            mount: "approle".into(),
        },
    );
    let backend = VaultTransitBackend::connect(&wrong, &options(other_state.path()))
        .await
        .unwrap();
    let err = backend.describe_key("ar").await.unwrap_err();
    assert!(err.to_string().contains("AppRole login failed"), "{err}");
    for shown in [
        err.to_string(),
        format!("{:?}", backend.health().await),
        format!("{wrong:?}"),
        format!("{backend:?}"),
    ] {
        assert!(
            !shown.contains("wrong-secret-id") && !shown.contains(&secret_id),
            "secret leaked into {shown}"
        );
    }
}

#[tokio::test]
async fn health_reports_sealed_openbao_a_bad_login_and_a_missing_mount() {
    let bao = OpenBao::start().await;
    let state = tempfile::tempdir().unwrap();
    let backend = root_backend(&bao, state.path()).await;
    assert_eq!(backend.health().await, coffer_kms::Health::ok());
    backend.create_key(Some("h"), None).await.unwrap();

    let mut missing_mount = vault_config(&bao, root_auth(&bao));
    missing_mount.mount_path = "not-mounted".into();
    let health = VaultTransitBackend::connect(&missing_mount, &options(state.path()))
        .await
        .unwrap()
        .health()
        .await;
    assert!(!health.healthy);
    assert!(
        health
            .reason
            .as_deref()
            .unwrap()
            .contains("no transit engine is mounted at not-mounted"),
        "{health:?}"
    );

    let bad_token = vault_config(
        &bao,
        VaultAuth::Token {
            token: Secret::new("s.not-a-real-token"),
        },
    );
    let health = VaultTransitBackend::connect(&bad_token, &options(state.path()))
        .await
        .unwrap()
        .health()
        .await;
    assert!(!health.healthy);
    assert!(
        health.reason.as_deref().unwrap().contains("login"),
        "{health:?}"
    );
    assert!(!format!("{health:?}").contains("not-a-real-token"));

    bao.cli(&["operator", "seal"]);
    let health = backend.health().await;
    assert!(!health.healthy);
    assert!(
        health.reason.as_deref().unwrap().contains("sealed"),
        "{health:?}"
    );
    let err = tokio::time::timeout(HANG_GUARD, backend.generate_data_key("h", &context("x")))
        .await
        .unwrap();
    assert!(
        matches!(&err, Err(KmsError::Unavailable(message)) if message.contains("sealed")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_dead_or_frozen_openbao_fails_cleanly_and_the_backend_recovers() {
    let bao = OpenBao::start().await;
    let state = tempfile::tempdir().unwrap();
    let quick = BackendOptions {
        timeout: Duration::from_secs(2),
        ..options(state.path())
    };
    let backend = VaultTransitBackend::connect(&vault_config(&bao, root_auth(&bao)), &quick)
        .await
        .unwrap();
    backend.create_key(Some("r"), None).await.unwrap();
    let before = backend.generate_data_key("r", &context("x")).await.unwrap();

    // Frozen (SIGSTOP): connections are accepted but never answered. The call gives up on its own.
    bao.signal("-STOP");
    let frozen =
        tokio::time::timeout(HANG_GUARD, backend.generate_data_key("r", &context("x"))).await;
    let frozen = frozen.expect("a frozen Vault hung the call");
    assert!(
        matches!(&frozen, Err(KmsError::Unavailable(message)) if message.contains("did not answer")),
        "{frozen:?}"
    );
    let health = tokio::time::timeout(HANG_GUARD, backend.health())
        .await
        .expect("health hung");
    assert!(!health.healthy);
    bao.signal("-CONT");
    let opened = backend
        .decrypt_data_key(&before.wrapped, &context("x"))
        .await
        .unwrap();
    assert_eq!(opened.as_bytes(), before.plaintext.as_bytes());

    // Killed: connections are refused; retries run out and the call fails cleanly.
    let port = bao.kill();
    let dead =
        tokio::time::timeout(HANG_GUARD, backend.generate_data_key("r", &context("x"))).await;
    let dead = dead.expect("a dead Vault hung the call");
    assert!(matches!(&dead, Err(KmsError::Unavailable(_))), "{dead:?}");
    let health = backend.health().await;
    assert!(!health.healthy && health.reason.is_some(), "{health:?}");

    // Back on the same port (a dev server starts empty): recreate the key and carry on with the same backend.
    let bao = OpenBao::start_on(port).await;
    assert!(backend.health().await.healthy);
    assert!(matches!(
        backend.generate_data_key("r", &context("x")).await,
        Err(KmsError::KeyNotFound(_))
    ));
    backend.create_key(Some("r"), None).await.unwrap();
    let after = backend.generate_data_key("r", &context("x")).await.unwrap();
    assert_eq!(
        backend
            .decrypt_data_key(&after.wrapped, &context("x"))
            .await
            .unwrap()
            .as_bytes(),
        after.plaintext.as_bytes()
    );
    assert_eq!(bao.encrypt_calls("r"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cache_misses_through_the_manager_make_one_call_to_openbao() {
    let bao = OpenBao::start().await;
    let state = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(state.path().join("kms")).unwrap();
    let mut config = KmsConfig::new(BackendConfig::VaultTransit(vault_config(
        &bao,
        root_auth(&bao),
    )));
    config.default_key_id = "coalesced".into();
    manager.configure(config).await.unwrap();
    manager.start().await.unwrap();
    assert!(manager.status().await.healthy);
    // Starting created the default key in transit, and no data key yet.
    assert_eq!(
        bao.try_api("GET", "transit/keys/coalesced", None).await.0,
        200
    );
    assert_eq!(bao.encrypt_calls("coalesced"), 0);

    // 100 writers miss the same (key, bucket, context) entry at once.
    let ctx = EncryptionContext::new().with("aws:s3:arn", "arn:aws:s3:::photos");
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (manager, ctx, start) = (manager.clone(), ctx.clone(), start.clone());
        writers.spawn(async move {
            start.wait().await;
            manager.bucket_key("coalesced", "photos", &ctx).await
        });
    }
    let mut wrapped = Vec::new();
    while let Some(joined) = writers.join_next().await {
        wrapped.push(joined.unwrap().unwrap().wrapped.clone());
    }
    assert_eq!(wrapped.len(), 100);
    assert!(
        wrapped.iter().all(|blob| blob == &wrapped[0]),
        "the writers got different bucket keys"
    );
    assert_eq!(
        bao.encrypt_calls("coalesced"),
        1,
        "100 concurrent misses must make one transit/encrypt call"
    );

    // 100 readers of that blob: at most one transit/decrypt call, and the key they get opens the blob.
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (manager, ctx, blob) = (manager.clone(), ctx.clone(), wrapped[0].clone());
        readers.spawn(async move { manager.unwrap_key(&blob, &ctx).await });
    }
    let bucket_key = manager
        .bucket_key("coalesced", "photos", &ctx)
        .await
        .unwrap();
    while let Some(joined) = readers.join_next().await {
        assert_eq!(
            joined.unwrap().unwrap().as_bytes(),
            bucket_key.plaintext.as_bytes()
        );
    }
    assert!(bao.audited_requests("transit/decrypt/coalesced") <= 1);

    // Clearing the cache makes the next write ask OpenBao again.
    manager.clear_cache();
    manager
        .bucket_key("coalesced", "photos", &ctx)
        .await
        .unwrap();
    assert_eq!(bao.encrypt_calls("coalesced"), 2);
}
