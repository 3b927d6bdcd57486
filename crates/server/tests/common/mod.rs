//! Test harness: the real server (store, users, s3s service, hyper listener) on a free loopback port, and a small
//! SigV4-signing HTTP/1.1 client built on aws-sigv4.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use coffer_kms::KmsManager;
use coffer_server::config::{KmsArgs, ServerArgs, ServerConfig};
use coffer_server::health::Health;
use coffer_server::http_server::LocalEndpoints;
use coffer_server::kms::{kms_state_dir, start_kms, KmsSecrets};
use coffer_server::metrics::Metrics;
use coffer_server::service::{build_service, AppState, ObjectSettings};
use coffer_server::users::{RootCredentials, UserRegistry};
use coffer_store::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const ROOT_KEY: &str = "root-access";
pub const ROOT_SECRET: &str = "root-secret-key";
pub const USER_KEY: &str = "plain-user";
pub const USER_SECRET: &str = "plain-user-secret";

/// A running server with its own data directory; stops when dropped.
pub struct TestServer {
    pub endpoint: String,
    pub address: std::net::SocketAddr,
    pub data_dir: PathBuf,
    /// The server's KMS (the embedded default local backend), e.g. to stop it.
    pub kms: Arc<KmsManager>,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server whose multipart minimum part size is `min_part_size`.
    pub async fn start(min_part_size: u64) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let users_file = dir.path().join("users.toml");
        std::fs::write(
            &users_file,
            format!("[[user]]\naccess_key = \"{USER_KEY}\"\nsecret_key = \"{USER_SECRET}\"\nadmin = false\n"),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let root = RootCredentials::resolve(Some(ROOT_KEY.into()), Some(ROOT_SECRET.into()), address).unwrap();
        let users = UserRegistry::load(root, Some(&users_file)).unwrap();
        let store = Store::open(data_dir.clone()).await.unwrap();
        let kms = start_kms(kms_state_dir(&data_dir), &KmsArgs::default(), KmsSecrets::default(), None).await.unwrap();
        let settings = ObjectSettings { region: Arc::from("us-east-1"), min_part_size, allow_insecure_sse_c: false };
        let state = AppState::new(store, users, kms.clone(), settings);
        let service = build_service(&state, None);
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ServerConfig::resolve(ServerArgs::default()).unwrap();
        let local = Arc::new(LocalEndpoints {
            health: Health::new(state.store.clone(), kms.clone()),
            metrics: Metrics::new(&config.metrics, kms.clone(), None, Arc::default()).unwrap(),
        });
        let limits = config.connections;
        let serving = tokio::spawn(coffer_server::http_server::serve(listener, service, local, None, limits, async {
            let _ = stopped.await;
        }));
        TestServer {
            endpoint: format!("http://{address}"),
            address,
            data_dir,
            kms,
            _dir: dir,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// Triggers the graceful shutdown (as SIGTERM does) and returns the task that finishes once in-flight requests
    /// are done.
    pub fn shut_down(&mut self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.take().expect("not shut down yet").send(());
        self.serving.take().expect("still serving")
    }

    /// A client signing as the root user.
    pub fn client(&self) -> Client {
        self.client_as(ROOT_KEY, ROOT_SECRET)
    }

    pub fn client_as(&self, access_key: &str, secret_key: &str) -> Client {
        Client { endpoint: self.endpoint.clone(), access_key: access_key.to_owned(), secret_key: secret_key.to_owned() }
    }

    /// Files currently staged in the store's temp directory (should be none between requests).
    pub fn staged_files(&self) -> Vec<PathBuf> {
        let tmp = self.data_dir.join(".coffer").join("tmp");
        assert!(tmp.is_dir(), "the store's temp directory moved: {}", tmp.display());
        std::fs::read_dir(tmp).unwrap().filter_map(Result::ok).map(|entry| entry.path()).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// How the payload hash of a request is declared.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// `x-amz-content-sha256` is the SHA-256 of these bytes (which are also the body).
    Signed(&'a [u8]),
    /// `UNSIGNED-PAYLOAD`; the bytes are the body.
    Unsigned(&'a [u8]),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`; the bytes are the already aws-chunked body.
    StreamingUnsignedTrailer(&'a [u8]),
    /// Signed as `signed` but `sent` is what goes over the wire.
    Tampered { signed: &'a [u8], sent: &'a [u8] },
}

impl Payload<'_> {
    fn body(&self) -> &[u8] {
        match self {
            Payload::Signed(b) | Payload::Unsigned(b) | Payload::StreamingUnsignedTrailer(b) => b,
            Payload::Tampered { sent, .. } => sent,
        }
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an S3 error body.
    pub fn error_code(&self) -> Option<String> {
        let text = self.text();
        let start = text.find("<Code>")? + "<Code>".len();
        let end = text[start..].find("</Code>")? + start;
        Some(text[start..end].to_owned())
    }

    /// Asserts status and (for errors with a body) the S3 error code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text());
        if let Some(code) = code {
            assert_eq!(self.error_code().as_deref(), Some(code), "unexpected error; body: {}", self.text());
        }
    }
}

pub struct Client {
    endpoint: String,
    access_key: String,
    secret_key: String,
}

impl Client {
    /// Sends a SigV4-signed request. `path_and_query` is already percent-encoded.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Reply {
        execute(self.signed(method, path_and_query, headers, payload)).await
    }

    /// Builds a SigV4-signed request. `path_and_query` is already percent-encoded.
    pub fn signed(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> http::Request<Vec<u8>> {
        let url = format!("{}{}", self.endpoint, path_and_query);
        let mut request = http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(payload.body().to_vec()).unwrap();

        let identity: Identity = Credentials::new(&self.access_key, &self.secret_key, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable_body = match payload {
            Payload::Signed(bytes) | Payload::Tampered { signed: bytes, .. } => SignableBody::Bytes(bytes),
            Payload::Unsigned(_) => SignableBody::UnsignedPayload,
            Payload::StreamingUnsignedTrailer(_) => SignableBody::StreamingUnsignedPayloadTrailer,
        };
        let header_pairs: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
            .collect();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            header_pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            signable_body,
        )
        .unwrap();
        let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut request);
        request
    }

    /// Sends a request without any signature.
    pub async fn send_anonymous(&self, method: &str, path_and_query: &str) -> Reply {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.endpoint, path_and_query))
            .body(Vec::new())
            .unwrap();
        execute(request).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", path, headers, Payload::Signed(b"")).await
    }

    pub async fn head(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("HEAD", path, headers, Payload::Signed(b"")).await
    }

    pub async fn put(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.send("PUT", path, headers, Payload::Signed(body)).await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.send("POST", path, headers, Payload::Signed(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], Payload::Signed(b"")).await
    }

    /// Creates a bucket and asserts success.
    pub async fn create_bucket(&self, bucket: &str) {
        self.put(&format!("/{bucket}"), &[], b"").await.expect(200, None);
    }

    /// Puts an object and asserts success.
    pub async fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Reply {
        let reply = self.put(&format!("/{bucket}/{key}"), &[], body).await;
        reply.expect(200, None);
        reply
    }
}

/// Sends `request` over a fresh HTTP/1.1 connection exactly as given: no client-side path normalisation, so keys
/// such as `../x` reach the server unchanged (general-purpose clients resolve dot segments first).
async fn execute(request: http::Request<Vec<u8>>) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = request.uri().authority().unwrap().to_string();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    stream.write_all(request_head(&request).as_bytes()).await.unwrap();
    stream.write_all(request.body()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw, request.method() == http::Method::HEAD)
}

/// The HTTP/1.1 request line and headers (with `connection: close` and the body's content-length).
pub fn request_head(request: &http::Request<Vec<u8>>) -> String {
    let authority = request.uri().authority().unwrap();
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!("{} {target} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n", request.method());
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", request.body().len()));
    head
}

/// Parses an HTTP/1.1 response read until the server closed the connection. A connection closed before a complete
/// response head gives status 0 (the server aborted the response).
pub fn parse_response(raw: &[u8], is_head: bool) -> Reply {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Reply { status: 0, headers: http::HeaderMap::new(), body: raw.to_vec() };
    };
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let rest = &raw[split + 4..];
    let chunked = headers.get("transfer-encoding").is_some_and(|v| v == "chunked");
    let body = if is_head {
        Vec::new()
    } else if chunked {
        decode_chunked(rest)
    } else {
        rest.to_vec()
    };
    Reply { status, headers, body }
}

fn decode_chunked(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Percent-encodes a key for a URL path the way botocore does: everything but unreserved characters and `/`.
pub fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Base64 (standard alphabet, padded) for header values.
pub fn base64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// Hex MD5, i.e. the ETag of a single PUT.
pub fn md5_hex(bytes: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    hex::encode(s3s::crypto::Md5::checksum(bytes))
}

/// Base64 CRC32 as sent in `x-amz-checksum-crc32`.
pub fn crc32_b64(bytes: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    base64(&s3s::crypto::Crc32::checksum(bytes))
}

/// Deterministic test data.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A body in aws-chunked format with the given trailer lines (unsigned chunks).
pub fn aws_chunked(payload: &[u8], chunk_size: usize, trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in payload.chunks(chunk_size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}
