//! Server-side encryption end to end against the real server (embedded local KMS): SSE-S3, SSE-KMS and SSE-C on
//! PUT, GET (ranges, partNumber), HEAD, multipart, CopyObject and UploadPartCopy; bucket default encryption; what
//! lands on disk; tampering; the errors S3 answers with; a stopped KMS.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use common::{base64, md5_hex, Client, Reply, TestServer};
use s3s::crypto::{Checksum as _, Md5};

const MIN_PART: u64 = 1024;
const KMS_KEY: &str = "test-kms-key";
const KEY_A: [u8; 32] = [0xA1; 32];
const KEY_B: [u8; 32] = [0xB2; 32];
/// 64 KiB: the plaintext size of one encryption package.
const PACKAGE: usize = coffer_sse::PACKAGE_SIZE;
/// Every plaintext written here is made of this marker (plus a counter), so a scan of the data directory finds any
/// plaintext that reached the disk.
const MARKER: &[u8] = b"COFFER-PLAINTEXT-MARKER";

/// The four ways an object can be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    S3,
    Kms,
    C([u8; 32]),
}

const MODES: [Mode; 4] = [Mode::Plain, Mode::S3, Mode::Kms, Mode::C(KEY_A)];

type Headers = Vec<(String, String)>;

fn pairs(headers: &Headers) -> Vec<(&str, &str)> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

fn customer_trio(prefix: &str, key: &[u8; 32]) -> Headers {
    vec![
        (format!("{prefix}algorithm"), "AES256".to_owned()),
        (format!("{prefix}key"), base64(key)),
        (format!("{prefix}key-md5"), base64(&Md5::checksum(key))),
    ]
}

impl Mode {
    /// Headers of a write (PUT, CreateMultipartUpload, copy destination) asking for this mode.
    fn write(self) -> Headers {
        match self {
            Mode::Plain => vec![],
            Mode::S3 => vec![("x-amz-server-side-encryption".into(), "AES256".into())],
            Mode::Kms => vec![
                ("x-amz-server-side-encryption".into(), "aws:kms".into()),
                ("x-amz-server-side-encryption-aws-kms-key-id".into(), KMS_KEY.into()),
            ],
            Mode::C(key) => customer_trio("x-amz-server-side-encryption-customer-", &key),
        }
    }

    /// Headers a read (GET, HEAD) or an UploadPart of this mode needs.
    fn read(self) -> Headers {
        match self {
            Mode::C(key) => customer_trio("x-amz-server-side-encryption-customer-", &key),
            _ => vec![],
        }
    }

    /// Headers a copy from a source of this mode needs.
    fn copy_source(self) -> Headers {
        match self {
            Mode::C(key) => customer_trio("x-amz-copy-source-server-side-encryption-customer-", &key),
            _ => vec![],
        }
    }

    /// Asserts the SSE response headers describe this mode, and nothing more.
    #[track_caller]
    fn assert_echoed(self, reply: &Reply) {
        let sse = reply.header("x-amz-server-side-encryption");
        let key_id = reply.header("x-amz-server-side-encryption-aws-kms-key-id");
        let algorithm = reply.header("x-amz-server-side-encryption-customer-algorithm");
        let key_md5 = reply.header("x-amz-server-side-encryption-customer-key-md5");
        let expected_md5 = match self {
            Mode::C(key) => Some(base64(&Md5::checksum(&key))),
            _ => None,
        };
        let expected = match self {
            Mode::Plain => (None, None, None),
            Mode::S3 => (Some("AES256"), None, None),
            Mode::Kms => (Some("aws:kms"), Some(KMS_KEY), None),
            Mode::C(_) => (None, None, Some("AES256")),
        };
        assert_eq!((sse, key_id, algorithm), expected, "{self:?}: {:?}", reply.headers);
        assert_eq!(key_md5, expected_md5.as_deref(), "{self:?}");
        for (name, _) in &reply.headers {
            assert!(name.as_str() != "x-amz-server-side-encryption-customer-key", "the key was echoed");
        }
    }
}

/// The body to write in `mode`: plaintext objects must not carry the marker the disk scans look for.
fn body_for(mode: Mode, len: usize, seed: u32) -> Vec<u8> {
    match mode {
        Mode::Plain => common::data(len, seed as u8),
        _ => plaintext(len, seed),
    }
}

/// Distinctive plaintext of `len` bytes (see [`MARKER`]).
fn plaintext(len: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(MARKER);
        out.extend_from_slice(format!("-{i:08}|").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

async fn sse_server(bucket: &str) -> (TestServer, Client) {
    let server = TestServer::start(MIN_PART).await;
    server.kms.create_key(Some(KMS_KEY), None).await.unwrap();
    let client = server.client();
    client.create_bucket(bucket).await;
    (server, client)
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// Asserts no file under the buckets directory contains the plaintext marker.
#[track_caller]
fn assert_no_plaintext_on_disk(server: &TestServer) {
    let files = files_under(&server.data_dir.join("buckets"));
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER), "plaintext on disk in {}", file.display());
    }
}

/// The one data file of `bucket` that holds `stored_size` bytes.
fn data_file(server: &TestServer, stored_size: u64) -> PathBuf {
    let mut found: Vec<PathBuf> = files_under(&server.data_dir.join("buckets"))
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_str().unwrap().starts_with("data-"))
        .filter(|f| std::fs::metadata(f).unwrap().len() == stored_size)
        .collect();
    assert_eq!(found.len(), 1, "expected one data file of {stored_size} bytes: {found:?}");
    found.remove(0)
}

async fn put(client: &Client, path: &str, mode: Mode, body: &[u8]) -> Reply {
    let headers = mode.write();
    client.put(path, &pairs(&headers), body).await
}

async fn get(client: &Client, path: &str, mode: Mode, extra: &[(&str, &str)]) -> Reply {
    let headers = mode.read();
    let mut all = pairs(&headers);
    all.extend_from_slice(extra);
    client.get(path, &all).await
}

#[track_caller]
fn assert_body(reply: &Reply, status: u16, expected: &[u8]) {
    reply.expect(status, None);
    assert_eq!(reply.header("content-length"), Some(expected.len().to_string().as_str()));
    assert!(reply.body == expected, "body differs ({} bytes vs {} expected)", reply.body.len(), expected.len());
}

// ---------------------------------------------------------------- single PUT

#[tokio::test]
async fn every_mode_round_trips_with_ranges_across_packages() {
    let (server, client) = sse_server("modes").await;
    let sizes = [0, 1, 13, PACKAGE - 1, PACKAGE, PACKAGE + 1, 3 * PACKAGE + 17];
    for mode in MODES {
        for (i, &size) in sizes.iter().enumerate() {
            let body = body_for(mode, size, i as u32);
            let path = format!("/modes/{mode:?}-{size}").replace(['(', ')', '[', ']', ',', ' '], "");
            let reply = put(&client, &path, mode, &body).await;
            reply.expect(200, None);
            mode.assert_echoed(&reply);
            let etag = reply.header("etag").unwrap().trim_matches('"').to_owned();
            match mode {
                Mode::Plain | Mode::S3 => assert_eq!(etag, md5_hex(&body), "{mode:?}"),
                Mode::Kms | Mode::C(_) => {
                    assert_ne!(etag, md5_hex(&body), "{mode:?}");
                    assert_eq!(etag.len(), 32);
                }
            }

            let got = get(&client, &path, mode, &[]).await;
            assert_body(&got, 200, &body);
            mode.assert_echoed(&got);
            assert_eq!(got.header("etag").unwrap().trim_matches('"'), etag);
            let head = client.head(&path, &pairs(&mode.read())).await;
            head.expect(200, None);
            mode.assert_echoed(&head);
            assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));

            for (first, last) in
                [(0, 0), (PACKAGE - 1, PACKAGE), (PACKAGE, PACKAGE), (1, 2 * PACKAGE + 5), (size / 2, size)]
            {
                if size == 0 || first >= size {
                    continue;
                }
                let last = last.min(size - 1);
                let range = format!("bytes={first}-{last}");
                let got = get(&client, &path, mode, &[("range", &range)]).await;
                assert_body(&got, 206, &body[first..=last]);
                assert_eq!(got.header("content-range"), Some(format!("bytes {first}-{last}/{size}").as_str()));
            }
            if size > 0 {
                let suffix = get(&client, &path, mode, &[("range", "bytes=-7")]).await;
                assert_body(&suffix, 206, &body[size.saturating_sub(7)..]);
                let part = get(&client, &format!("{path}?partNumber=1"), mode, &[]).await;
                assert_body(&part, 206, &body);
            }
        }
    }
    assert_no_plaintext_on_disk(&server);
    assert!(server.staged_files().is_empty());
}

#[tokio::test]
async fn sse_kms_echoes_key_id_context_and_bucket_key_and_checks_keys() {
    let (server, client) = sse_server("kms").await;
    let context = base64(br#"{"project":"coffer"}"#);
    let headers = [
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-server-side-encryption-aws-kms-key-id", KMS_KEY),
        ("x-amz-server-side-encryption-context", context.as_str()),
        ("x-amz-server-side-encryption-bucket-key-enabled", "true"),
    ];
    let reply = client.put("/kms/ctx", &headers, b"COFFER-PLAINTEXT-MARKER with context").await;
    reply.expect(200, None);
    assert_eq!(reply.header("x-amz-server-side-encryption-context"), Some(context.as_str()));
    assert_eq!(reply.header("x-amz-server-side-encryption-bucket-key-enabled"), Some("true"));
    assert_eq!(reply.header("x-amz-server-side-encryption-aws-kms-key-id"), Some(KMS_KEY));
    let got = client.get("/kms/ctx", &[]).await;
    assert_body(&got, 200, b"COFFER-PLAINTEXT-MARKER with context");
    assert_eq!(got.header("x-amz-server-side-encryption-bucket-key-enabled"), Some("true"));

    // No key id: the default key; its id is echoed.
    let reply = client.put("/kms/default", &[("x-amz-server-side-encryption", "aws:kms")], b"d").await;
    reply.expect(200, None);
    assert_eq!(reply.header("x-amz-server-side-encryption-aws-kms-key-id"), Some("coffer-default"));

    let unknown =
        [("x-amz-server-side-encryption", "aws:kms"), ("x-amz-server-side-encryption-aws-kms-key-id", "nope")];
    client.put("/kms/unknown", &unknown, b"x").await.expect(400, Some("KMS.NotFoundException"));
    server.kms.create_key(Some("off"), None).await.unwrap();
    server.kms.disable_key("off").await.unwrap();
    let disabled =
        [("x-amz-server-side-encryption", "aws:kms"), ("x-amz-server-side-encryption-aws-kms-key-id", "off")];
    client.put("/kms/disabled", &disabled, b"x").await.expect(400, Some("KMS.DisabledException"));
    client
        .put("/kms/bad", &[("x-amz-server-side-encryption", "aes:kms")], b"x")
        .await
        .expect(400, Some("InvalidArgument"));
    client
        .put("/kms/bad", &[("x-amz-server-side-encryption-aws-kms-key-id", KMS_KEY)], b"x")
        .await
        .expect(400, Some("InvalidArgument"));
    client.get("/kms/ctx", &[("x-amz-server-side-encryption", "aws:kms")]).await.expect(400, Some("InvalidArgument"));
    for key in ["unknown", "disabled", "bad"] {
        client.head(&format!("/kms/{key}"), &[]).await.expect(404, None);
    }
    assert!(server.staged_files().is_empty());
}

// ---------------------------------------------------------------- SSE-C rules

#[tokio::test]
async fn sse_c_errors_store_nothing() {
    let (server, client) = sse_server("ssec").await;
    let body = plaintext(1000, 0);
    put(&client, "/ssec/obj", Mode::C(KEY_A), &body).await.expect(200, None);

    get(&client, "/ssec/obj", Mode::Plain, &[]).await.expect(400, Some("InvalidRequest"));
    get(&client, "/ssec/obj", Mode::C(KEY_B), &[]).await.expect(403, Some("AccessDenied"));
    assert_eq!(client.head("/ssec/obj", &[]).await.status, 400);
    assert_eq!(client.head("/ssec/obj", &pairs(&Mode::C(KEY_B).read())).await.status, 403);

    let mut mismatched = Mode::C(KEY_A).write();
    mismatched[2].1 = base64(&Md5::checksum(&KEY_B));
    let reply = client.put("/ssec/new", &pairs(&mismatched), &body).await;
    reply.expect(400, Some("InvalidArgument"));
    assert!(reply.text().contains("The calculated MD5 hash of the key did not match"), "{}", reply.text());
    let short_key = customer_trio("x-amz-server-side-encryption-customer-", &KEY_A)
        .into_iter()
        .map(|(n, v)| if n.ends_with("-key") { (n, base64(&[1u8; 16])) } else { (n, v) })
        .collect::<Headers>();
    client.put("/ssec/new", &pairs(&short_key), &body).await.expect(400, Some("InvalidArgument"));
    let mut with_sse = Mode::C(KEY_A).write();
    with_sse.push(("x-amz-server-side-encryption".into(), "AES256".into()));
    client.put("/ssec/new", &pairs(&with_sse), &body).await.expect(400, Some("InvalidArgument"));

    // Content-MD5 is checked even though the SSE-C ETag is not an MD5.
    let mut with_md5 = Mode::C(KEY_A).write();
    with_md5.push(("content-md5".into(), base64(&Md5::checksum(b"other"))));
    client.put("/ssec/new", &pairs(&with_md5), &body).await.expect(400, Some("BadDigest"));
    with_md5.last_mut().unwrap().1 = base64(&Md5::checksum(&body));
    client.put("/ssec/md5-ok", &pairs(&with_md5), &body).await.expect(200, None);

    // SSE-C headers on a plaintext object.
    client.put_object("ssec", "plain", b"plain").await;
    get(&client, "/ssec/plain", Mode::C(KEY_A), &[]).await.expect(400, Some("InvalidRequest"));

    client.head("/ssec/new", &[]).await.expect(404, None);
    assert!(server.staged_files().is_empty());
    assert_no_plaintext_on_disk(&server);
}

// ---------------------------------------------------------------- multipart

async fn create_upload(client: &Client, path: &str, mode: Mode) -> (String, Reply) {
    let reply = client.post(&format!("{path}?uploads"), &pairs(&mode.write()), b"").await;
    reply.expect(200, None);
    let text = reply.text();
    let start = text.find("<UploadId>").unwrap() + "<UploadId>".len();
    let end = text.find("</UploadId>").unwrap();
    (text[start..end].to_owned(), reply)
}

async fn upload_part(client: &Client, path: &str, id: &str, number: u32, mode: Mode, body: &[u8]) -> Reply {
    client.put(&format!("{path}?partNumber={number}&uploadId={id}"), &pairs(&mode.read()), body).await
}

async fn complete(client: &Client, path: &str, id: &str, etags: &[String]) -> Reply {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        xml.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>", i + 1));
    }
    xml.push_str("</CompleteMultipartUpload>");
    client.post(&format!("{path}?uploadId={id}"), &[], xml.as_bytes()).await
}

#[tokio::test]
async fn multipart_in_every_mode_with_small_and_unaligned_parts() {
    let (server, client) = sse_server("mpu").await;
    // Parts smaller than a package, crossing packages, and an unaligned last part.
    let sizes = [2 * PACKAGE + 100, MIN_PART as usize, PACKAGE + 1, 777];
    for mode in MODES {
        let body = body_for(mode, sizes.iter().sum(), 7);
        let path = format!("/mpu/mode-{}", MODES.iter().position(|m| *m == mode).unwrap());
        let (id, created) = create_upload(&client, &path, mode).await;
        mode.assert_echoed(&created);
        let mut etags = Vec::new();
        let mut offset = 0;
        // Upload in reverse order: parts are independent.
        let mut parts: Vec<(u32, &[u8])> = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            parts.push((i as u32 + 1, &body[offset..offset + size]));
            offset += size;
        }
        etags.resize(parts.len(), String::new());
        for &(number, data) in parts.iter().rev() {
            let reply = upload_part(&client, &path, &id, number, mode, data).await;
            reply.expect(200, None);
            mode.assert_echoed(&reply);
            let etag = reply.header("etag").unwrap().to_owned();
            if matches!(mode, Mode::Kms | Mode::C(_)) {
                assert_ne!(etag.trim_matches('"'), md5_hex(data));
            }
            etags[number as usize - 1] = etag;
        }
        if let Mode::C(_) = mode {
            upload_part(&client, &path, &id, 9, Mode::Plain, b"x").await.expect(400, Some("InvalidRequest"));
            upload_part(&client, &path, &id, 9, Mode::C(KEY_B), b"x").await.expect(400, Some("InvalidRequest"));
        } else {
            upload_part(&client, &path, &id, 9, Mode::C(KEY_B), b"x").await.expect(400, Some("InvalidRequest"));
        }
        assert_no_plaintext_on_disk(&server);
        let done = complete(&client, &path, &id, &etags).await;
        done.expect(200, None);
        let expected_sse = match mode {
            Mode::S3 => Some("AES256"),
            Mode::Kms => Some("aws:kms"),
            Mode::Plain | Mode::C(_) => None,
        };
        assert_eq!(done.header("x-amz-server-side-encryption"), expected_sse);

        let got = get(&client, &path, mode, &[]).await;
        assert_body(&got, 200, &body);
        mode.assert_echoed(&got);
        assert!(got.header("etag").unwrap().ends_with(&format!("-{}\"", sizes.len())));
        // Every part boundary ±1, and each part by number.
        let mut boundary = 0;
        for (i, &size) in sizes.iter().enumerate() {
            let part = get(&client, &format!("{path}?partNumber={}", i + 1), mode, &[]).await;
            assert_body(&part, 206, &body[boundary..boundary + size]);
            assert_eq!(part.header("x-amz-mp-parts-count"), Some(sizes.len().to_string().as_str()));
            boundary += size;
            for (first, last) in
                [(boundary - 1, boundary), (boundary - 2, boundary + 1), (boundary.saturating_sub(1), boundary - 1)]
            {
                let last = last.min(body.len() - 1);
                let got = get(&client, &path, mode, &[("range", &format!("bytes={first}-{last}"))]).await;
                assert_body(&got, 206, &body[first..=last]);
            }
        }
        get(&client, &format!("{path}?partNumber=5"), mode, &[]).await.expect(416, Some("InvalidPartNumber"));
    }
    assert_no_plaintext_on_disk(&server);
    assert!(server.staged_files().is_empty());
}

// ---------------------------------------------------------------- tampering

#[tokio::test]
async fn a_flipped_byte_on_disk_fails_the_read() {
    for mode in [Mode::S3, Mode::Kms, Mode::C(KEY_A)] {
        let (server, client) = sse_server("tamper").await;
        let body = plaintext(3 * PACKAGE + 10, 0);
        put(&client, "/tamper/obj", mode, &body).await.expect(200, None);
        let file = data_file(&server, coffer_sse::stored_size(body.len() as u64));
        for position in [0, PACKAGE + 20, 3 * PACKAGE + 50] {
            let original = std::fs::read(&file).unwrap();
            let mut tampered = original.clone();
            tampered[position] ^= 0x01;
            std::fs::write(&file, &tampered).unwrap();
            for range in [None, Some("bytes=0-10"), Some("bytes=196600-196615")] {
                let extra: Vec<(&str, &str)> = range.iter().map(|r| ("range", *r)).collect();
                let got = get(&client, "/tamper/obj", mode, &extra).await;
                let declared = got.header("content-length").and_then(|l| l.parse::<usize>().ok());
                let complete = got.status < 300 && declared == Some(got.body.len());
                // Package i is stored at marker + i * (PACKAGE + 16); the marker is read with package 0.
                let marker = coffer_sse::ENCRYPTED_DATA_MARKER.len();
                let touched = match range {
                    None => true,
                    Some("bytes=0-10") => position < marker + PACKAGE + 16,
                    Some(_) => position >= marker + 2 * (PACKAGE + 16),
                };
                if touched {
                    assert!(!complete, "{mode:?}: a tampered read at {position} ({range:?}) looked complete");
                    if position == 0 {
                        // The first package of the response fails before it starts: an error status.
                        got.expect(500, Some("InternalError"));
                    }
                } else {
                    assert!(complete, "{mode:?}: untouched packages still read ({range:?}, flip at {position})");
                }
            }
            // A copy reads the whole source: it fails and stores nothing.
            let copy = client.put("/tamper/copy", &pairs(&copy_headers("/tamper/obj", mode, Mode::S3)), b"").await;
            copy.expect(500, Some("InternalError"));
            client.head("/tamper/copy", &[]).await.expect(404, None);
            assert!(server.staged_files().is_empty());
            std::fs::write(&file, &original).unwrap();
        }
        assert_body(&get(&client, "/tamper/obj", mode, &[]).await, 200, &body);
    }
}

// ---------------------------------------------------------------- KMS outage

#[tokio::test]
async fn a_stopped_kms_refuses_sse_but_serves_plaintext() {
    let (server, client) = sse_server("outage").await;
    put(&client, "/outage/s3", Mode::S3, b"sse-s3 data").await.expect(200, None);
    put(&client, "/outage/kms", Mode::Kms, b"sse-kms data").await.expect(200, None);
    server.kms.stop().await.unwrap();

    for mode in [Mode::S3, Mode::Kms] {
        let reply = put(&client, "/outage/new", mode, b"x").await;
        reply.expect(503, Some("ServiceUnavailable"));
        assert!(reply.text().contains("KMS"), "{}", reply.text());
    }
    client.get("/outage/s3", &[]).await.expect(503, Some("ServiceUnavailable"));
    client.get("/outage/kms", &[]).await.expect(503, Some("ServiceUnavailable"));
    client.head("/outage/kms", &[]).await.expect(200, None);
    // SSE-C needs no KMS.
    put(&client, "/outage/c", Mode::C(KEY_A), b"customer").await.expect(200, None);
    assert_body(&get(&client, "/outage/c", Mode::C(KEY_A), &[]).await, 200, b"customer");
    client.put_object("outage", "plain", b"plain").await;
    assert_body(&client.get("/outage/plain", &[]).await, 200, b"plain");
    client.head("/outage/new", &[]).await.expect(404, None);
    assert!(server.staged_files().is_empty());

    server.kms.start().await.unwrap();
    assert_body(&client.get("/outage/kms", &[]).await, 200, b"sse-kms data");
}

// ---------------------------------------------------------------- bucket default

fn encryption_config(algorithm: &str, key_id: Option<&str>) -> String {
    let key = key_id.map(|k| format!("<KMSMasterKeyID>{k}</KMSMasterKeyID>")).unwrap_or_default();
    format!(
        "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>{algorithm}\
         </SSEAlgorithm>{key}</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule>\
         </ServerSideEncryptionConfiguration>"
    )
}

#[tokio::test]
async fn bucket_default_encryption_applies_to_every_write_without_headers() {
    let (server, client) = sse_server("dflt").await;
    client.get("/dflt?encryption", &[]).await.expect(404, Some("ServerSideEncryptionConfigurationNotFoundError"));
    client.delete("/dflt?encryption").await.expect(204, None);
    client.put("/dflt?encryption", &[], encryption_config("aes:kms", None).as_bytes()).await.expect(400, None);

    client.put("/dflt?encryption", &[], encryption_config("aws:kms", Some(KMS_KEY)).as_bytes()).await.expect(200, None);
    let config = client.get("/dflt?encryption", &[]).await;
    config.expect(200, None);
    assert!(config.text().contains("<SSEAlgorithm>aws:kms</SSEAlgorithm>"), "{}", config.text());
    assert!(config.text().contains(&format!("<KMSMasterKeyID>{KMS_KEY}</KMSMasterKeyID>")));

    let body = plaintext(5000, 1);
    let reply = client.put("/dflt/put", &[], &body).await;
    reply.expect(200, None);
    Mode::Kms.assert_echoed(&reply);
    assert_eq!(reply.header("x-amz-server-side-encryption-bucket-key-enabled"), Some("true"));
    // Request headers override the default.
    put(&client, "/dflt/c", Mode::C(KEY_A), &body).await.expect(200, None);
    Mode::C(KEY_A).assert_echoed(&client.head("/dflt/c", &pairs(&Mode::C(KEY_A).read())).await);
    let s3 = put(&client, "/dflt/s3", Mode::S3, &body).await;
    Mode::S3.assert_echoed(&s3);
    // Multipart and copy destinations too.
    let (id, created) = create_upload(&client, "/dflt/mpu", Mode::Plain).await;
    Mode::Kms.assert_echoed(&created);
    let etag = upload_part(&client, "/dflt/mpu", &id, 1, Mode::Plain, &body).await.header("etag").unwrap().to_owned();
    complete(&client, "/dflt/mpu", &id, &[etag]).await.expect(200, None);
    Mode::Kms.assert_echoed(&client.head("/dflt/mpu", &[]).await);
    let copy = client.put("/dflt/copy", &pairs(&copy_headers("/dflt/c", Mode::C(KEY_A), Mode::Plain)), b"").await;
    copy.expect(200, None);
    Mode::Kms.assert_echoed(&copy);
    assert_body(&client.get("/dflt/copy", &[]).await, 200, &body);

    client.delete("/dflt?encryption").await.expect(204, None);
    client.get("/dflt?encryption", &[]).await.expect(404, Some("ServerSideEncryptionConfigurationNotFoundError"));
    Mode::Plain.assert_echoed(&client.put("/dflt/after", &[], b"plain").await);
    assert!(server.staged_files().is_empty());
}

#[tokio::test]
async fn bucket_default_kms_key_must_be_well_formed_and_exist() {
    let (server, client) = sse_server("dkey").await;
    let arn = format!("arn:aws:kms:us-east-1:123456789012:key/{KMS_KEY}");
    client.put("/dkey?encryption", &[], encryption_config("aws:kms", Some(&arn)).as_bytes()).await.expect(200, None);
    let config_before = client.get("/dkey?encryption", &[]).await;
    assert!(
        config_before.text().contains(&format!("<KMSMasterKeyID>{arn}</KMSMasterKeyID>")),
        "{}",
        config_before.text()
    );

    let too_long = "k".repeat(10_000);
    let too_long_arn = format!("arn:aws:kms:us-east-1:123456789012:key/{}", "k".repeat(coffer_kms::MAX_KEY_ID_LEN + 1));
    for bad in [
        too_long.as_str(),
        "bad/key/more",
        "two words",
        ".hidden",
        "alias/test-kms-key",
        "Upper/key",
        too_long_arn.as_str(),
    ] {
        let reply = client.put("/dkey?encryption", &[], encryption_config("aws:kms", Some(bad)).as_bytes()).await;
        reply.expect(400, Some("InvalidArgument"));
        assert!(!reply.text().contains(&too_long), "the id was echoed");
    }
    // `store/key` names a key of another KMS store: a store that is not configured is refused like a missing key.
    let reply = client.put("/dkey?encryption", &[], encryption_config("aws:kms", Some("nostore/key")).as_bytes()).await;
    reply.expect(400, Some("KMS.NotFoundException"));
    assert!(reply.text().contains("nostore"), "{}", reply.text());
    client
        .put("/dkey?encryption", &[], encryption_config("aws:kms", Some("no-such-key")).as_bytes())
        .await
        .expect(400, Some("KMS.NotFoundException"));
    server.kms.stop().await.unwrap();
    client
        .put("/dkey?encryption", &[], encryption_config("aws:kms", Some(KMS_KEY)).as_bytes())
        .await
        .expect(503, Some("ServiceUnavailable"));
    server.kms.start().await.unwrap();

    // Nothing refused was stored: the configuration is the one set first, and writes use it.
    assert_eq!(client.get("/dkey?encryption", &[]).await.text(), config_before.text());
    let reply = client.put("/dkey/obj", &[], b"data").await;
    reply.expect(200, None);
    assert_eq!(reply.header("x-amz-server-side-encryption-aws-kms-key-id"), Some(arn.as_str()));
    assert_body(&client.get("/dkey/obj", &[]).await, 200, b"data");
}

// ---------------------------------------------------------------- copies

fn copy_headers(source: &str, from: Mode, to: Mode) -> Headers {
    let mut headers: Headers = vec![("x-amz-copy-source".into(), source.into())];
    headers.extend(from.copy_source());
    headers.extend(to.write());
    headers
}

#[tokio::test]
async fn copy_object_and_upload_part_copy_between_every_pair_of_modes() {
    let (server, client) = sse_server("copy").await;
    let body = plaintext(PACKAGE + 4321, 3);
    let dest_key = Mode::C(KEY_B);
    for from in MODES {
        let source = format!("/copy/src-{}", MODES.iter().position(|m| *m == from).unwrap());
        put(&client, &source, from, &body).await.expect(200, None);
        for to in [Mode::Plain, Mode::S3, Mode::Kms, dest_key] {
            let dest = format!(
                "{source}-to-{}",
                [Mode::Plain, Mode::S3, Mode::Kms, dest_key].iter().position(|m| *m == to).unwrap()
            );
            let reply = client.put(&dest, &pairs(&copy_headers(&source, from, to)), b"").await;
            reply.expect(200, None);
            to.assert_echoed(&reply);
            assert_body(&get(&client, &dest, to, &[]).await, 200, &body);

            // UploadPartCopy: a range of the source as part 1, the rest as part 2.
            let (id, _) = create_upload(&client, &format!("{dest}-mpu"), to).await;
            let mut etags = Vec::new();
            for (number, range) in
                [(1, format!("bytes=0-{}", MIN_PART + 99)), (2, format!("bytes={}-{}", MIN_PART + 100, body.len() - 1))]
            {
                let mut headers = copy_headers(&source, from, Mode::Plain);
                headers.extend(to.read());
                headers.push(("x-amz-copy-source-range".into(), range));
                let reply =
                    client.put(&format!("{dest}-mpu?partNumber={number}&uploadId={id}"), &pairs(&headers), b"").await;
                reply.expect(200, None);
                to.assert_echoed(&reply);
                let text = reply.text();
                let start = text.find("<ETag>").unwrap() + "<ETag>".len();
                etags.push(text[start..text.find("</ETag>").unwrap()].replace("&quot;", "\""));
            }
            complete(&client, &format!("{dest}-mpu"), &id, &etags).await.expect(200, None);
            assert_body(&get(&client, &format!("{dest}-mpu"), to, &[]).await, 200, &body);
        }
        // The source's key is required, and checked.
        if let Mode::C(_) = from {
            let reply = client
                .put(&format!("{source}-nokey"), &pairs(&copy_headers(&source, Mode::Plain, Mode::Plain)), b"")
                .await;
            reply.expect(400, Some("InvalidRequest"));
            let reply = client
                .put(&format!("{source}-wrong"), &pairs(&copy_headers(&source, Mode::C(KEY_B), Mode::Plain)), b"")
                .await;
            reply.expect(403, Some("AccessDenied"));
        } else {
            let reply = client
                .put(&format!("{source}-stray"), &pairs(&copy_headers(&source, Mode::C(KEY_A), Mode::Plain)), b"")
                .await;
            reply.expect(400, Some("InvalidRequest"));
        }
    }
    assert_no_plaintext_on_disk_except_plain(&server, &client).await;
    assert!(server.staged_files().is_empty());
}

/// Deletes the plaintext objects (HEAD without SSE-C headers answers 200 without an SSE header only for them),
/// then checks nothing else left plaintext on disk, and that listings show no encryption metadata.
async fn assert_no_plaintext_on_disk_except_plain(server: &TestServer, client: &Client) {
    let listing = client.get("/copy?list-type=2", &[]).await.text();
    assert!(!listing.contains("sealed") && !listing.contains("wrapped") && !listing.contains("salt"), "{listing}");
    for key in listing.split("<Key>").skip(1).map(|s| &s[..s.find("</Key>").unwrap()]) {
        let head = client.head(&format!("/copy/{key}"), &[]).await;
        if head.status == 200 && head.header("x-amz-server-side-encryption").is_none() {
            client.delete(&format!("/copy/{key}")).await.expect(204, None);
        }
    }
    assert_no_plaintext_on_disk(server);
}

#[tokio::test]
async fn self_copy_changes_the_key_without_touching_the_data() {
    let (server, client) = sse_server("rekey").await;
    let body = plaintext(2 * PACKAGE + 3, 9);
    let stored_size = coffer_sse::stored_size(body.len() as u64);
    put(&client, "/rekey/obj", Mode::C(KEY_A), &body).await.expect(200, None);
    let file = data_file(&server, stored_size);
    let before = (std::fs::read(&file).unwrap(), std::fs::metadata(&file).unwrap());
    let etag = client.head("/rekey/obj", &pairs(&Mode::C(KEY_A).read())).await.header("etag").unwrap().to_owned();

    for (from, to) in [
        (Mode::C(KEY_A), Mode::C(KEY_B)),
        (Mode::C(KEY_B), Mode::Kms),
        (Mode::Kms, Mode::S3),
        (Mode::S3, Mode::C(KEY_A)),
    ] {
        let reply = client.put("/rekey/obj", &pairs(&copy_headers("/rekey/obj", from, to)), b"").await;
        reply.expect(200, None);
        to.assert_echoed(&reply);
        let after = std::fs::metadata(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), before.0, "{from:?} -> {to:?} rewrote the data");
        assert_eq!(
            (after.ino(), after.mtime(), after.mtime_nsec()),
            (before.1.ino(), before.1.mtime(), before.1.mtime_nsec())
        );
        let got = get(&client, "/rekey/obj", to, &[]).await;
        assert_body(&got, 200, &body);
        assert_eq!(got.header("etag"), Some(etag.as_str()));
        if let (Mode::C(_), Mode::C(_)) = (from, to) {
            get(&client, "/rekey/obj", from, &[]).await.expect(403, Some("AccessDenied"));
        }
    }
    // Without new encryption or REPLACE the self-copy is illegal.
    let reply = client.put("/rekey/obj", &pairs(&copy_headers("/rekey/obj", Mode::C(KEY_A), Mode::Plain)), b"").await;
    reply.expect(200, None); // SSE-C -> plaintext: a real copy that decrypts
    assert_body(&client.get("/rekey/obj", &[]).await, 200, &body);
    client.put("/rekey/obj", &[("x-amz-copy-source", "/rekey/obj")], b"").await.expect(400, Some("InvalidRequest"));
    // Plaintext -> encrypted rewrites the data under a key.
    put(&client, "/rekey/obj", Mode::Plain, &body).await.expect(200, None);
    client.put("/rekey/obj", &pairs(&copy_headers("/rekey/obj", Mode::Plain, Mode::S3)), b"").await.expect(200, None);
    assert_body(&client.get("/rekey/obj", &[]).await, 200, &body);
    assert_no_plaintext_on_disk(&server);
}
