//! Bucket lifecycle, naming and configuration.

use coffer_store::{StoreError, UploadMeta};
use serde_json::json;

use crate::common::{entries_in, put, raw, Fixture};

#[tokio::test]
async fn create_head_and_list_buckets() {
    let f = Fixture::new().await;
    assert!(f.store.list_buckets().await.unwrap().is_empty());
    for name in ["zeta", "alpha.one", "mid-1"] {
        f.store.create_bucket(name, None).await.unwrap();
    }
    let names: Vec<_> = f.store.list_buckets().await.unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["alpha.one", "mid-1", "zeta"]);
    let info = f.store.head_bucket("mid-1").await.unwrap();
    assert_eq!(info.name, "mid-1");
    assert!(info.created <= time::OffsetDateTime::now_utc());
    // Survives a restart.
    assert_eq!(f.reopen().await.head_bucket("mid-1").await.unwrap(), info);
}

#[tokio::test]
async fn a_bucket_keeps_its_owner_and_policy_across_restarts() {
    let f = Fixture::new().await;
    f.store.create_bucket("owned", Some("alice")).await.unwrap();
    let info = f.store.head_bucket("owned").await.unwrap();
    assert_eq!((info.owner.as_deref(), info.policy.as_deref()), (Some("alice"), None));
    f.store.set_bucket_policy("owned", Some("{\"Statement\": []}".into())).await.unwrap();
    let reopened = f.reopen().await;
    let info = reopened.head_bucket("owned").await.unwrap();
    assert_eq!((info.owner.as_deref(), info.policy.as_deref()), (Some("alice"), Some("{\"Statement\": []}")));
    reopened.set_bucket_policy("owned", None).await.unwrap();
    assert_eq!(reopened.head_bucket("owned").await.unwrap().policy, None);
    assert!(matches!(reopened.set_bucket_policy("missing", None).await, Err(StoreError::NoSuchBucket)));
}

#[tokio::test]
async fn creating_an_existing_bucket_fails() {
    let f = Fixture::with_bucket("dup").await;
    assert!(matches!(f.store.create_bucket("dup", None).await, Err(StoreError::BucketAlreadyOwnedByYou)));
}

#[tokio::test]
async fn invalid_and_reserved_names_are_refused_and_create_nothing() {
    let f = Fixture::new().await;
    for name in ["ab", "UPPER", "a_b", "-ab", "a..b", "192.168.0.1", "coffer", "rustfs", "minio", "../x", "..."] {
        assert!(
            matches!(f.store.create_bucket(name, None).await, Err(StoreError::InvalidBucketName(_))),
            "{name:?} accepted"
        );
    }
    assert_eq!(entries_in(&f.data_dir().join("buckets")), 0);
}

#[tokio::test]
async fn names_that_cannot_be_buckets_are_missing_buckets() {
    let f = Fixture::new().await;
    for name in ["..", "../..", "/etc", ".coffer", "coffer", "a/b", "x"] {
        assert!(matches!(f.store.head_bucket(name).await, Err(StoreError::NoSuchBucket)), "{name:?}");
        assert!(matches!(f.store.head_object(name, "k").await, Err(StoreError::NoSuchBucket)), "{name:?}");
    }
}

#[tokio::test]
async fn missing_bucket_operations() {
    let f = Fixture::new().await;
    assert!(matches!(f.store.head_bucket("nope").await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.delete_bucket("nope").await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.delete_object("nope", "k").await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.bucket_encryption("nope").await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.list_objects("nope", &Default::default()).await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.create_upload("nope", "k", UploadMeta::default()).await, Err(StoreError::NoSuchBucket)));
}

#[tokio::test]
async fn deleting_a_non_empty_bucket_fails_until_it_is_empty() {
    let f = Fixture::with_bucket("full").await;
    put(&f.store, "full", "a/b", b"x").await;
    assert!(matches!(f.store.delete_bucket("full").await, Err(StoreError::BucketNotEmpty)));
    assert_eq!(f.store.head_object("full", "a/b").await.unwrap().size, 1);
    f.store.delete_object("full", "a/b").await.unwrap();
    f.store.delete_bucket("full").await.unwrap();
    assert!(matches!(f.store.head_bucket("full").await, Err(StoreError::NoSuchBucket)));
    assert_eq!(entries_in(&f.data_dir().join("buckets")), 0);
    assert_eq!(entries_in(&f.tmp_dir()), 0);
}

#[tokio::test]
async fn deleting_a_bucket_removes_its_uploads() {
    let f = Fixture::with_bucket("ups").await;
    let id = f.store.create_upload("ups", "k", UploadMeta::default()).await.unwrap();
    f.store.delete_bucket("ups").await.unwrap();
    f.store.create_bucket("ups", None).await.unwrap();
    assert!(f.store.list_uploads("ups", "").await.unwrap().is_empty());
    assert!(matches!(f.store.list_parts("ups", "k", &id).await, Err(StoreError::NoSuchUpload)));
}

#[tokio::test]
async fn a_recreated_bucket_starts_empty() {
    let f = Fixture::with_bucket("again").await;
    put(&f.store, "again", "k", b"v").await;
    // Load the listing index so a stale index would show.
    assert_eq!(f.store.list_objects("again", &Default::default()).await.unwrap().objects.len(), 1);
    f.store.delete_object("again", "k").await.unwrap();
    f.store.delete_bucket("again").await.unwrap();
    f.store.create_bucket("again", None).await.unwrap();
    assert!(f.store.list_objects("again", &Default::default()).await.unwrap().objects.is_empty());
    assert!(matches!(f.store.head_object("again", "k").await, Err(StoreError::NoSuchKey)));
}

#[tokio::test]
async fn a_deleted_bucket_is_gone_after_being_read_and_comes_back_new() {
    let f = Fixture::with_bucket("gone").await;
    let config = raw(json!({"rules": [{"sse_algorithm": "AES256"}]}));
    f.store.set_bucket_encryption("gone", Some(config.clone())).await.unwrap();
    let before = f.store.head_bucket("gone").await.unwrap();
    assert_eq!(f.store.bucket_encryption("gone").await.unwrap(), Some(config));
    f.store.delete_bucket("gone").await.unwrap();
    assert!(matches!(f.store.head_bucket("gone").await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.bucket_encryption("gone").await, Err(StoreError::NoSuchBucket)));
    assert!(matches!(f.store.head_object("gone", "k").await, Err(StoreError::NoSuchBucket)));
    assert!(!f.store.list_buckets().await.unwrap().iter().any(|b| b.name == "gone"));
    f.store.create_bucket("gone", None).await.unwrap();
    assert_eq!(f.store.bucket_encryption("gone").await.unwrap(), None);
    assert!(f.store.head_bucket("gone").await.unwrap().created >= before.created);
}

#[tokio::test]
async fn bucket_encryption_is_stored_opaquely() {
    let f = Fixture::with_bucket("enc").await;
    assert_eq!(f.store.bucket_encryption("enc").await.unwrap(), None);
    let config = raw(json!({"rules": [{"sse_algorithm": "aws:kms", "kms_key_id": "k1"}], "bucket_key": true}));
    f.store.set_bucket_encryption("enc", Some(config.clone())).await.unwrap();
    assert_eq!(f.store.bucket_encryption("enc").await.unwrap(), Some(config.clone()));
    assert_eq!(f.reopen().await.bucket_encryption("enc").await.unwrap(), Some(config));
    f.store.set_bucket_encryption("enc", None).await.unwrap();
    assert_eq!(f.store.bucket_encryption("enc").await.unwrap(), None);
    // The bucket itself is untouched.
    assert_eq!(f.store.head_bucket("enc").await.unwrap().name, "enc");
}

#[tokio::test]
async fn concurrent_creates_of_one_bucket_succeed_once() {
    let f = Fixture::new().await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = f.store.clone();
            tokio::spawn(async move { store.create_bucket("race", None).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::BucketAlreadyOwnedByYou) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(created, 1);
}

#[tokio::test]
async fn user_policies_are_kept_signed_across_restarts() {
    let f = Fixture::directory().await;
    assert!(f.store.user_policies().await.unwrap().is_empty());
    f.store.set_user_policy("alice", Some("{\"a\":1}".into())).await.unwrap();
    f.store.set_user_policy("bob", Some("{\"b\":2}".into())).await.unwrap();
    f.store.set_user_policy("alice", None).await.unwrap();
    let reopened = f.reopen().await;
    let policies = reopened.user_policies().await.unwrap();
    assert_eq!(policies.into_iter().collect::<Vec<_>>(), [("bob".to_owned(), "{\"b\":2}".to_owned())]);

    // An edited file fails closed instead of granting what it now says.
    let file = f.data_dir().join(".coffer/user-policies.json");
    let edited = std::fs::read_to_string(&file).unwrap().replace("bob", "eve");
    std::fs::write(&file, edited).unwrap();
    assert!(reopened.user_policies().await.is_err());
}
