//! Tests of the KMS lifecycle manager: configuration, persistence, start/stop, reconfiguration and the object path.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::config::Secret;
use crate::types::KeyState;

const MASTER: &str = "manager-tests-master-key-0123456789abcdef";

fn local_config(key_dir: &Path) -> KmsConfig {
    KmsConfig::new(BackendConfig::Local(LocalConfig {
        key_dir: Some(key_dir.to_owned()),
        master_key: Some(Secret::new(MASTER)),
        master_key_file: None,
    }))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn context(bucket: &str) -> EncryptionContext {
    EncryptionContext::new().with("aws:s3:arn", format!("arn:aws:s3:::{bucket}"))
}

fn calls(status: &KmsStatus, operation: &str) -> u64 {
    status.calls.kms_calls[operation]
}

/// A manager over `root/kms`, configured with a local backend in `root/keys` and started.
async fn running(root: &Path) -> Arc<KmsManager> {
    let manager = KmsManager::open(root.join("kms")).unwrap();
    manager.configure(local_config(&root.join("keys"))).await.unwrap();
    manager.start().await.unwrap();
    manager
}

#[tokio::test]
async fn a_fresh_manager_is_not_configured_and_refuses_everything() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    assert_eq!(mode(&root.path().join("kms")), 0o700);
    let status = manager.status().await;
    assert_eq!((status.state.clone(), status.healthy), (LifecycleState::NotConfigured, false));
    assert_eq!(status.reason.as_deref(), Some("KMS is not configured"));
    assert_eq!((status.backend_type, status.default_key_id), (None, None));
    assert!(manager.config().is_none() && manager.default_key_id().is_none());

    assert!(matches!(manager.start().await, Err(KmsError::NotConfigured)));
    assert!(matches!(manager.stop().await, Err(KmsError::NotConfigured)));
    assert!(matches!(manager.backend(None), Err(KmsError::NotConfigured)));
    assert!(matches!(manager.bucket_key("k", "b", &context("b")).await, Err(KmsError::NotConfigured)));
    assert!(matches!(manager.describe_key("k").await, Err(KmsError::NotConfigured)));
    manager.clear_cache(None).await.unwrap();
    manager.restore().await.unwrap();
    assert_eq!(manager.status().await.state, LifecycleState::NotConfigured);
}

#[tokio::test]
async fn the_embedded_default_runs_a_local_backend_with_a_generated_private_master_key() {
    let root = tempfile::tempdir().unwrap();
    let state_dir = root.path().join("kms");
    let manager = KmsManager::open(state_dir.clone()).unwrap();
    manager.ensure_embedded_default().await.unwrap();

    let status = manager.status().await;
    assert_eq!((status.state.clone(), status.healthy), (LifecycleState::Running, true), "{status:?}");
    assert_eq!(status.backend_type, Some(BackendKind::Local));
    assert_eq!(status.default_key_id.as_deref(), Some("coffer-default"));
    let default_key = manager.describe_key("coffer-default").await.unwrap();
    assert_eq!(default_key.state, KeyState::Enabled);

    let master = state_dir.join("local/master.key");
    assert_eq!(mode(&master), 0o600);
    assert_eq!(mode(&state_dir.join("local/keys")), 0o700);
    assert_eq!(mode(&state_dir.join("local/keys/coffer-default.key")), 0o600);
    assert_eq!(mode(&state_dir.join("config.json")), 0o600);
    let master_text = std::fs::read_to_string(&master).unwrap();
    let shown = manager.config().unwrap().to_string();
    assert!(shown.contains("master.key") && !shown.contains(master_text.trim()), "{shown}");

    // A second call, and a restart, keep what exists.
    manager.ensure_embedded_default().await.unwrap();
    drop(manager);
    let restarted = KmsManager::open(state_dir.clone()).unwrap();
    restarted.restore().await.unwrap();
    restarted.ensure_embedded_default().await.unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Running);
    assert_eq!(std::fs::read_to_string(&master).unwrap(), master_text);
    assert_eq!(restarted.describe_key("coffer-default").await.unwrap().created_at, default_key.created_at);
}

#[tokio::test]
async fn configure_start_stop_and_start_again() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    let mut config = local_config(&root.path().join("keys"));
    config.default_key_id = "orders".into();
    manager.configure(config.clone()).await.unwrap();
    let status = manager.status().await;
    assert_eq!((status.state, status.healthy), (LifecycleState::Configured, false));
    assert_eq!(manager.default_key_id().as_deref(), Some("orders"));
    assert!(matches!(manager.bucket_key("orders", "b", &context("b")).await, Err(KmsError::NotRunning)));
    assert!(matches!(manager.stop().await, Err(KmsError::WrongState { .. })));

    manager.start().await.unwrap();
    assert_eq!(manager.status().await.state, LifecycleState::Running);
    manager.start().await.unwrap();
    let written = manager.bucket_key("orders", "b", &context("b")).await.unwrap();

    let err = manager.configure(config.clone()).await.unwrap_err();
    assert!(matches!(err, KmsError::WrongState { .. }));
    assert_eq!(err.to_string(), "cannot configure while the KMS is Running");

    manager.stop().await.unwrap();
    manager.stop().await.unwrap();
    let status = manager.status().await;
    assert_eq!((status.state, status.healthy), (LifecycleState::Stopped, false));
    let err = manager.bucket_key("orders", "b", &context("b")).await.unwrap_err();
    assert_eq!(err.to_string(), "KMS is not running");
    assert!(matches!(manager.unwrap_key(&written.wrapped, &context("b")).await, Err(KmsError::NotRunning)));
    assert!(matches!(manager.backend(None), Err(KmsError::NotRunning)));

    // The reset sequence: stop → configure → start.
    config.cache.enabled = false;
    manager.configure(config).await.unwrap();
    manager.start().await.unwrap();
    let opened = manager.unwrap_key(&written.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), written.plaintext.as_bytes());
    assert!(!manager.status().await.cache.enabled);
}

#[tokio::test]
async fn invalid_configurations_are_refused_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    let no_dir = KmsConfig::new(BackendConfig::Local(LocalConfig::default()));
    let err = manager.configure(no_dir.clone()).await.unwrap_err();
    assert_eq!(err.to_string(), "KMS key directory is required for local backend");
    assert_eq!(manager.status().await.state, LifecycleState::NotConfigured);
    assert!(!root.path().join("kms/config.json").exists());

    let running = running(root.path()).await;
    assert!(running.reconfigure(no_dir).await.is_err());
    assert_eq!(running.status().await.state, LifecycleState::Running);
}

#[tokio::test]
async fn secrets_are_persisted_privately_but_never_shown() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    let path = root.path().join("kms/config.json");
    assert_eq!(mode(&path), 0o600);
    assert!(std::fs::read_to_string(&path).unwrap().contains(MASTER), "the persisted file keeps the secret");
    let shown = manager.config().unwrap();
    assert_eq!(shown["stores"]["local"]["master_key"], "***");
    let status = manager.status().await;
    let everything = format!(
        "{} {:?} {manager:?} {:?}",
        serde_json::to_string(&status).unwrap(),
        status,
        local_config(Path::new("/k"))
    );
    assert!(!everything.contains(MASTER), "{everything}");
}

#[tokio::test]
async fn a_local_backend_without_a_master_key_uses_the_generated_one() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    let config = KmsConfig::new(BackendConfig::Local(LocalConfig {
        key_dir: Some(root.path().join("keys")),
        master_key: None,
        master_key_file: None,
    }));
    manager.configure(config).await.unwrap();
    manager.start().await.unwrap();
    let master = root.path().join("kms/local/master.key");
    assert_eq!(mode(&master), 0o600);
    assert_eq!(manager.config().unwrap()["stores"]["local"]["master_key_file"], master.display().to_string());
}

#[tokio::test]
async fn a_restart_comes_back_running() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    let written = manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    drop(manager);

    let restarted = KmsManager::open(root.path().join("kms")).unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Configured, "not running until restored");
    restarted.restore().await.unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Running);
    let opened = restarted.unwrap_key(&written.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), written.plaintext.as_bytes());
}

#[tokio::test]
async fn a_restart_keeps_a_stopped_or_configured_kms_as_it_was() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    manager.stop().await.unwrap();
    drop(manager);
    let restarted = KmsManager::open(root.path().join("kms")).unwrap();
    restarted.restore().await.unwrap();
    restarted.ensure_embedded_default().await.unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Stopped);
    assert!(!root.path().join("kms/local").exists(), "no embedded default over an existing configuration");

    let other = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(other.path().join("kms")).unwrap();
    manager.configure(local_config(&other.path().join("keys"))).await.unwrap();
    drop(manager);
    let restarted = KmsManager::open(other.path().join("kms")).unwrap();
    restarted.restore().await.unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Configured);
}

/// A manager over `root/kms` whose start failed because its key directory, `root/keys`, is a file. Returns the
/// manager, the start's error and that path: once the file is gone a start succeeds.
async fn failed_start(root: &Path) -> (Arc<KmsManager>, KmsError, PathBuf) {
    let manager = KmsManager::open(root.join("kms")).unwrap();
    let key_dir = root.join("keys");
    std::fs::write(&key_dir, b"not a directory").unwrap();
    manager.configure(local_config(&key_dir)).await.unwrap();
    let err = manager.start().await.unwrap_err();
    (manager, err, key_dir)
}

#[tokio::test]
async fn a_failed_start_is_an_error_state_that_a_new_configuration_clears() {
    let root = tempfile::tempdir().unwrap();
    let (manager, err, not_a_dir) = failed_start(root.path()).await;

    let status = manager.status().await;
    assert_eq!(status.state.name(), "Error");
    assert!(!status.healthy);
    let reason = status.reason.unwrap();
    assert!(reason.contains("failed to start") && reason.contains(&not_a_dir.display().to_string()), "{reason}");
    assert!(status.calls.last_error.unwrap().contains(&err.to_string()));
    assert!(matches!(manager.bucket_key("k", "b", &context("b")).await, Err(KmsError::NotRunning)));
    assert_eq!(serde_json::to_value(&manager.status().await).unwrap()["status"], "Error");

    // A restart tries again (the operator asked for it to run) and fails the same way.
    drop(manager);
    let restarted = KmsManager::open(root.path().join("kms")).unwrap();
    assert!(restarted.restore().await.is_err());
    assert_eq!(restarted.status().await.state.name(), "Error");

    restarted.configure(local_config(&root.path().join("other-keys"))).await.unwrap();
    restarted.start().await.unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Running);
}

/// Polls the status until `wanted` holds (the retry task's first pauses are 1 s and 2 s), or gives up after 20 s.
async fn wait_for_state(manager: &KmsManager, wanted: impl Fn(&LifecycleState) -> bool) -> LifecycleState {
    for _ in 0..200 {
        let state = manager.status().await.state;
        if wanted(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    manager.status().await.state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_retried_until_it_succeeds() {
    let root = tempfile::tempdir().unwrap();
    let (manager, _, key_dir) = failed_start(root.path()).await;
    assert_eq!(manager.status().await.state.name(), "Error");

    // The cause goes away (Vault comes up, is unsealed, a volume is mounted): nobody calls start again.
    std::fs::remove_file(&key_dir).unwrap();
    let state = wait_for_state(&manager, |state| *state == LifecycleState::Running).await;
    assert_eq!(state, LifecycleState::Running);
    assert!(manager.status().await.healthy);
    let default_key = manager.default_key_id().unwrap();
    manager.bucket_key(&default_key, "b", &context("b")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_ends_the_retries_of_a_failed_start() {
    let root = tempfile::tempdir().unwrap();
    let (manager, _, key_dir) = failed_start(root.path()).await;
    manager.stop().await.unwrap();

    std::fs::remove_file(&key_dir).unwrap();
    tokio::time::sleep(FIRST_RETRY_PAUSE * 4).await;
    assert_eq!(manager.status().await.state, LifecycleState::Stopped);
    assert!(!key_dir.exists(), "a retry after the stop created the key directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_a_retry_hanging_on_an_unresponsive_vault() {
    let root = tempfile::tempdir().unwrap();
    // The kernel completes connections to a listening socket nobody accepts from: requests go unanswered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = KmsConfig::new(BackendConfig::VaultTransit(crate::config::VaultConfig {
        address: format!("http://{}", silent.local_addr().unwrap()),
        mount_path: "transit".into(),
        namespace: None,
        auth: crate::config::VaultAuth::Token { token: Secret::new("s.unused-token") },
        ca_cert_path: None,
        client_cert_path: None,
        client_key_path: None,
        skip_tls_verify: false,
    }));
    config.timeout_seconds = 5;
    config.retry_attempts = 0;
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    manager.configure(config).await.unwrap();
    assert!(manager.start().await.is_err());

    // The first retry starts FIRST_RETRY_PAUSE later and waits out the whole 5 s timeout; a stop that waited for
    // it would take over 4 s.
    tokio::time::sleep(FIRST_RETRY_PAUSE + Duration::from_millis(500)).await;
    let stop = tokio::time::timeout(Duration::from_secs(2), manager.stop()).await;
    stop.expect("the stop waited for the retry's attempt").unwrap();
    assert_eq!(manager.status().await.state, LifecycleState::Stopped);
    // The attempt ends with its timeout and does not undo the stop.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(manager.status().await.state, LifecycleState::Stopped);
}

#[tokio::test]
async fn stop_moves_an_error_state_to_stopped() {
    let root = tempfile::tempdir().unwrap();
    let (manager, _, _) = failed_start(root.path()).await;
    manager.stop().await.unwrap();
    assert_eq!(manager.status().await.state, LifecycleState::Stopped);
}

#[tokio::test]
async fn a_corrupt_configuration_file_is_an_error_state_not_a_reset() {
    let root = tempfile::tempdir().unwrap();
    let state_dir = root.path().join("kms");
    drop(running(root.path()).await);
    let path = state_dir.join("config.json");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let manager = KmsManager::open(state_dir.clone()).unwrap();
    manager.restore().await.unwrap();
    manager.ensure_embedded_default().await.unwrap();
    let status = manager.status().await;
    assert_eq!(status.state.name(), "Error");
    let reason = status.reason.unwrap();
    assert!(reason.contains(&path.display().to_string()) && !reason.contains(MASTER), "{reason}");
    assert!(!state_dir.join("local").exists(), "the embedded default did not replace the configuration");
    assert!(matches!(manager.start().await, Err(KmsError::NotConfigured)));

    manager.configure(local_config(&root.path().join("keys"))).await.unwrap();
    manager.start().await.unwrap();
    manager.describe_key("coffer-default").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_swaps_backends_while_requests_in_flight_finish() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    let old_blob = manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    let in_flight = manager.backend(None).unwrap();

    let new_dir = root.path().join("keys-2");
    manager.reconfigure(local_config(&new_dir)).await.unwrap();
    assert_eq!(manager.status().await.state, LifecycleState::Running);
    assert!(new_dir.join("coffer-default.key").exists(), "the new backend got its default key");

    // A request that took the old backend before the swap still completes on it.
    let finished = in_flight.generate_data_key("coffer-default", &context("b")).await.unwrap();
    in_flight.decrypt_data_key(&finished.wrapped, &context("b")).await.unwrap();

    // New requests go to the new backend with a fresh cache: its default key is another key, which does not open
    // the old blob.
    let fresh = manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    assert_ne!(fresh.plaintext.as_bytes(), old_blob.plaintext.as_bytes());
    let err = manager.unwrap_key(&old_blob.wrapped, &context("b")).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidCiphertext), "{err}");

    // A restart comes back with the new configuration.
    drop((manager, in_flight));
    let restarted = KmsManager::open(root.path().join("kms")).unwrap();
    restarted.restore().await.unwrap();
    assert_eq!(restarted.config().unwrap()["stores"]["local"]["key_dir"], new_dir.display().to_string());
}

#[tokio::test]
async fn a_failed_reconfigure_keeps_the_running_backend() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    let written = manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    // The same key directory under another master key: its default key does not open.
    let mut wrong_master = local_config(&root.path().join("keys"));
    let BackendConfig::Local(local) = wrong_master.default_backend_mut() else { unreachable!() };
    local.master_key = Some(Secret::new("another-master-key-that-opens-nothing-0000"));
    let err = manager.reconfigure(wrong_master).await.unwrap_err();
    assert!(err.to_string().contains("coffer-default.key"), "{err}");

    assert_eq!(manager.status().await.state, LifecycleState::Running);
    manager.unwrap_key(&written.wrapped, &context("b")).await.unwrap();
    manager.clear_cache(None).await.unwrap();
    manager.unwrap_key(&written.wrapped, &context("b")).await.unwrap();
    let shown = manager.config().unwrap().to_string();
    assert!(shown.contains("keys") && !shown.contains("another-master"), "{shown}");
}

#[tokio::test]
async fn reconfigure_when_not_running_stores_the_configuration() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    manager.reconfigure(local_config(&root.path().join("keys"))).await.unwrap();
    assert_eq!(manager.status().await.state, LifecycleState::Configured);
}

#[tokio::test]
async fn the_object_path_is_cached_and_counted() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    let before = calls(&manager.status().await, "generate_data_key");
    for _ in 0..5 {
        manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    }
    let status = manager.status().await;
    assert_eq!(calls(&status, "generate_data_key"), before + 1);
    assert_eq!((status.cache.miss_count, status.cache.hit_count, status.cache.enabled), (1, 4, true));
    assert!(status.cache.entry_count >= 1);

    manager.clear_cache(None).await.unwrap();
    let key = manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    let status = manager.status().await;
    assert_eq!(calls(&status, "generate_data_key"), before + 2, "clear-cache forces a new backend call");

    // Answers to what was asked (a wrong context, an unknown key) are not KMS faults.
    let err = manager.unwrap_key(&key.wrapped, &context("other")).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidCiphertext));
    let err = manager.describe_key("no-such-key").await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound(_)));
    let status = manager.status().await;
    assert_eq!((status.calls.kms_errors["decrypt_data_key"], status.calls.kms_errors["describe_key"]), (0, 0));
    assert_eq!(status.calls.last_error, None);

    // A key file the backend cannot read is one.
    let key_file = root.path().join("keys").join("broken.key");
    std::fs::create_dir_all(&key_file).unwrap();
    let err = manager.describe_key("broken").await.unwrap_err();
    assert!(err.is_fault(), "{err}");
    let status = manager.status().await;
    assert_eq!(status.calls.kms_errors["describe_key"], 1);
    assert!(status.calls.last_error.as_deref().unwrap().starts_with("describe_key: "));
    assert!(status.calls.latency["generate_data_key"].avg_ms >= 0.0);

    let json = serde_json::to_value(&status).unwrap();
    for field in
        ["status", "healthy", "backend_type", "default_key_id", "cache", "kms_calls", "kms_errors", "last_error"]
    {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    assert_eq!(json["status"], "Running");
    assert_eq!(json["backend_type"], "local");
    for field in ["enabled", "hit_count", "miss_count", "entry_count", "eviction_count"] {
        assert!(json["cache"].get(field).is_some(), "cache.{field} missing from {json}");
    }
}

#[tokio::test]
async fn with_the_cache_off_every_object_calls_the_kms() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    let mut config = local_config(&root.path().join("keys"));
    config.cache.enabled = false;
    manager.configure(config).await.unwrap();
    manager.start().await.unwrap();
    let before = calls(&manager.status().await, "generate_data_key");
    for _ in 0..4 {
        manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    }
    assert_eq!(calls(&manager.status().await, "generate_data_key"), before + 4);
}

#[tokio::test]
async fn key_administration_goes_through_and_the_cache_follows_it() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    let created = manager.create_key(Some("orders"), Some("orders")).await.unwrap();
    assert_eq!(created.state, KeyState::Enabled);
    let page = manager.list_keys(None, 10, None).await.unwrap();
    assert_eq!(page.keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), ["coffer-default", "orders"]);
    let written = manager.bucket_key("orders", "b", &context("b")).await.unwrap();

    // Disabling stops writes and reads at once, not after the TTL.
    manager.disable_key("orders").await.unwrap();
    assert!(matches!(manager.bucket_key("orders", "b", &context("b")).await, Err(KmsError::KeyDisabled(_))));
    assert!(matches!(manager.unwrap_key(&written.wrapped, &context("b")).await, Err(KmsError::KeyDisabled(_))));
    manager.enable_key("orders").await.unwrap();
    manager.unwrap_key(&written.wrapped, &context("b")).await.unwrap();

    // Rotation moves new writes to the new version at once.
    let rotated = manager.rotate_key("orders").await.unwrap();
    assert_eq!(rotated.current_version, 2);
    assert_eq!(manager.bucket_key("orders", "b", &context("b")).await.unwrap().key_version, 2);

    // Scheduled deletion stops writes at once; reads still open.
    manager.schedule_deletion("orders", 7).await.unwrap();
    let err = manager.bucket_key("orders", "b", &context("b")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyPendingDeletion(_)), "{err}");
    manager.unwrap_key(&written.wrapped, &context("b")).await.unwrap();
    assert_eq!(manager.cancel_deletion("orders").await.unwrap().state, KeyState::Disabled);
    assert_eq!(manager.describe_key("orders").await.unwrap().state, KeyState::Disabled);

    let status = manager.status().await;
    assert_eq!(calls(&status, "create_key"), 1, "orders (start-up creation of the default key is not metered)");
    for operation in ["list_keys", "disable_key", "enable_key", "rotate_key", "schedule_deletion", "cancel_deletion"] {
        assert_eq!(calls(&status, operation), 1, "{operation}");
    }
}

#[test]
fn lifecycle_states_print_and_serialize_as_their_names() {
    for (state, name) in [
        (LifecycleState::NotConfigured, "NotConfigured"),
        (LifecycleState::Configured, "Configured"),
        (LifecycleState::Running, "Running"),
        (LifecycleState::Stopped, "Stopped"),
        (LifecycleState::Error("boom".into()), "Error"),
    ] {
        assert_eq!(state.to_string(), name);
        assert_eq!(serde_json::to_value(&state).unwrap(), name);
    }
}

#[tokio::test]
async fn a_start_that_cannot_save_its_state_is_an_error_that_is_retried() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    manager.configure(local_config(&root.path().join("keys"))).await.unwrap();
    // A non-empty directory where config.json goes: the write fails as on a full disk.
    let config_file = root.path().join("kms").join(CONFIG_FILE);
    let saved = std::fs::read(&config_file).unwrap();
    std::fs::remove_file(&config_file).unwrap();
    std::fs::create_dir_all(config_file.join("blocker")).unwrap();

    let err = manager.start().await.unwrap_err();
    assert!(matches!(err, KmsError::Io { .. }), "{err}");
    let status = manager.status().await;
    assert_eq!(status.state.name(), "Error", "not left in Configured");
    assert!(status.reason.unwrap().contains(CONFIG_FILE));

    std::fs::remove_dir_all(&config_file).unwrap();
    std::fs::write(&config_file, saved).unwrap();
    let state = wait_for_state(&manager, |state| *state == LifecycleState::Running).await;
    assert_eq!(state, LifecycleState::Running, "never retried");
    let persisted: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file).unwrap()).unwrap();
    assert_eq!(persisted["state"], "Running");
}

#[tokio::test]
async fn a_restart_that_changes_nothing_writes_nothing() {
    use std::os::unix::fs::MetadataExt as _;
    let root = tempfile::tempdir().unwrap();
    drop(running(root.path()).await);
    let config_file = root.path().join("kms").join(CONFIG_FILE);
    let inode = std::fs::metadata(&config_file).unwrap().ino();

    let restarted = KmsManager::open(root.path().join("kms")).unwrap();
    restarted.restore().await.unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Running);
    assert_eq!(std::fs::metadata(&config_file).unwrap().ino(), inode, "config.json was rewritten");
}

#[tokio::test]
async fn paths_are_saved_absolute_and_relative_ones_saved_by_older_versions_are_rebased() {
    let root = tempfile::tempdir().unwrap();
    let state_dir = root.path().join("data/.coffer/kms");
    let manager = KmsManager::open(state_dir.clone()).unwrap();
    manager.ensure_embedded_default().await.unwrap();
    let written = manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    let shown = manager.config().unwrap();
    for field in ["key_dir", "master_key_file"] {
        let path = shown["stores"]["local"][field].as_str().unwrap();
        assert!(Path::new(path).is_absolute() && path.starts_with(&state_dir.display().to_string()), "{path}");
    }
    drop(manager);

    // What the embedded default of the previous format saved when started as `coffer server` with `./data`.
    let config_file = state_dir.join(CONFIG_FILE);
    let persisted = serde_json::json!({"format": 1, "state": "Running", "config": {
        "backend": {"type": "local", "key_dir": "./data/.coffer/kms/local/keys",
                    "master_key_file": "./data/.coffer/kms/local/master.key"},
        "default_key_id": "coffer-default", "timeout_seconds": 10, "retry_attempts": 3,
        "cache": {"enabled": true, "max_cached_keys": 1000, "ttl_seconds": 300, "max_uses": 100000}}});
    std::fs::write(&config_file, serde_json::to_vec(&persisted).unwrap()).unwrap();
    // …and the blobs it wrote, which named no store.
    let header = written.wrapped.header().unwrap();
    let unnamed = WrappedKey::new(header.backend, header.key_id, header.key_version, header.payload).unwrap();
    assert_eq!(unnamed.header().unwrap().store, None);

    // Opened from another working directory (the test's), the keys are found where they are.
    let restarted = KmsManager::open(state_dir.clone()).unwrap();
    restarted.restore().await.unwrap();
    assert_eq!(restarted.status().await.state, LifecycleState::Running);
    for blob in [&written.wrapped, &unnamed] {
        let opened = restarted.unwrap_key(blob, &context("b")).await.unwrap();
        assert_eq!(opened.as_bytes(), written.plaintext.as_bytes());
    }
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file).unwrap()).unwrap();
    assert_eq!(saved["format"], 2);
    assert_eq!(saved["config"]["stores"]["local"]["key_dir"], state_dir.join("local/keys").display().to_string());
    assert_eq!(saved["config"]["legacy_stores"]["local"], "local");
}

#[tokio::test]
async fn relative_paths_given_to_configure_are_saved_absolute() {
    let root = tempfile::tempdir().unwrap();
    let manager = KmsManager::open(root.path().join("kms")).unwrap();
    let relative = Path::new("relative-keys-that-are-never-created");
    manager.configure(local_config(relative)).await.unwrap();
    let shown = manager.config().unwrap();
    let expected = std::env::current_dir().unwrap().join(relative);
    assert_eq!(shown["stores"]["local"]["key_dir"], expected.display().to_string());
}

fn local_store(dir: &Path) -> BackendConfig {
    BackendConfig::Local(LocalConfig {
        key_dir: Some(dir.to_owned()),
        master_key: Some(Secret::new(MASTER)),
        master_key_file: None,
    })
}

#[tokio::test]
async fn keys_of_a_named_store_are_wrapped_and_opened_there_whatever_the_default() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    manager.add_store("archive", local_store(&root.path().join("archive-keys"))).await.unwrap();
    let created = manager.create_key(Some("archive/cold"), None).await.unwrap();
    assert_eq!(created.key_id, "archive/cold");
    assert!(root.path().join("archive-keys/cold.key").exists());
    assert!(matches!(manager.describe_key("cold").await, Err(KmsError::KeyNotFound(_))), "not in the default store");

    let written = manager.bucket_key("archive/cold", "b", &context("b")).await.unwrap();
    assert_eq!(written.wrapped.header().unwrap().store, Some("archive"));
    let default_written = manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    assert_eq!(default_written.wrapped.header().unwrap().store, Some("local"));

    // Another default store changes where new writes go, not where old blobs are opened.
    manager.set_default_store("archive").await.unwrap();
    assert!(root.path().join("archive-keys/coffer-default.key").exists(), "the new default store got the default key");
    for (blob, key) in [(&written, "archive"), (&default_written, "local")] {
        let opened = manager.unwrap_key(&blob.wrapped, &context("b")).await.unwrap();
        assert_eq!(opened.as_bytes(), blob.plaintext.as_bytes(), "{key}");
    }
    let status = manager.status().await;
    assert_eq!(status.default_store.as_deref(), Some("archive"));
    let names: Vec<_> = status.stores.iter().map(|store| (store.name.as_str(), store.default, store.healthy)).collect();
    assert_eq!(names, [("archive", true, true), ("local", false, true)]);

    // A restart keeps the stores and the default.
    drop(manager);
    let restarted = KmsManager::open(root.path().join("kms")).unwrap();
    restarted.restore().await.unwrap();
    let opened = restarted.unwrap_key(&written.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), written.plaintext.as_bytes());
    assert!(matches!(restarted.bucket_key("nowhere/k", "b", &context("b")).await, Err(KmsError::StoreNotFound(_))));
}

#[tokio::test]
async fn stores_in_use_are_not_removed_and_bucket_keys_choose_the_store() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    manager.add_store("eu", local_store(&root.path().join("eu-keys"))).await.unwrap();
    manager.create_key(Some("eu/gdpr"), None).await.unwrap();
    assert_eq!(manager.default_key_for("photos").as_deref(), Some("coffer-default"));
    manager.set_bucket_key("photos", "eu/gdpr").await.unwrap();
    assert_eq!(manager.default_key_for("photos").as_deref(), Some("eu/gdpr"));
    assert_eq!(manager.bucket_key_ref("photos").as_deref(), Some("eu/gdpr"));
    assert!(matches!(manager.set_bucket_key("docs", "eu/missing").await, Err(KmsError::KeyNotFound(_))));
    assert_eq!(manager.bucket_key_ref("docs"), None, "a refused bucket key is not kept");

    let err = manager.remove_store("eu").await.unwrap_err();
    assert!(matches!(&err, KmsError::StoreInUse(message) if message.contains("1 bucket")), "{err}");
    let err = manager.remove_store("local").await.unwrap_err();
    assert!(matches!(&err, KmsError::StoreInUse(message) if message.contains("default store")), "{err}");
    assert!(matches!(manager.add_store("eu", local_store(root.path())).await, Err(KmsError::StoreInUse(_))));

    manager.unset_bucket_key("photos").await.unwrap();
    manager.remove_store("eu").await.unwrap();
    assert!(matches!(manager.describe_key("eu/gdpr").await, Err(KmsError::StoreNotFound(_))));
    assert_eq!(manager.saved_config().unwrap().unwrap().stores.keys().collect::<Vec<_>>(), ["local"]);
}

#[tokio::test]
async fn a_store_that_cannot_serve_fails_only_its_own_requests() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    let not_a_dir = root.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"file").unwrap();
    // Added while running, it is built first: refused, nothing changes.
    assert!(manager.add_store("broken", local_store(&not_a_dir)).await.is_err());
    assert!(!manager.saved_config().unwrap().unwrap().stores.contains_key("broken"));

    // Saved while stopped, it is broken at the next start; the default store serves.
    manager.add_store("spare", local_store(&root.path().join("spare-keys"))).await.unwrap();
    manager.stop().await.unwrap();
    manager.add_store("broken", local_store(&not_a_dir)).await.unwrap();
    manager.start().await.unwrap();
    let err = manager.bucket_key("broken/k", "b", &context("b")).await.unwrap_err();
    assert!(matches!(&err, KmsError::Unavailable(reason) if reason.starts_with("store broken:")), "{err}");
    manager.bucket_key("coffer-default", "b", &context("b")).await.unwrap();
    manager.create_key(Some("spare/k"), None).await.unwrap();
    let status = manager.status().await;
    assert!(status.healthy, "the default store is healthy");
    let broken = status.stores.iter().find(|store| store.name == "broken").unwrap();
    assert!(!broken.healthy && broken.reason.as_deref().unwrap().contains("not-a-dir"), "{broken:?}");
}

#[tokio::test]
async fn an_expired_key_makes_no_new_data_keys_even_from_the_cache_but_still_opens_old_ones() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    manager.create_key(Some("short-lived"), None).await.unwrap();
    let past = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
    let err = manager.set_key_expiry("short-lived", Some(past)).await.unwrap_err();
    assert!(matches!(&err, KmsError::InvalidArgument { field, .. } if field == "expires_at"), "{err}");

    let soon = time::OffsetDateTime::now_utc() + Duration::from_millis(1500);
    let metadata = manager.set_key_expiry("short-lived", Some(soon)).await.unwrap();
    assert_eq!(metadata.expires_at.map(|at| at.unix_timestamp()), Some(soon.unix_timestamp()));
    let written = manager.bucket_key("short-lived", "b", &context("b")).await.unwrap();
    assert!(manager.bucket_key("short-lived", "b", &context("b")).await.is_ok(), "served from the cache");

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let err = manager.bucket_key("short-lived", "b", &context("b")).await.unwrap_err();
    assert!(matches!(&err, KmsError::KeyExpired { key_id, .. } if key_id == "short-lived"), "{err}");
    assert!(!err.is_fault());
    manager.clear_cache(None).await.unwrap();
    let err = manager.bucket_key("short-lived", "b", &context("b")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyExpired { .. }), "the backend refuses too: {err}");
    let opened = manager.unwrap_key(&written.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), written.plaintext.as_bytes(), "objects under an expired key stay readable");

    // Clearing the expiration (or moving it into the future) makes the key usable again; it survives a restart.
    manager.set_key_expiry("short-lived", None).await.unwrap();
    manager.bucket_key("short-lived", "b", &context("b")).await.unwrap();
    let later = time::OffsetDateTime::now_utc() + Duration::from_secs(86_400 * 40);
    manager.set_key_expiry("short-lived", Some(later)).await.unwrap();
    drop(manager);
    let restarted = KmsManager::open(root.path().join("kms")).unwrap();
    restarted.restore().await.unwrap();
    let described = restarted.describe_key("short-lived").await.unwrap();
    assert_eq!(described.expires_at.map(|at| at.unix_timestamp()), Some(later.unix_timestamp()));
}

#[tokio::test]
async fn raising_the_minimum_decryption_version_stops_cached_keys_of_retired_versions_at_once() {
    let root = tempfile::tempdir().unwrap();
    let manager = running(root.path()).await;
    manager.create_key(Some("orders"), None).await.unwrap();
    let old = manager.bucket_key("orders", "b", &context("b")).await.unwrap();
    manager.unwrap_key(&old.wrapped, &context("b")).await.unwrap();
    // Rotated behind the manager's back (as an operator may rotate a transit key in Vault): the cache still holds
    // the version-1 bucket key.
    manager.backend(None).unwrap().rotate_key("orders").await.unwrap();
    assert_eq!(manager.bucket_key("orders", "b", &context("b")).await.unwrap().key_version, 1);
    let decrypts = calls(&manager.status().await, "decrypt_data_key");
    manager.unwrap_key(&old.wrapped, &context("b")).await.unwrap();
    assert_eq!(calls(&manager.status().await, "decrypt_data_key"), decrypts, "served from the cache");

    let err = manager.set_min_decryption_version("orders", 3).await.unwrap_err();
    assert!(matches!(&err, KmsError::InvalidArgument { field, .. } if field == "min_decryption_version"), "{err}");
    let raised = manager.set_min_decryption_version("orders", 2).await.unwrap();
    assert_eq!(raised.min_decryption_version, 2);
    let err = manager.unwrap_key(&old.wrapped, &context("b")).await.unwrap_err();
    assert!(matches!(&err, KmsError::KeyVersionRetired { key_id, version: 1 } if key_id == "orders"), "{err}");
    assert!(!err.is_fault());
    let new = manager.bucket_key("orders", "b", &context("b")).await.unwrap();
    assert_eq!(new.key_version, 2, "no bucket key of a retired version serves writes");
    manager.unwrap_key(&new.wrapped, &context("b")).await.unwrap();

    manager.set_min_decryption_version("orders", 1).await.unwrap();
    let opened = manager.unwrap_key(&old.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), old.plaintext.as_bytes());
    let status = manager.status().await;
    assert_eq!((calls(&status, "set_min_decryption_version"), status.calls.kms_errors["decrypt_data_key"]), (3, 0));
}

/// Saved bytes and their version, by name (or by store and key id).
type Versioned<K> = std::sync::Mutex<BTreeMap<K, (Vec<u8>, u64)>>;

/// The state two managers share in the tests of shared state: documents, key files by store and the announced
/// changes, in memory, versioned like the database's.
#[derive(Default)]
struct SharedMemory {
    documents: Versioned<String>,
    keys: Versioned<(String, String)>,
    announced: std::sync::Mutex<Vec<KmsChange>>,
}

struct MemoryDocuments(Arc<SharedMemory>);
struct MemoryKeys(Arc<SharedMemory>, String);
struct MemoryFeed(Arc<SharedMemory>);

#[async_trait::async_trait]
impl StateDocuments for MemoryDocuments {
    async fn load(&self, name: &str) -> Result<Option<Document>> {
        let documents = self.0.documents.lock().unwrap();
        Ok(documents
            .get(name)
            .map(|(bytes, version)| Document { bytes: Zeroizing::new(bytes.clone()), version: *version }))
    }

    async fn save(&self, name: &str, bytes: &[u8], expected: Option<u64>) -> Result<u64> {
        let mut documents = self.0.documents.lock().unwrap();
        let current = documents.get(name).map(|(_, version)| *version);
        if current != expected {
            return Err(KmsError::Conflict(format!("{name} changed")));
        }
        let version = current.unwrap_or(0) + 1;
        documents.insert(name.to_owned(), (bytes.to_vec(), version));
        Ok(version)
    }

    fn describe(&self, name: &str) -> String {
        format!("memory {name}")
    }
}

impl crate::shared::KeyFiles for MemoryKeys {
    fn read(&self, key_id: &str) -> Result<Option<(Vec<u8>, u64)>> {
        Ok(self.0.keys.lock().unwrap().get(&(self.1.clone(), key_id.to_owned())).cloned())
    }

    fn write(&self, key_id: &str, bytes: &[u8], expected: Option<u64>) -> Result<()> {
        let mut keys = self.0.keys.lock().unwrap();
        let slot = (self.1.clone(), key_id.to_owned());
        match (keys.get(&slot).map(|(_, version)| *version), expected) {
            (Some(_), None) => Err(KmsError::KeyExists(key_id.to_owned())),
            (current, expected) if current != expected => Err(KmsError::Conflict(key_id.to_owned())),
            (current, _) => {
                keys.insert(slot, (bytes.to_vec(), current.unwrap_or(0) + 1));
                Ok(())
            }
        }
    }

    fn remove(&self, key_id: &str) -> Result<()> {
        self.0.keys.lock().unwrap().remove(&(self.1.clone(), key_id.to_owned()));
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        let keys = self.0.keys.lock().unwrap();
        Ok(keys.keys().filter(|(store, _)| *store == self.1).map(|(_, key_id)| key_id.clone()).collect())
    }

    fn probe(&self) -> Result<()> {
        Ok(())
    }

    fn describe(&self, key_id: &str) -> String {
        format!("memory key {key_id}")
    }
}

#[async_trait::async_trait]
impl crate::shared::ChangeFeed for MemoryFeed {
    async fn announce(&self, change: &KmsChange) -> Result<()> {
        self.0.announced.lock().unwrap().push(change.clone());
        Ok(())
    }
}

fn shared(memory: &Arc<SharedMemory>) -> SharedKms {
    let keys = Arc::clone(memory);
    SharedKms {
        documents: Arc::new(MemoryDocuments(Arc::clone(memory))),
        key_files: Arc::new(move |store: &str| -> Arc<dyn crate::shared::KeyFiles> {
            Arc::new(MemoryKeys(Arc::clone(&keys), store.to_owned()))
        }),
        feed: Arc::new(MemoryFeed(Arc::clone(memory))),
    }
}

#[tokio::test]
async fn managers_sharing_state_follow_each_others_changes_and_never_write_over_them() {
    let root = tempfile::tempdir().unwrap();
    let memory = Arc::new(SharedMemory::default());
    let a = KmsManager::open_shared(root.path().join("a"), shared(&memory)).await.unwrap();
    a.configure(local_config(&root.path().join("keys-a"))).await.unwrap();
    a.start().await.unwrap();
    let key = a.create_key(Some("shared"), None).await.unwrap().key_id;
    assert!(!root.path().join("keys-a").exists(), "a shared local store keeps no key files of its own");

    // B comes up with what A saved, and uses A's keys.
    let b = KmsManager::open_shared(root.path().join("b"), shared(&memory)).await.unwrap();
    b.restore().await.unwrap();
    assert_eq!(b.status().await.state, LifecycleState::Running);
    b.bucket_key(&key, "photos", &context("photos")).await.unwrap();

    // A disables the key: the change is announced, and B following it refuses the key it had cached.
    a.disable_key(&key).await.unwrap();
    let change = memory.announced.lock().unwrap().last().cloned().unwrap();
    assert_eq!(change, KmsChange::Key { store: "local".into(), key_id: key.clone() });
    b.follow(&change).await.unwrap();
    assert!(matches!(b.bucket_key(&key, "photos", &context("photos")).await, Err(KmsError::KeyDisabled(_))));

    // A stops the KMS; B, not yet told, cannot save over that, and once it follows it is stopped too.
    a.stop().await.unwrap();
    assert!(matches!(b.set_bucket_key("photos", "shared").await, Err(KmsError::Conflict(_))));
    b.follow(&KmsChange::Config).await.unwrap();
    assert_eq!(b.status().await.state, LifecycleState::Stopped);
    a.start().await.unwrap();
    b.follow(&KmsChange::Config).await.unwrap();
    assert_eq!(b.status().await.state, LifecycleState::Running);
}
