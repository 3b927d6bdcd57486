//! Tests of the local backend: key files on disk, the master secret, key lifecycle and data-key wrapping.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::config::Secret;
use crate::key_requests::MAX_DESCRIPTION_LEN;

const MASTER: &str = "0123456789abcdef0123456789abcdef-test-master";

fn config(dir: &Path, master: &str) -> LocalConfig {
    LocalConfig { key_dir: Some(dir.to_owned()), master_key: Some(Secret::new(master)), master_key_file: None }
}

async fn backend(dir: &Path) -> LocalBackend {
    LocalBackend::open(&config(dir, MASTER)).await.unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn context(bucket: &str) -> EncryptionContext {
    EncryptionContext::new().with("bucket", bucket)
}

#[tokio::test]
async fn keys_are_created_described_and_listed() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    let made = backend.create_key(Some("orders"), Some("order data")).await.unwrap();
    assert_eq!((made.key_id.as_str(), made.state, made.current_version), ("orders", KeyState::Enabled, 1));
    assert_eq!(made.versions.len(), 1);
    assert_eq!(made.description.as_deref(), Some("order data"));
    assert_eq!(backend.describe_key("orders").await.unwrap(), made);

    let generated = backend.create_key(None, None).await.unwrap();
    assert!(generated.key_id.starts_with("coffer-"), "{}", generated.key_id);

    let page = backend.list_keys(100, None).await.unwrap();
    let ids: Vec<_> = page.keys.iter().map(|key| key.key_id.as_str()).collect();
    assert_eq!(ids, [generated.key_id.as_str(), "orders"]);
    assert_eq!(page.next_marker, None);
}

#[tokio::test]
async fn creation_refuses_duplicates_bad_ids_and_long_descriptions() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("k"), None).await.unwrap();
    assert!(matches!(backend.create_key(Some("k"), None).await, Err(KmsError::KeyExists(id)) if id == "k"));
    for bad in ["../escape", "a/b", "", ".hidden"] {
        assert!(matches!(backend.create_key(Some(bad), None).await, Err(KmsError::InvalidKeyId(_))), "{bad}");
        assert!(matches!(backend.describe_key(bad).await, Err(KmsError::InvalidKeyId(_))), "{bad}");
    }
    let long = "x".repeat(MAX_DESCRIPTION_LEN + 1);
    let err = backend.create_key(Some("long"), Some(&long)).await.unwrap_err();
    assert!(matches!(&err, KmsError::InvalidArgument { field, .. } if field == "description"), "{err}");
    assert!(matches!(backend.describe_key("missing").await, Err(KmsError::KeyNotFound(id)) if id == "missing"));
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "only k.key exists");
}

#[tokio::test]
async fn key_files_and_directory_are_private() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested/keys");
    let backend = backend(&dir).await;
    backend.create_key(Some("k"), None).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    let file = dir.join("k.key");
    assert_eq!(mode(&file), 0o600);
    backend.rotate_key("k").await.unwrap();
    assert_eq!(mode(&file), 0o600, "rewrites keep the mode");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["k.key"], "no temp files are left behind");

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"key_id\": \"k\"") && text.contains("kek_salt"), "{text}");
    assert!(!text.contains(MASTER));
}

#[tokio::test]
async fn data_keys_round_trip_and_are_bound_to_their_context() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("k"), None).await.unwrap();
    let data_key = backend.generate_data_key("k", &context("photos")).await.unwrap();
    assert_eq!((data_key.key_id.as_str(), data_key.key_version), ("k", 1));
    let header = data_key.wrapped.header().unwrap();
    assert_eq!((header.backend, header.key_id, header.key_version), (BackendKind::Local, "k", 1));

    let opened = backend.decrypt_data_key(&data_key.wrapped, &context("photos")).await.unwrap();
    assert_eq!(opened.as_bytes(), data_key.plaintext.as_bytes());
    let other = backend.generate_data_key("k", &context("photos")).await.unwrap();
    assert_ne!(other.plaintext.as_bytes(), data_key.plaintext.as_bytes(), "every data key is fresh");

    for wrong in [context("videos"), EncryptionContext::new(), context("photos").with("extra", "x")] {
        let err = backend.decrypt_data_key(&data_key.wrapped, &wrong).await.unwrap_err();
        assert!(matches!(err, KmsError::InvalidCiphertext), "{err}");
    }
}

#[tokio::test]
async fn foreign_forged_and_tampered_blobs_are_invalid() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("k"), None).await.unwrap();
    backend.create_key(Some("other"), None).await.unwrap();
    let data_key = backend.generate_data_key("k", &context("b")).await.unwrap();
    let payload = data_key.wrapped.header().unwrap().payload.to_vec();

    let vault = WrappedKey::new(BackendKind::VaultTransit, "k", 1, &payload).unwrap();
    let moved = WrappedKey::new(BackendKind::Local, "other", 1, &payload).unwrap();
    let escaping = WrappedKey::new(BackendKind::Local, "../k", 1, &payload).unwrap();
    let wrong_version = WrappedKey::new(BackendKind::Local, "k", 2, &payload).unwrap();
    let mut flipped = payload.clone();
    flipped[15] ^= 0x40;
    let tampered = WrappedKey::new(BackendKind::Local, "k", 1, &flipped).unwrap();
    for blob in [vault, moved, escaping, wrong_version, tampered] {
        let err = backend.decrypt_data_key(&blob, &context("b")).await.unwrap_err();
        assert!(matches!(err, KmsError::InvalidCiphertext), "{blob:?}: {err}");
    }
}

#[tokio::test]
async fn rotation_adds_a_version_and_old_blobs_still_open() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("k"), None).await.unwrap();
    let old = backend.generate_data_key("k", &context("b")).await.unwrap();
    let rotated = backend.rotate_key("k").await.unwrap();
    assert_eq!(rotated.current_version, 2);
    assert_eq!(rotated.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);

    let new = backend.generate_data_key("k", &context("b")).await.unwrap();
    assert_eq!((new.key_version, new.wrapped.header().unwrap().key_version), (2, 2));
    let reopened = LocalBackend::open(&config(root.path(), MASTER)).await.unwrap();
    for data_key in [&old, &new] {
        let opened = reopened.decrypt_data_key(&data_key.wrapped, &context("b")).await.unwrap();
        assert_eq!(opened.as_bytes(), data_key.plaintext.as_bytes());
    }
}

#[tokio::test]
async fn a_minimum_decryption_version_retires_older_versions_until_lowered_again() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    assert_eq!(backend.create_key(Some("k"), None).await.unwrap().min_decryption_version, 1);
    let old = backend.generate_data_key("k", &context("b")).await.unwrap();
    for refused in [0, 2] {
        let err = backend.set_min_decryption_version("k", refused).await.unwrap_err();
        assert!(
            matches!(&err, KmsError::InvalidArgument { field, .. } if field == "min_decryption_version"),
            "{refused}: {err}"
        );
    }
    backend.rotate_key("k").await.unwrap();
    let new = backend.generate_data_key("k", &context("b")).await.unwrap();
    assert!(matches!(backend.set_min_decryption_version("k", 3).await, Err(KmsError::InvalidArgument { .. })));
    assert!(matches!(backend.set_min_decryption_version("missing", 1).await, Err(KmsError::KeyNotFound(_))));

    let raised = backend.set_min_decryption_version("k", 2).await.unwrap();
    assert_eq!((raised.min_decryption_version, raised.current_version), (2, 2));
    assert_eq!(raised.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2], "only versions that decrypt");
    // Persisted: a backend opened afresh reads the file.
    let reopened = LocalBackend::open(&config(root.path(), MASTER)).await.unwrap();
    assert_eq!(reopened.describe_key("k").await.unwrap(), raised);
    let err = reopened.decrypt_data_key(&old.wrapped, &context("b")).await.unwrap_err();
    assert!(matches!(&err, KmsError::KeyVersionRetired { key_id, version: 1 } if key_id == "k"), "{err}");
    assert!(err.to_string().contains("version 1 of KMS key k is retired"), "{err}");
    let opened = reopened.decrypt_data_key(&new.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), new.plaintext.as_bytes());
    assert_eq!(reopened.generate_data_key("k", &context("b")).await.unwrap().key_version, 2);

    assert_eq!(reopened.set_min_decryption_version("k", 1).await.unwrap().min_decryption_version, 1);
    let opened = backend.decrypt_data_key(&old.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), old.plaintext.as_bytes(), "lowering the minimum makes old versions open again");

    backend.schedule_deletion("k", 7).await.unwrap();
    assert!(matches!(backend.set_min_decryption_version("k", 2).await, Err(KmsError::KeyPendingDeletion(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_are_never_lost() {
    let root = tempfile::tempdir().unwrap();
    let backend = Arc::new(backend(root.path()).await);
    backend.create_key(Some("k"), None).await.unwrap();
    let rotations: Vec<_> = (0..10)
        .map(|_| {
            let backend = Arc::clone(&backend);
            tokio::spawn(async move { backend.rotate_key("k").await.unwrap() })
        })
        .collect();
    for rotation in rotations {
        rotation.await.unwrap();
    }
    let key = backend.describe_key("k").await.unwrap();
    assert_eq!(key.current_version, 11);
    assert_eq!(key.versions.len(), 11);
}

#[tokio::test]
async fn a_disabled_key_neither_makes_nor_opens_data_keys() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("k"), None).await.unwrap();
    let data_key = backend.generate_data_key("k", &context("b")).await.unwrap();

    assert_eq!(backend.disable_key("k").await.unwrap().state, KeyState::Disabled);
    assert!(matches!(backend.generate_data_key("k", &context("b")).await, Err(KmsError::KeyDisabled(id)) if id == "k"));
    assert!(matches!(backend.decrypt_data_key(&data_key.wrapped, &context("b")).await, Err(KmsError::KeyDisabled(_))));
    assert!(matches!(backend.rotate_key("k").await, Err(KmsError::KeyDisabled(_))));
    assert_eq!(backend.describe_key("k").await.unwrap().state, KeyState::Disabled);

    assert_eq!(backend.enable_key("k").await.unwrap().state, KeyState::Enabled);
    backend.generate_data_key("k", &context("b")).await.unwrap();
    backend.decrypt_data_key(&data_key.wrapped, &context("b")).await.unwrap();
}

#[tokio::test]
async fn scheduled_deletion_refuses_new_data_keys_and_cancels_to_disabled() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("k"), None).await.unwrap();
    let data_key = backend.generate_data_key("k", &context("b")).await.unwrap();

    for days in [0, 6, 31] {
        let err = backend.schedule_deletion("k", days).await.unwrap_err();
        assert!(matches!(&err, KmsError::InvalidArgument { field, .. } if field == "pending_window_days"), "{err}");
    }
    let before = OffsetDateTime::now_utc();
    let pending = backend.schedule_deletion("k", 7).await.unwrap();
    assert_eq!(pending.state, KeyState::PendingDeletion);
    let date = pending.deletion_date.expect("a deletion date");
    assert!(date >= before + time::Duration::days(7) && date <= OffsetDateTime::now_utc() + time::Duration::days(7));

    assert!(matches!(backend.generate_data_key("k", &context("b")).await, Err(KmsError::KeyPendingDeletion(_))));
    let opened = backend.decrypt_data_key(&data_key.wrapped, &context("b")).await.unwrap();
    assert_eq!(opened.as_bytes(), data_key.plaintext.as_bytes(), "a key pending deletion still decrypts");
    for refused in [
        backend.enable_key("k").await,
        backend.disable_key("k").await,
        backend.rotate_key("k").await,
        backend.schedule_deletion("k", 30).await,
    ] {
        assert!(matches!(refused, Err(KmsError::KeyPendingDeletion(_))));
    }

    let cancelled = backend.cancel_deletion("k").await.unwrap();
    assert_eq!((cancelled.state, cancelled.deletion_date), (KeyState::Disabled, None));
    assert_eq!(backend.cancel_deletion("k").await.unwrap(), cancelled, "cancelling again changes nothing");
    backend.enable_key("k").await.unwrap();
    backend.generate_data_key("k", &context("b")).await.unwrap();
}

#[tokio::test]
async fn a_key_past_its_deletion_date_is_deleted_when_touched() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("gone"), None).await.unwrap();
    backend.create_key(Some("kept"), None).await.unwrap();
    backend.schedule_deletion("gone", 7).await.unwrap();
    let mut key = backend.store.read("gone").unwrap();
    key.deletion_date = Some(OffsetDateTime::now_utc() - time::Duration::seconds(1));
    backend.store.save(&key, Some(0)).unwrap();

    let page = backend.list_keys(10, None).await.unwrap();
    assert_eq!(page.keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), ["kept"]);
    assert!(!root.path().join("gone.key").exists(), "the file is removed");
    assert!(matches!(backend.describe_key("gone").await, Err(KmsError::KeyNotFound(_))));
    assert!(matches!(backend.cancel_deletion("gone").await, Err(KmsError::KeyNotFound(_))));
}

#[tokio::test]
async fn a_corrupt_key_file_fails_only_its_own_key_and_names_the_file() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    for id in ["a", "b", "c", "d"] {
        backend.create_key(Some(id), None).await.unwrap();
    }
    let data_key = backend.generate_data_key("b", &context("x")).await.unwrap();
    let truncated = root.path().join("b.key");
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let garbage = root.path().join("c.key");
    std::fs::write(&garbage, b"\x00\x01 not a key file").unwrap();

    let page = backend.list_keys(10, None).await.unwrap();
    assert_eq!(page.keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), ["a", "d"]);
    for (id, path, reason) in [("b", &truncated, "truncated"), ("c", &garbage, "not valid JSON")] {
        let err = backend.describe_key(id).await.unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains(reason), "{err}");
    }
    let err = backend.decrypt_data_key(&data_key.wrapped, &context("x")).await.unwrap_err().to_string();
    assert!(err.contains("b.key"), "{err}");
    backend.generate_data_key("a", &context("x")).await.unwrap();
    backend.rotate_key("d").await.unwrap();
    assert!(backend.health().await.healthy, "one bad key does not make the backend unhealthy");
}

#[tokio::test]
async fn another_master_key_opens_no_key_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    backend(root.path()).await.create_key(Some("k"), None).await.unwrap();
    let other = LocalBackend::open(&config(root.path(), &"z".repeat(40))).await.unwrap();
    let err = other.describe_key("k").await.unwrap_err().to_string();
    assert!(err.contains("k.key") && err.contains("master key"), "{err}");
}

#[tokio::test]
async fn listing_pages_with_markers() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    for id in ["e", "a", "d", "c", "b"] {
        backend.create_key(Some(id), None).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = backend.list_keys(2, marker.as_deref()).await.unwrap();
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.into_iter().map(|key| key.key_id));
        match page.next_marker {
            Some(next) => marker = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(backend.list_keys(0, None).await.unwrap().keys.len(), 1, "a zero limit lists one key");
}

#[tokio::test]
async fn master_secrets_are_resolved_and_checked() {
    let root = tempfile::tempdir().unwrap();
    let err = LocalBackend::open(&LocalConfig::default()).await.unwrap_err();
    assert_eq!(err.to_string(), "KMS key directory is required for local backend");

    let short = LocalBackend::open(&config(root.path(), "too short")).await.unwrap_err();
    assert!(matches!(&short, KmsError::InvalidConfig { field, .. } if field == "master_key"), "{short}");
    assert!(!short.to_string().contains("too short"));

    let none = LocalConfig { key_dir: Some(root.path().to_owned()), master_key: None, master_key_file: None };
    assert!(matches!(LocalBackend::open(&none).await, Err(KmsError::InvalidConfig { .. })));

    // The same secret from a file (with its trailing newline) opens what the configured secret made.
    backend(root.path()).await.create_key(Some("k"), None).await.unwrap();
    let file = root.path().join("master.txt");
    std::fs::write(&file, format!("{MASTER}\n")).unwrap();
    let from_file =
        LocalConfig { key_dir: Some(root.path().to_owned()), master_key: None, master_key_file: Some(file) };
    LocalBackend::open(&from_file).await.unwrap().describe_key("k").await.unwrap();

    let missing = LocalConfig { master_key_file: Some(root.path().join("absent")), ..from_file };
    let err = LocalBackend::open(&missing).await.unwrap_err().to_string();
    assert!(err.contains("absent"), "{err}");
}

#[tokio::test]
async fn the_embedded_master_key_file_is_generated_once_and_private() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("local/master.key");
    create_master_key_file(&path).unwrap();
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(first.trim().len(), 64);
    assert_eq!(mode(&path), 0o600);
    create_master_key_file(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "an existing master key is never replaced");
}

#[tokio::test]
async fn opening_sweeps_temp_files_and_health_follows_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("keys");
    let backend = backend(&dir).await;
    assert!(backend.health().await.healthy);
    std::fs::write(dir.join(".k.key.tmp-0011"), b"partial").unwrap();
    LocalBackend::open(&config(&dir, MASTER)).await.unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    std::fs::remove_dir(&dir).unwrap();
    let health = backend.health().await;
    assert!(!health.healthy);
    assert!(health.reason.unwrap().contains(&dir.display().to_string()));
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(root.path()).await;
    backend.create_key(Some("k"), None).await.unwrap();
    let data_key = backend.generate_data_key("k", &context("b")).await.unwrap();
    let shown = format!("{backend:?} {data_key:?} {:?}", backend.store.master);
    assert!(!shown.contains(MASTER), "{shown}");
    assert!(!shown.contains(&hex::encode(data_key.plaintext.as_bytes())), "{shown}");
    assert!(!shown.contains(&format!("{:?}", data_key.plaintext.as_bytes())), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
