//! The HTTP side of `coffer admin`: builds admin API URLs, signs requests with SigV4 exactly as awscurl does
//! (service `s3`, payload SHA-256 in `x-amz-content-sha256`), sends them and turns answers into JSON or a
//! [`CliError`]. The secret key only ever feeds the signer.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::Method;
use reqwest::Url;
use serde_json::Value;

use crate::routes::MOUNT_PREFIXES;

/// Admin requests may wait on a Vault health probe with retries; give them time, but not forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error.
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
    /// The server could not be reached or its answer could not be read.
    #[error("{0}")]
    Transport(String),
    /// Something on this side is wrong: missing credentials, a bad endpoint, an unreadable file.
    #[error("{0}")]
    Usage(String),
    /// A followed job ended without settling every object (failures, paused, cancelled, failed).
    #[error("{0}")]
    Incomplete(String),
}

/// Access key and secret key; `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKeys {
    pub access_key: String,
    pub secret_key: String,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys").field("access_key", &self.access_key).field("secret_key", &"***").finish()
    }
}

/// A request to the admin API, relative to its canonical prefix.
#[derive(Debug, PartialEq, Eq)]
pub struct AdminRequest {
    pub method: Method,
    /// Path segments after the prefix, unencoded (`["keys", "my key", "rotate"]`).
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

/// Sends signed admin requests to one server.
#[derive(Debug)]
pub struct AdminClient {
    http: reqwest::Client,
    endpoint: Url,
    keys: SigningKeys,
    region: String,
}

impl AdminClient {
    /// `ca_cert_pem` adds a trusted root for servers with their own certificate authority.
    pub fn new(
        endpoint: &str,
        keys: SigningKeys,
        region: String,
        ca_cert_pem: Option<&[u8]>,
    ) -> Result<Self, CliError> {
        let endpoint = Url::parse(endpoint)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| CliError::Usage(format!("endpoint {endpoint:?} is not an http:// or https:// URL")))?;
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(pem) = ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|err| CliError::Usage(format!("the CA certificate is not valid PEM: {err}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|err| CliError::Usage(format!("cannot set up the HTTP client: {err}")))?;
        Ok(Self { http, endpoint, keys, region })
    }

    /// The full URL of an admin request.
    pub fn url(&self, request: &AdminRequest) -> Url {
        let mut url = self.endpoint.clone();
        url.set_query(None);
        {
            let mut path = url.path_segments_mut().expect("http(s) URLs have a path");
            path.pop_if_empty();
            path.extend(MOUNT_PREFIXES[0].split('/').skip(1));
            path.extend(&request.segments);
        }
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&request.query);
        }
        url
    }

    /// Sends the request and returns the JSON answer (`null` for an empty one).
    pub async fn send(&self, request: &AdminRequest) -> Result<Value, CliError> {
        let url = self.url(request);
        let body = request.body.clone().unwrap_or_default();
        let mut builder = self.http.request(request.method.clone(), url.clone());
        for (name, value) in self.signature_headers(&request.method, &url, &body)? {
            builder = builder.header(name, value);
        }
        if request.body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let response = builder
            .body(body)
            .send()
            .await
            .map_err(|err| CliError::Transport(format!("cannot reach {}: {}", self.endpoint, error_chain(&err))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| CliError::Transport(format!("cannot read the answer from {}: {err}", self.endpoint)))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|err| {
            CliError::Transport(format!(
                "the server's answer is not JSON ({err}); is {} a Coffer server?",
                self.endpoint
            ))
        })
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`) for a request.
    pub fn signature_headers(
        &self,
        method: &Method,
        url: &Url,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, CliError> {
        let signing_failed = |err: &dyn fmt::Display| CliError::Usage(format!("cannot sign the request: {err}"));
        let identity =
            Credentials::new(&self.keys.access_key, &self.keys.secret_key, None, None, "coffer-admin-cli").into();
        let mut settings = SigningSettings::default();
        // S3 signing rules, as s3s verifies them: payload hash header, path encoded once and not normalized.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|err| signing_failed(&err))?
            .into();
        let signable =
            SignableRequest::new(method.as_str(), url.as_str(), std::iter::empty(), SignableBody::Bytes(body))
                .map_err(|err| signing_failed(&err))?;
        let (instructions, _signature) = sign(signable, &params).map_err(|err| signing_failed(&err))?.into_parts();
        Ok(instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
    }
}

/// Reads an error answer: the admin API's JSON `{"code","message"}`, or the S3 XML error s3s sends when the
/// signature itself is refused.
fn api_error(status: u16, body: &[u8]) -> CliError {
    let text = String::from_utf8_lossy(body);
    let (code, message) = if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let field = |name: &str| json.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        (field("code"), field("message"))
    } else {
        (xml_element(&text, "Code"), xml_element(&text, "Message"))
    };
    let code = if code.is_empty() { "HttpError".to_owned() } else { code };
    let message = if message.is_empty() { format!("the server answered HTTP {status}") } else { message };
    CliError::Api { status, code, message }
}

fn xml_element(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(inner, _)| inner.to_owned())
        .unwrap_or_default()
}

/// reqwest's top-level error says little ("error sending request"); the causes say why (connection refused, TLS).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> AdminClient {
        let keys = SigningKeys { access_key: "admin".into(), secret_key: "s3cret".into() };
        AdminClient::new(endpoint, keys, "us-east-1".into(), None).unwrap()
    }

    #[test]
    fn urls_use_the_canonical_prefix_and_encode_segments() {
        let request = AdminRequest {
            method: Method::DELETE,
            segments: vec!["keys".into(), "my key/1".into()],
            query: vec![("pending_window_days", "7".into())],
            body: None,
        };
        assert_eq!(
            client("http://127.0.0.1:9000/").url(&request).as_str(),
            "http://127.0.0.1:9000/coffer/admin/v3/kms/keys/my%20key%2F1?pending_window_days=7"
        );
        assert_eq!(client("https://s3.example.com").url(&request).path(), "/coffer/admin/v3/kms/keys/my%20key%2F1");
    }

    #[test]
    fn bad_endpoints_are_usage_errors() {
        let keys = SigningKeys { access_key: "a".into(), secret_key: "b".into() };
        for endpoint in ["127.0.0.1:9000", "ftp://host", "not a url"] {
            let err = AdminClient::new(endpoint, keys.clone(), "us-east-1".into(), None).unwrap_err();
            assert!(matches!(err, CliError::Usage(_)), "{endpoint}: {err}");
        }
    }

    #[test]
    fn signatures_carry_the_s3_scope_and_payload_hash() {
        let client = client("http://127.0.0.1:9000");
        let url = Url::parse("http://127.0.0.1:9000/coffer/admin/v3/kms/status").unwrap();
        let headers = client.signature_headers(&Method::GET, &url, b"").unwrap();
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap();
        assert!(get("authorization").contains("/us-east-1/s3/aws4_request"), "{}", get("authorization"));
        assert_eq!(get("x-amz-content-sha256"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(!format!("{:?}", client.keys).contains("s3cret"));
    }

    #[test]
    fn error_answers_are_read_from_json_and_from_s3_xml() {
        let CliError::Api { code, message, .. } =
            api_error(409, br#"{"code":"InvalidKMSState","message":"cannot configure while the KMS is running"}"#)
        else {
            panic!("not an API error")
        };
        assert_eq!((code.as_str(), message.as_str()), ("InvalidKMSState", "cannot configure while the KMS is running"));
        let xml = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>bad</Message></Error>";
        let CliError::Api { status, code, .. } = api_error(403, xml) else { panic!("not an API error") };
        assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"));
        let CliError::Api { code, message, .. } = api_error(502, b"") else { panic!("not an API error") };
        assert_eq!((code.as_str(), message.as_str()), ("HttpError", "the server answered HTTP 502"));
    }
}
