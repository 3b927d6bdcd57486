//! The object path end to end against the real KMS manager and its local backend (in a temp dir): header
//! decisions → start/open/reseal → part encryptors and decryptors, the way the server drives them.

use std::sync::Arc;

use base64_simd::STANDARD;
use coffer_kms::KmsManager;
use coffer_sse::{
    authorize_read, CustomerKey, CustomerKeyHeaders, ObjectCipher, ObjectEncryption, PartEncryption, RewrapTarget,
    Rewrapped, SseError, SseHeaders, SseMode, SseService, Transport, WriteEncryption,
};
use md5::{Digest as _, Md5};

const LOCAL: Transport = Transport { tls: false, client_is_loopback: true, allow_insecure_sse_c: false };

struct Fixture {
    _dir: tempfile::TempDir,
    kms: Arc<KmsManager>,
    sse: SseService,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kms = KmsManager::open(dir.path().join("kms")).unwrap();
    kms.ensure_embedded_default().await.unwrap();
    let sse = SseService::new(kms.clone());
    Fixture { _dir: dir, kms, sse }
}

fn customer_headers(key: &[u8; 32]) -> CustomerKeyHeaders {
    CustomerKeyHeaders {
        algorithm: Some("AES256".into()),
        key: Some(zeroize::Zeroizing::new(STANDARD.encode_to_string(key))),
        key_md5: Some(STANDARD.encode_to_string(Md5::digest(key))),
    }
}

fn customer_key(key: &[u8; 32]) -> CustomerKey {
    customer_headers(key).parse(&LOCAL).unwrap().unwrap()
}

fn write_decision(headers: SseHeaders) -> WriteEncryption {
    headers.for_write(None, &LOCAL).unwrap()
}

fn sse(value: &str) -> SseHeaders {
    SseHeaders { server_side_encryption: Some(value.into()), ..SseHeaders::default() }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

/// The server awaits these futures inside s3s handlers, which must be `Send`.
fn assert_send<T: Send>(_: &T) {}

/// What the store would hold for one part: its metadata JSON and stored bytes.
struct StoredPart {
    number: u32,
    size: u64,
    encryption: Box<serde_json::value::RawValue>,
    bytes: Vec<u8>,
    etag: Option<String>,
}

/// plaintext → encryptor → "store", pushing in 10 000-byte chunks through one reused buffer.
fn encrypt(cipher: &ObjectCipher, part_number: u32, plaintext: &[u8]) -> StoredPart {
    let mut encryptor = cipher.encrypt_part(part_number);
    encryptor.declare_size(plaintext.len() as u64).unwrap();
    let encryption = encryptor.metadata().to_json();
    let mut bytes = Vec::new();
    let mut buffer = Vec::new();
    for chunk in plaintext.chunks(10_000) {
        buffer.clear();
        encryptor.push(chunk, &mut buffer).unwrap();
        bytes.extend_from_slice(&buffer);
    }
    buffer.clear();
    let sealed = encryptor.finish(&mut buffer).unwrap();
    bytes.extend_from_slice(&buffer);
    assert_eq!(bytes.len() as u64, sealed.stored_size);
    assert_eq!(sealed.stored_size, coffer_sse::stored_size(plaintext.len() as u64));
    StoredPart { number: part_number, size: plaintext.len() as u64, encryption, bytes, etag: sealed.etag }
}

/// "store" → decryptor(range) → plaintext, reading only the stored range asked for, two packages at a time.
fn decrypt(cipher: &ObjectCipher, part: &StoredPart, range: std::ops::Range<u64>) -> Result<Vec<u8>, SseError> {
    let metadata = PartEncryption::from_json(part.encryption.get())?;
    let decryptor = cipher.decrypt_part(&metadata, part.size, range)?;
    let stored = decryptor.stored_range();
    let mut out = Vec::new();
    let max = 2 * (coffer_sse::PACKAGE_SIZE + 16);
    let (first_len, chunk_len) = (decryptor.first_chunk_len(max), decryptor.chunk_len(max));
    let bytes = &part.bytes[stored.start as usize..stored.end as usize];
    let (first, rest) = bytes.split_at(first_len.min(bytes.len()));
    let chunks = std::iter::once(first).chain(rest.chunks(chunk_len));
    let mut offset = 0;
    for chunk in chunks {
        let mut chunk = chunk.to_vec();
        for plaintext in decryptor.open_in_place(offset, &mut chunk)? {
            out.extend_from_slice(&chunk[plaintext]);
        }
        offset += chunk.len() as u64;
    }
    Ok(out)
}

/// Round trip through the stored JSON, as the server would do it.
fn reload(encryption: &ObjectEncryption) -> ObjectEncryption {
    ObjectEncryption::from_json(encryption.to_json().get()).unwrap()
}

fn assert_code(result: Result<impl std::fmt::Debug, SseError>, code: &str, status: u16) -> SseError {
    let error = result.expect_err("expected an error");
    assert_eq!((error.code(), error.status()), (code, status), "{error:?}");
    error
}

#[tokio::test]
async fn sse_s3_put_and_get() {
    let f = fixture().await;
    let decision = write_decision(sse("AES256"));
    let start = f.sse.start_object("bucket", "a.txt", &decision);
    assert_send(&start);
    let new = start.await.unwrap().unwrap();
    assert_eq!(new.encryption.mode(), SseMode::SseS3);
    assert_eq!(new.encryption.response().server_side_encryption, Some("AES256"));
    let plaintext = data(200_000);
    let part = encrypt(&new.cipher, 1, &plaintext);
    assert_eq!(part.etag, None, "SSE-S3 ETags are the plaintext MD5 the server computes");
    let stored = reload(&new.encryption);
    let open = f.sse.open_object("bucket", "a.txt", &stored, None);
    assert_send(&open);
    let cipher = open.await.unwrap();
    assert_eq!(decrypt(&cipher, &part, 0..200_000).unwrap(), plaintext);
    assert_eq!(decrypt(&cipher, &part, 65_535..131_073).unwrap(), &plaintext[65_535..131_073]);
    // The JSON never carries the key in clear.
    let json = stored.to_json().get().to_owned();
    assert!(json.contains(r#""mode":"sse-s3""#), "{json}");
}

#[tokio::test]
async fn sse_kms_with_named_key_and_context() {
    let f = fixture().await;
    f.kms.create_key(Some("app-key"), None).await.unwrap();
    let context = STANDARD.encode_to_string(br#"{"department":"finance"}"#);
    for named in ["app-key", "arn:aws:kms:us-east-1:123456789012:key/app-key"] {
        let headers = SseHeaders {
            kms_key_id: Some(named.into()),
            context: Some(context.clone()),
            bucket_key_enabled: Some(true),
            ..sse("aws:kms")
        };
        let new = f.sse.start_object("bucket", "k", &write_decision(headers)).await.unwrap().unwrap();
        let response = new.encryption.response();
        assert_eq!(response.server_side_encryption, Some("aws:kms"));
        assert_eq!(response.kms_key_id.as_deref(), Some(named), "echoed exactly as named");
        assert_eq!(response.context.as_deref(), Some(context.as_str()));
        assert_eq!(response.bucket_key_enabled, Some(true));
        let part = encrypt(&new.cipher, 1, b"kms protected");
        let etag = part.etag.clone().unwrap();
        assert_ne!(etag, hex::encode(Md5::digest(b"kms protected")));
        let cipher = f.sse.open_object("bucket", "k", &reload(&new.encryption), None).await.unwrap();
        assert_eq!(decrypt(&cipher, &part, 0..13).unwrap(), b"kms protected");
    }
}

#[tokio::test]
async fn sse_kms_without_a_key_id_uses_the_default_key() {
    let f = fixture().await;
    let new = f.sse.start_object("bucket", "k", &write_decision(sse("aws:kms"))).await.unwrap().unwrap();
    let default = f.kms.default_key_id().unwrap();
    assert_eq!(new.encryption.response().kms_key_id, Some(default));
}

#[tokio::test]
async fn kms_failures_are_s3_errors() {
    let f = fixture().await;
    let named = |id: &str| write_decision(SseHeaders { kms_key_id: Some(id.into()), ..sse("aws:kms") });
    assert_code(f.sse.start_object("bucket", "k", &named("no-such-key")).await, "KMS.NotFoundException", 400);

    f.kms.create_key(Some("off"), None).await.unwrap();
    f.kms.disable_key("off").await.unwrap();
    assert_code(f.sse.start_object("bucket", "k", &named("off")).await, "KMS.DisabledException", 400);

    let s3 = f.sse.start_object("bucket", "k", &write_decision(sse("AES256"))).await.unwrap().unwrap();
    f.kms.stop().await.unwrap();
    let stopped = assert_code(f.sse.start_object("bucket", "k2", &named("off")).await, "ServiceUnavailable", 503);
    assert!(stopped.message().contains("KMS is unavailable"), "{}", stopped.message());
    assert_code(f.sse.open_object("bucket", "k", &s3.encryption, None).await, "ServiceUnavailable", 503);
    // SSE-C needs no KMS.
    let key = [5u8; 32];
    assert!(f.sse.start_object("bucket", "c", &WriteEncryption::SseC(customer_key(&key))).await.is_ok());
}

#[tokio::test]
async fn sse_c_keys_are_checked() {
    let f = fixture().await;
    let key = [1u8; 32];
    let new = f.sse.start_object("bucket", "c", &WriteEncryption::SseC(customer_key(&key))).await.unwrap().unwrap();
    let response = new.encryption.response();
    assert_eq!(response.customer_algorithm, Some("AES256"));
    assert_eq!(response.customer_key_md5, Some(STANDARD.encode_to_string(Md5::digest(key))));
    assert_eq!(response.server_side_encryption, None);
    let json = new.encryption.to_json().get().to_owned();
    assert!(!json.contains(&STANDARD.encode_to_string(key)) && !json.contains(&hex::encode(key)), "key stored: {json}");

    let part = encrypt(&new.cipher, 1, b"customer data");
    let stored = reload(&new.encryption);
    let cipher = f.sse.open_object("bucket", "c", &stored, Some(&customer_key(&key))).await.unwrap();
    assert_eq!(decrypt(&cipher, &part, 0..13).unwrap(), b"customer data");

    assert_code(f.sse.open_object("bucket", "c", &stored, None).await, "InvalidRequest", 400);
    assert_code(f.sse.open_object("bucket", "c", &stored, Some(&customer_key(&[2; 32]))).await, "AccessDenied", 403);
    // HEAD runs the same check without opening anything.
    assert!(authorize_read(Some(&stored), Some(&customer_key(&key))).is_ok());
    assert_code(authorize_read(Some(&stored), None), "InvalidRequest", 400);
}

#[tokio::test]
async fn metadata_moved_to_another_object_does_not_open() {
    let f = fixture().await;
    f.kms.create_key(Some("app-key"), None).await.unwrap();
    let key = [3u8; 32];
    let decisions = [
        write_decision(sse("AES256")),
        write_decision(SseHeaders { kms_key_id: Some("app-key".into()), ..sse("aws:kms") }),
        WriteEncryption::SseC(customer_key(&key)),
    ];
    for decision in decisions {
        let customer = matches!(decision, WriteEncryption::SseC(_)).then(|| customer_key(&key));
        let new = f.sse.start_object("bucket", "original", &decision).await.unwrap().unwrap();
        for (bucket, name) in [("bucket", "other"), ("bucket2", "original")] {
            let moved = f.sse.open_object(bucket, name, &new.encryption, customer.as_ref()).await;
            assert_code(moved, "InternalError", 500);
        }
        assert!(f.sse.open_object("bucket", "original", &new.encryption, customer.as_ref()).await.is_ok());
    }
}

#[tokio::test]
async fn reseal_changes_only_the_object_metadata() {
    let f = fixture().await;
    f.kms.create_key(Some("app-key"), None).await.unwrap();
    let (old_key, new_key) = ([1u8; 32], [2u8; 32]);
    let new = f.sse.start_object("b", "k", &WriteEncryption::SseC(customer_key(&old_key))).await.unwrap().unwrap();
    let plaintext = data(150_000);
    let part = encrypt(&new.cipher, 1, &plaintext);
    let (data_before, part_json_before) = (part.bytes.clone(), part.encryption.clone());

    // New SSE-C key.
    let rekeyed = f
        .sse
        .reseal(
            "b",
            "k",
            &new.encryption,
            Some(&customer_key(&old_key)),
            &WriteEncryption::SseC(customer_key(&new_key)),
        )
        .await
        .unwrap();
    assert_ne!(rekeyed, new.encryption);
    assert_eq!(rekeyed.response().customer_key_md5, Some(STANDARD.encode_to_string(Md5::digest(new_key))));
    let cipher = f.sse.open_object("b", "k", &rekeyed, Some(&customer_key(&new_key))).await.unwrap();
    assert_eq!(decrypt(&cipher, &part, 0..150_000).unwrap(), plaintext);
    assert_code(f.sse.open_object("b", "k", &rekeyed, Some(&customer_key(&old_key))).await, "AccessDenied", 403);

    // Then SSE-KMS, then SSE-S3: still the same data and part metadata.
    let kms = write_decision(SseHeaders { kms_key_id: Some("app-key".into()), ..sse("aws:kms") });
    let as_kms = f.sse.reseal("b", "k", &rekeyed, Some(&customer_key(&new_key)), &kms).await.unwrap();
    assert_eq!(as_kms.mode(), SseMode::SseKms);
    let as_s3 = f.sse.reseal("b", "k", &as_kms, None, &write_decision(sse("AES256"))).await.unwrap();
    let cipher = f.sse.open_object("b", "k", &reload(&as_s3), None).await.unwrap();
    assert_eq!(decrypt(&cipher, &part, 1000..2000).unwrap(), &plaintext[1000..2000]);
    assert_eq!((part.bytes, part.encryption.get()), (data_before, part_json_before.get()));

    // Plaintext destinations need a data rewrite, not a reseal.
    assert_code(f.sse.reseal("b", "k", &as_s3, None, &WriteEncryption::None).await, "InternalError", 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_in_any_order_and_size() {
    let f = fixture().await;
    let sse = Arc::new(f.sse);
    let key = [9u8; 32];
    let upload = sse.start_object("b", "big", &WriteEncryption::SseC(customer_key(&key))).await.unwrap().unwrap();
    let upload_json = upload.encryption.to_json().get().to_owned();

    // Each UploadPart opens the upload again, in any order, concurrently; sizes are unaligned and tiny.
    let sizes = [(3u32, 70_001usize), (1, 1_048_576), (2, 13), (4, 0)];
    let mut tasks = tokio::task::JoinSet::new();
    for (number, size) in sizes {
        let (sse, upload_json) = (sse.clone(), upload_json.clone());
        tasks.spawn(async move {
            let upload = ObjectEncryption::from_json(&upload_json).unwrap();
            let cipher = sse.open_upload("b", "big", &upload, Some(&customer_key(&key))).await.unwrap();
            encrypt(&cipher, number, &part_data(number, size))
        });
    }
    let mut parts = tasks.join_all().await;
    parts.sort_by_key(|p| p.number);
    assert!(parts.iter().all(|p| p.etag.as_ref().is_some_and(|e| e.len() == 32)));

    let upload = ObjectEncryption::from_json(&upload_json).unwrap();
    assert_code(sse.open_upload("b", "big", &upload, None).await, "InvalidRequest", 400);
    assert_code(sse.open_upload("b", "big", &upload, Some(&customer_key(&[8; 32]))).await, "InvalidRequest", 400);

    // Completed object: same metadata; read whole and across every part boundary ±1.
    let cipher = sse.open_object("b", "big", &upload, Some(&customer_key(&key))).await.unwrap();
    let whole: Vec<u8> = parts.iter().flat_map(|p| part_data(p.number, p.size as usize)).collect();
    let mut boundaries = vec![0u64];
    for p in &parts {
        boundaries.push(boundaries.last().unwrap() + p.size);
    }
    let total = *boundaries.last().unwrap();
    let mut points: Vec<u64> =
        boundaries.iter().flat_map(|&b| [b.saturating_sub(1), b, b + 1]).filter(|&p| p <= total).collect();
    points.sort_unstable();
    points.dedup();
    for &start in &points {
        for &end in points.iter().filter(|&&e| e > start) {
            let mut got = Vec::new();
            for (p, window) in parts.iter().zip(boundaries.windows(2)) {
                let (lo, hi) = (start.max(window[0]), end.min(window[1]));
                if lo < hi {
                    got.extend(decrypt(&cipher, p, lo - window[0]..hi - window[0]).unwrap());
                }
            }
            assert!(got == whole[start as usize..end as usize], "{start}..{end}");
        }
    }
}

/// Distinct contents per part, so a part read in another's place shows.
fn part_data(number: u32, size: usize) -> Vec<u8> {
    data(size).into_iter().map(|b| b ^ number as u8).collect()
}

#[tokio::test]
async fn a_disabled_key_stops_reads_too() {
    let f = fixture().await;
    f.kms.create_key(Some("app-key"), None).await.unwrap();
    let decision = write_decision(SseHeaders { kms_key_id: Some("app-key".into()), ..sse("aws:kms") });
    let new = f.sse.start_object("b", "k", &decision).await.unwrap().unwrap();
    assert!(f.sse.open_object("b", "k", &new.encryption, None).await.is_ok());
    f.kms.disable_key("app-key").await.unwrap();
    assert_code(f.sse.open_object("b", "k", &new.encryption, None).await, "KMS.DisabledException", 400);
    f.kms.enable_key("app-key").await.unwrap();
    assert!(f.sse.open_object("b", "k", &new.encryption, None).await.is_ok());
}

#[tokio::test]
async fn bucket_keys_spare_the_kms() {
    let f = fixture().await;
    let decision = write_decision(sse("aws:kms"));
    for i in 0..1000 {
        let name = format!("object-{i}");
        let new = f.sse.start_object("b", &name, &decision).await.unwrap().unwrap();
        f.sse.open_object("b", &name, &new.encryption, None).await.unwrap();
    }
    let calls = f.kms.status().await.calls.kms_calls;
    let count = |operation: &str| calls.get(operation).copied().unwrap_or(0);
    assert!(count("generate_data_key") <= 1, "{calls:?}");
    assert!(count("decrypt_data_key") <= 1, "{calls:?}");
    // Another bucket gets its own bucket key.
    f.sse.start_object("b2", "k", &decision).await.unwrap();
    let calls = f.kms.status().await.calls.kms_calls;
    assert_eq!(calls.get("generate_data_key").copied().unwrap_or(0), 2, "{calls:?}");
}

/// The store, key id and version an object's outer key comes from.
fn origin(f: &Fixture, encryption: &ObjectEncryption) -> (String, String, u32) {
    let origin = f.sse.key_origin(encryption).unwrap().expect("a KMS mode");
    (origin.store, origin.key_id, origin.version)
}

#[tokio::test]
async fn rewrap_moves_objects_onto_the_newest_version_another_key_or_mode() {
    let f = fixture().await;
    f.kms.create_key(Some("app-key"), None).await.unwrap();
    f.kms.create_key(Some("other-key"), None).await.unwrap();
    let context = STANDARD.encode_to_string(br#"{"team":"a"}"#);
    let kms_headers =
        SseHeaders { kms_key_id: Some("app-key".into()), context: Some(context.clone()), ..sse("aws:kms") };
    let kms_object = f.sse.start_object("b", "kms", &write_decision(kms_headers)).await.unwrap().unwrap();
    let s3_object = f.sse.start_object("b", "s3", &write_decision(sse("AES256"))).await.unwrap().unwrap();
    let plaintext = data(70_000);
    let (kms_part, s3_part) = (encrypt(&kms_object.cipher, 1, &plaintext), encrypt(&s3_object.cipher, 1, &plaintext));
    let default = f.kms.default_key_id().unwrap();
    assert_eq!(origin(&f, &kms_object.encryption), ("local".into(), "app-key".into(), 1));
    assert_eq!(origin(&f, &s3_object.encryption), ("local".into(), default.clone(), 1));

    // Already under the newest version: nothing to do.
    let newest = RewrapTarget::default();
    assert!(matches!(f.sse.rewrap("b", "kms", &kms_object.encryption, &newest).await.unwrap(), Rewrapped::Unchanged));

    // After rotation: the same object key under version 2, the context and key name kept.
    f.kms.rotate_key("app-key").await.unwrap();
    let Rewrapped::Resealed(rotated) = f.sse.rewrap("b", "kms", &kms_object.encryption, &newest).await.unwrap() else {
        panic!("a version-1 object moves to version 2");
    };
    assert_eq!(origin(&f, &rotated), ("local".into(), "app-key".into(), 2));
    assert_eq!(rotated.response(), kms_object.encryption.response());
    let cipher = f.sse.open_object("b", "kms", &reload(&rotated), None).await.unwrap();
    assert_eq!(decrypt(&cipher, &kms_part, 0..70_000).unwrap(), plaintext);
    assert!(matches!(f.sse.rewrap("b", "kms", &rotated, &newest).await.unwrap(), Rewrapped::Unchanged));

    // To another key, then SSE-KMS → SSE-S3 → SSE-KMS: the data opens each time; the ETag rule is the data's.
    let to_other = RewrapTarget { key: Some("other-key".into()), mode: None };
    let Rewrapped::Resealed(moved) = f.sse.rewrap("b", "kms", &rotated, &to_other).await.unwrap() else { panic!() };
    assert_eq!(origin(&f, &moved), ("local".into(), "other-key".into(), 1));
    assert_eq!(moved.response().kms_key_id.as_deref(), Some("other-key"));
    let to_s3 = RewrapTarget { key: None, mode: Some(SseMode::SseS3) };
    let Rewrapped::Resealed(as_s3) = f.sse.rewrap("b", "kms", &moved, &to_s3).await.unwrap() else { panic!() };
    assert_eq!((as_s3.mode(), as_s3.response().context), (SseMode::SseS3, None));
    assert_eq!(origin(&f, &as_s3), ("local".into(), default.clone(), 1));
    let cipher = f.sse.open_object("b", "kms", &reload(&as_s3), None).await.unwrap();
    assert_eq!(decrypt(&cipher, &kms_part, 0..70_000).unwrap(), plaintext);
    let to_kms = RewrapTarget { key: Some("app-key".into()), mode: Some(SseMode::SseKms) };
    let Rewrapped::Resealed(back) = f.sse.rewrap("b", "kms", &as_s3, &to_kms).await.unwrap() else { panic!() };
    assert_eq!(origin(&f, &back), ("local".into(), "app-key".into(), 2));
    let cipher = f.sse.open_object("b", "kms", &reload(&back), None).await.unwrap();
    assert_eq!(decrypt(&cipher, &kms_part, 0..70_000).unwrap(), plaintext);

    // An SSE-S3 object follows the bucket's key, and stays bound to its bucket and name.
    f.kms.set_bucket_key("b", "other-key").await.unwrap();
    let Rewrapped::Resealed(followed) = f.sse.rewrap("b", "s3", &s3_object.encryption, &newest).await.unwrap() else {
        panic!("an SSE-S3 object follows the bucket's key")
    };
    assert_eq!(origin(&f, &followed), ("local".into(), "other-key".into(), 1));
    let cipher = f.sse.open_object("b", "s3", &reload(&followed), None).await.unwrap();
    assert_eq!(decrypt(&cipher, &s3_part, 0..70_000).unwrap(), plaintext);
    assert!(f.sse.open_object("b", "kms", &reload(&followed), None).await.is_err());
}

#[tokio::test]
async fn rewrap_refuses_sse_c_and_encrypts_plaintext_under_the_target() {
    let f = fixture().await;
    let customer = f.sse.start_object("b", "c", &WriteEncryption::SseC(customer_key(&[5; 32]))).await.unwrap().unwrap();
    assert!(f.sse.key_origin(&customer.encryption).unwrap().is_none());
    let refused = f.sse.rewrap("b", "c", &customer.encryption, &RewrapTarget::default()).await;
    assert_code(refused, "InvalidArgument", 400);

    f.kms.create_key(Some("app-key"), None).await.unwrap();
    let target = RewrapTarget { key: Some("app-key".into()), mode: Some(SseMode::SseKms) };
    let new = f.sse.encrypt_plaintext("b", "p", &target).await.unwrap();
    assert_eq!(origin(&f, &new.encryption), ("local".into(), "app-key".into(), 1));
    let part = encrypt(&new.cipher, 1, b"was plaintext");
    let cipher = f.sse.open_object("b", "p", &reload(&new.encryption), None).await.unwrap();
    assert_eq!(decrypt(&cipher, &part, 0..13).unwrap(), b"was plaintext");
    let no_mode = f.sse.encrypt_plaintext("b", "p", &RewrapTarget::default()).await;
    assert_code(no_mode, "InvalidArgument", 400);
}

#[tokio::test]
async fn an_sse_kms_object_named_by_a_bare_key_id_stays_with_its_store() {
    let f = fixture().await;
    f.kms.create_key(Some("app-key"), None).await.unwrap();
    let headers = SseHeaders { kms_key_id: Some("app-key".into()), ..sse("aws:kms") };
    let new = f.sse.start_object("b", "k", &write_decision(headers)).await.unwrap().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let backend = coffer_kms::BackendConfig::Local(coffer_kms::LocalConfig {
        key_dir: Some(other_dir.path().join("keys")),
        master_key: Some(coffer_kms::Secret::new("an-other-store-master-key-0123456789")),
        master_key_file: None,
    });
    f.kms.add_store("other", backend).await.unwrap();
    f.kms.create_key(Some("other/app-key"), None).await.unwrap();
    f.kms.set_default_store("other").await.unwrap();
    f.kms.rotate_key("local/app-key").await.unwrap();

    // "app-key" now names other/app-key for new writes; the old object still moves along its own key.
    let Rewrapped::Resealed(rotated) = f.sse.rewrap("b", "k", &new.encryption, &RewrapTarget::default()).await.unwrap()
    else {
        panic!("a version-1 object moves to version 2 of its own key");
    };
    assert_eq!(origin(&f, &rotated), ("local".into(), "app-key".into(), 2));
    assert_eq!(rotated.response().kms_key_id.as_deref(), Some("app-key"), "the recorded name stays");
}
