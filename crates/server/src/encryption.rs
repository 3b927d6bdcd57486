//! The server's side of server-side encryption: what coffer-sse needs from a request (the SSE headers as strings,
//! how the client is connected, the bucket's default encryption, the stored encryption metadata), the keys it
//! hands back for the data path, its errors as S3 errors, and its response values as s3s output fields.
//!
//! Every SSE rule itself (which headers mean what, who may read what) lives in coffer-sse; this module only moves
//! values between s3s, the store and that crate.

use coffer_sse::{
    authorize_read, authorize_upload_part, BucketEncryption, CustomerKey, CustomerKeyHeaders, ListedPart, NewObject,
    ObjectCipher, ObjectEncryption, PartEncryption, PartEncryptor, SseError, SseHeaders, SseMode, Transport,
    WriteEncryption,
};
use coffer_store::{PartMeta, RawJson};
use http::{Extensions, HeaderMap, StatusCode};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use tracing::error;

use crate::audit_log::{key_use, KeyAction, Requester};
use crate::errors::{internal, store_error};
use crate::http_server::ClientConnection;
use crate::service::AppState;

const SSE: &str = "x-amz-server-side-encryption";
const SSE_KMS_KEY_ID: &str = "x-amz-server-side-encryption-aws-kms-key-id";
const SSE_CONTEXT: &str = "x-amz-server-side-encryption-context";
const SSE_BUCKET_KEY_ENABLED: &str = "x-amz-server-side-encryption-bucket-key-enabled";
const SSE_C_PREFIX: &str = "x-amz-server-side-encryption-customer-";
const COPY_SOURCE_SSE_C_PREFIX: &str = "x-amz-copy-source-server-side-encryption-customer-";

/// The S3 answer coffer-sse chose: its code (S3's own, or a custom one such as `KMS.NotFoundException`), status
/// and message. Server-side failures are logged.
pub fn sse_error(err: SseError) -> S3Error {
    if err.status() >= 500 {
        error!(code = err.code(), message = err.message(), "server-side encryption failed");
    }
    let code = S3ErrorCode::from_bytes(err.code().as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    let mut s3_err = S3Error::with_message(code, err.message().to_owned());
    s3_err.set_status_code(StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    s3_err
}

/// How the client reached the server, for the SSE-C transport rule. A request without connection details (not
/// served by [`crate::http_server`]) counts as neither TLS nor loopback.
pub fn transport(state: &AppState, extensions: &Extensions) -> Transport {
    connection_transport(extensions.get::<ClientConnection>(), state.settings.allow_insecure_sse_c)
}

fn connection_transport(connection: Option<&ClientConnection>, allow_insecure_sse_c: bool) -> Transport {
    Transport {
        tls: connection.is_some_and(|c| c.tls),
        client_is_loopback: connection.is_some_and(|c| c.peer.ip().to_canonical().is_loopback()),
        allow_insecure_sse_c,
    }
}

/// The SSE request headers of a PUT, CreateMultipartUpload, CopyObject (destination), GET or HEAD. They are read
/// from the headers for every operation alike: s3s's input types lack some of them on reads, where they must be
/// refused rather than ignored.
pub fn sse_headers(headers: &HeaderMap) -> S3Result<SseHeaders> {
    let bucket_key_enabled = header(headers, SSE_BUCKET_KEY_ENABLED)?
        .map(|value| match value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(s3_error!(InvalidArgument, "{SSE_BUCKET_KEY_ENABLED} must be true or false.")),
        })
        .transpose()?;
    Ok(SseHeaders {
        server_side_encryption: header(headers, SSE)?,
        kms_key_id: header(headers, SSE_KMS_KEY_ID)?,
        context: header(headers, SSE_CONTEXT)?,
        bucket_key_enabled,
        customer: customer_key_headers(headers, SSE_C_PREFIX)?,
    })
}

/// The `x-amz-server-side-encryption-customer-*` trio (UploadPart, UploadPartCopy destination).
pub fn customer_headers(headers: &HeaderMap) -> S3Result<CustomerKeyHeaders> {
    customer_key_headers(headers, SSE_C_PREFIX)
}

/// The `x-amz-copy-source-server-side-encryption-customer-*` trio of a copy source.
pub fn copy_source_customer_headers(headers: &HeaderMap) -> S3Result<CustomerKeyHeaders> {
    customer_key_headers(headers, COPY_SOURCE_SSE_C_PREFIX)
}

/// Whether the request names any encryption for the object it writes (as opposed to a bucket default applying).
pub fn names_encryption(headers: &SseHeaders) -> bool {
    let customer = &headers.customer;
    headers.server_side_encryption.is_some()
        || headers.kms_key_id.is_some()
        || headers.context.is_some()
        || headers.bucket_key_enabled.is_some()
        || customer.algorithm.is_some()
        || customer.key.is_some()
        || customer.key_md5.is_some()
}

fn customer_key_headers(headers: &HeaderMap, prefix: &str) -> S3Result<CustomerKeyHeaders> {
    Ok(CustomerKeyHeaders {
        algorithm: header(headers, &format!("{prefix}algorithm"))?,
        key: header(headers, &format!("{prefix}key"))?.map(zeroize::Zeroizing::new),
        key_md5: header(headers, &format!("{prefix}key-md5"))?,
    })
}

/// A header value as text. The message names the header only: SSE-C key headers carry secrets.
fn header(headers: &HeaderMap, name: &str) -> S3Result<Option<String>> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| s3_error!(InvalidArgument, "Invalid value for header {name}."))
        })
        .transpose()
}

/// The bucket's default encryption (PutBucketEncryption), if it has one. `NoSuchBucket` if it does not exist.
pub async fn bucket_default(state: &AppState, bucket: &str) -> S3Result<Option<BucketEncryption>> {
    let stored = state.store.bucket_encryption(bucket).await.map_err(store_error)?;
    stored.map(|json| BucketEncryption::from_json(json.get())).transpose().map_err(sse_error)
}

/// How a new object (or upload, or copy destination) in `bucket` is to be encrypted: the request's headers, else
/// the bucket default.
pub async fn write_encryption(
    state: &AppState,
    bucket: &str,
    headers: &SseHeaders,
    transport: &Transport,
) -> S3Result<WriteEncryption> {
    let default = bucket_default(state, bucket).await?;
    headers.for_write(default.as_ref(), transport).map_err(sse_error)
}

/// A fresh object key sealed as `encryption` says, or `None` for plaintext. A KMS bucket key's use is audited.
pub async fn start_object(
    state: &AppState,
    who: &Requester,
    bucket: &str,
    key: &str,
    encryption: &WriteEncryption,
) -> S3Result<Option<NewObject>> {
    let started = state.sse.start_object(bucket, key, encryption).await;
    let named = match encryption {
        WriteEncryption::SseS3 => None,
        WriteEncryption::SseKms(request) => request.key_id.as_deref(),
        WriteEncryption::None | WriteEncryption::SseC(_) => return started.map_err(sse_error),
    };
    match started {
        Ok(new) => {
            if let Some(new) = &new {
                // The key the KMS chose (a bucket key, or the default) is known only now; a refusal drops the fresh
                // object key, so nothing is sealed under a key the caller may not use.
                authorize_key_use(state, who, KeyAction::GenerateDataKey, bucket, key, &new.encryption)?;
            }
            let origin = new.as_ref().and_then(|new| state.sse.key_origin(&new.encryption).ok().flatten());
            key_use(who, KeyAction::GenerateDataKey, bucket, key, origin.as_ref(), named, None);
            Ok(new)
        }
        Err(err) => {
            key_use(who, KeyAction::GenerateDataKey, bucket, key, None, named, Some(err.code()));
            Err(sse_error(err))
        }
    }
}

/// CopyObject onto itself with new encryption: the same object key under a new outer key (see
/// [`coffer_sse::SseService::reseal`]); opening the old bucket key and sealing under the new one are audited.
pub async fn reseal(
    state: &AppState,
    who: &Requester,
    bucket: &str,
    key: &str,
    stored: &ObjectEncryption,
    customer_key: Option<&CustomerKey>,
    new: &WriteEncryption,
) -> S3Result<ObjectEncryption> {
    authorize_key_use(state, who, KeyAction::Decrypt, bucket, key, stored)?;
    let resealed = state.sse.reseal(bucket, key, stored, customer_key, new).await;
    audit_open(state, who, bucket, key, stored, &resealed);
    let resealed = resealed.map_err(sse_error)?;
    if resealed.mode() != SseMode::SseC {
        authorize_key_use(state, who, KeyAction::GenerateDataKey, bucket, key, &resealed)?;
        let origin = state.sse.key_origin(&resealed).ok().flatten();
        key_use(who, KeyAction::GenerateDataKey, bucket, key, origin.as_ref(), None, None);
    }
    Ok(resealed)
}

/// Refuses (403 AccessDenied, audited) a use of an SSE-KMS object's key that the caller has no permission for.
/// SSE-S3 keys are the server's own and SSE-C keys the client's: neither needs a permission.
fn authorize_key_use(
    state: &AppState,
    who: &Requester,
    action: KeyAction,
    bucket: &str,
    key: &str,
    encryption: &ObjectEncryption,
) -> S3Result<()> {
    if encryption.mode() != SseMode::SseKms {
        return Ok(());
    }
    // Without a known origin the KMS cannot open the key either; that error is the one to report.
    let Ok(Some(origin)) = state.sse.key_origin(encryption) else {
        return Ok(());
    };
    state.authz.check_key_use(&who.access_key, action.as_str(), &origin).inspect_err(|_| {
        key_use(who, action, bucket, key, Some(&origin), None, Some("AccessDenied"));
    })
}

/// Audits opening a stored object's (or upload's) KMS bucket key; nothing for SSE-C.
fn audit_open<T>(
    state: &AppState,
    who: &Requester,
    bucket: &str,
    key: &str,
    stored: &ObjectEncryption,
    opened: &Result<T, SseError>,
) {
    if stored.mode() == SseMode::SseC {
        return;
    }
    let origin = state.sse.key_origin(stored).ok().flatten();
    let error = opened.as_ref().err().map(SseError::code);
    key_use(who, KeyAction::Decrypt, bucket, key, origin.as_ref(), None, error);
}

/// The encryptor of the one part of a new single-part object (PutObject, CopyObject, a rewrap that encrypts);
/// `None` for plaintext. Once the part is written, [`committed_encryption`] gives the object's metadata.
pub fn single_part_encryptor(new: Option<&NewObject>) -> Option<PartEncryptor> {
    new.map(|new| new.cipher.encrypt_part(1))
}

/// The encryption metadata of a new object written as `parts`, committed to that part list; `None` for plaintext.
pub fn committed_encryption(new: Option<NewObject>, parts: &[PartMeta]) -> S3Result<Option<ObjectEncryption>> {
    let Some(NewObject { mut encryption, cipher }) = new else {
        return Ok(None);
    };
    commit_part_list(&cipher, &mut encryption, parts)?;
    Ok(Some(encryption))
}

/// Commits `encryption`, opened as `cipher`, to the object's `parts` (see [`coffer_sse::ListedPart`]).
pub fn commit_part_list(cipher: &ObjectCipher, encryption: &mut ObjectEncryption, parts: &[PartMeta]) -> S3Result<()> {
    let encryptions = part_encryptions(parts)?;
    cipher.commit_part_list(encryption, &listed_parts(parts, &encryptions)).map_err(sse_error)
}

/// The encryption metadata of an encrypted object's or upload's parts, in order.
pub fn part_encryptions(parts: &[PartMeta]) -> S3Result<Vec<PartEncryption>> {
    parts
        .iter()
        .map(|part| {
            let json = part
                .encryption
                .as_ref()
                .ok_or_else(|| internal(&"the object's record is inconsistent: a part has no encryption metadata"))?;
            PartEncryption::from_json(json.get()).map_err(sse_error)
        })
        .collect()
}

/// `parts` with their `encryptions`, as the part-list commitment covers them.
pub fn listed_parts<'a>(parts: &[PartMeta], encryptions: &'a [PartEncryption]) -> Vec<ListedPart<'a>> {
    parts.iter().zip(encryptions).map(|(part, encryption)| ListedPart { encryption, size: part.size }).collect()
}

/// The encryption metadata stored on an object or upload, if it is encrypted.
pub fn stored_encryption(json: Option<&RawJson>) -> S3Result<Option<ObjectEncryption>> {
    json.map(|json| ObjectEncryption::from_json(json.get())).transpose().map_err(sse_error)
}

/// The cipher to read an object with (GET, copy source): checks the customer key against the object and opens
/// the object key; `None` for a plaintext object (which must not be sent a customer key).
pub async fn read_cipher(
    state: &AppState,
    who: &Requester,
    bucket: &str,
    key: &str,
    stored: Option<&ObjectEncryption>,
    customer_key: Option<&CustomerKey>,
) -> S3Result<Option<ObjectCipher>> {
    match stored {
        Some(stored) => {
            authorize_key_use(state, who, KeyAction::Decrypt, bucket, key, stored)?;
            let opened = state.sse.open_object(bucket, key, stored, customer_key).await;
            audit_open(state, who, bucket, key, stored, &opened);
            opened.map(Some).map_err(sse_error)
        }
        None => authorize_read(None, customer_key).map(|()| None).map_err(sse_error),
    }
}

/// The encryptor for part `number` of an upload (UploadPart, UploadPartCopy): checks the customer key against the
/// upload and opens its object key; `None` for a plaintext upload (which must not be sent a customer key).
pub async fn part_encryptor(
    state: &AppState,
    who: &Requester,
    bucket: &str,
    key: &str,
    upload: Option<&ObjectEncryption>,
    customer_key: Option<&CustomerKey>,
    number: u32,
) -> S3Result<Option<PartEncryptor>> {
    match upload {
        Some(upload) => {
            authorize_key_use(state, who, KeyAction::Decrypt, bucket, key, upload)?;
            let opened = state.sse.open_upload(bucket, key, upload, customer_key).await;
            audit_open(state, who, bucket, key, upload, &opened);
            Ok(Some(opened.map_err(sse_error)?.encrypt_part(number)))
        }
        None => authorize_upload_part(None, customer_key).map(|()| None).map_err(sse_error),
    }
}

/// CompleteMultipartUpload: the upload's encryption metadata (`None` for plaintext), committed to the object's
/// `parts`. The commitment needs the upload's object key: SSE-S3 and SSE-KMS uploads open it (`kms:Decrypt` on an
/// SSE-KMS key, as AWS asks of a completion; audited). SSE-C uploads stay uncommitted: clients send no customer
/// key with CompleteMultipartUpload.
pub async fn completed_encryption(
    state: &AppState,
    who: &Requester,
    bucket: &str,
    key: &str,
    upload: Option<ObjectEncryption>,
    parts: &[PartMeta],
) -> S3Result<Option<ObjectEncryption>> {
    let Some(mut encryption) = upload else {
        return Ok(None);
    };
    if encryption.mode() == SseMode::SseC {
        return Ok(Some(encryption));
    }
    authorize_key_use(state, who, KeyAction::Decrypt, bucket, key, &encryption)?;
    let opened = state.sse.open_upload(bucket, key, &encryption, None).await;
    audit_open(state, who, bucket, key, &encryption, &opened);
    commit_part_list(&opened.map_err(sse_error)?, &mut encryption, parts)?;
    Ok(Some(encryption))
}

/// Sets the SSE response fields of an s3s output from an [`ObjectEncryption`] (or nothing for plaintext). The
/// `context` form also sets `ssekms_encryption_context`, the `kms` form only the fields
/// CompleteMultipartUploadOutput has.
macro_rules! set_sse_fields {
    (@kms $output:expr, $response:expr) => {{
        $output.server_side_encryption = $response.server_side_encryption.map(s3s::dto::ServerSideEncryption::from_static);
        $output.ssekms_key_id = $response.kms_key_id.clone();
        $output.bucket_key_enabled = $response.bucket_key_enabled;
    }};
    ($output:expr, $encryption:expr) => {
        if let Some(encryption) = $encryption {
            let response = coffer_sse::ObjectEncryption::response(encryption);
            $crate::encryption::set_sse_fields!(@kms $output, response);
            $output.sse_customer_algorithm = response.customer_algorithm.map(str::to_owned);
            $output.sse_customer_key_md5 = response.customer_key_md5;
        }
    };
    ($output:expr, $encryption:expr, context) => {
        if let Some(encryption) = $encryption {
            $crate::encryption::set_sse_fields!($output, Some(encryption));
            $output.ssekms_encryption_context = coffer_sse::ObjectEncryption::response(encryption).context;
        }
    };
    ($output:expr, $encryption:expr, kms) => {
        if let Some(encryption) = $encryption {
            let response = coffer_sse::ObjectEncryption::response(encryption);
            $crate::encryption::set_sse_fields!(@kms $output, response);
        }
    };
}
pub(crate) use set_sse_fields;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_errors_keep_code_status_and_message() {
        let headers = SseHeaders { server_side_encryption: Some("aes:kms".into()), ..SseHeaders::default() };
        let err = sse_error(headers.for_write(None, &Transport::default()).unwrap_err());
        assert_eq!(err.code(), &S3ErrorCode::InvalidArgument);
        assert_eq!(err.status_code(), Some(StatusCode::BAD_REQUEST));

        let kms = sse_error(SseError::from(coffer_kms::KmsError::KeyNotFound("k".into())));
        assert_eq!(kms.code().as_str(), "KMS.NotFoundException");
        assert_eq!(kms.status_code(), Some(StatusCode::BAD_REQUEST));
        let down = sse_error(SseError::from(coffer_kms::KmsError::NotRunning));
        assert_eq!(down.code(), &S3ErrorCode::ServiceUnavailable);
        assert_eq!(down.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn transport_follows_the_connection() {
        let connection = |peer: &str, tls| ClientConnection { peer: peer.parse().unwrap(), tls };
        let loopback =
            [connection("127.0.0.1:1", false), connection("[::1]:1", false), connection("[::ffff:127.0.0.1]:1", false)];
        for c in loopback {
            assert!(connection_transport(Some(&c), false).client_is_loopback, "{c:?}");
        }
        let remote = connection("192.0.2.7:1", false);
        assert_eq!(connection_transport(Some(&remote), false), Transport::default());
        assert!(connection_transport(Some(&connection("192.0.2.7:1", true)), false).tls);
        assert!(connection_transport(None, true).allow_insecure_sse_c);
        assert_eq!(connection_transport(None, false), Transport::default());
        // A remote client over plain HTTP may not send an SSE-C key.
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-server-side-encryption-customer-algorithm", "AES256".parse().unwrap());
        let err = customer_headers(&headers).unwrap().parse(&connection_transport(Some(&remote), false)).unwrap_err();
        assert_eq!(sse_error(err).code(), &S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn headers_are_read_as_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(SSE, "aws:kms".parse().unwrap());
        headers.insert(SSE_KMS_KEY_ID, "my-key".parse().unwrap());
        headers.insert(SSE_BUCKET_KEY_ENABLED, "TRUE".parse().unwrap());
        headers.insert("x-amz-copy-source-server-side-encryption-customer-key-md5", "bWQ1".parse().unwrap());
        let parsed = sse_headers(&headers).unwrap();
        assert_eq!(parsed.server_side_encryption.as_deref(), Some("aws:kms"));
        assert_eq!(parsed.kms_key_id.as_deref(), Some("my-key"));
        assert_eq!(parsed.bucket_key_enabled, Some(true));
        assert!(parsed.customer.key.is_none());
        assert!(names_encryption(&parsed));
        assert_eq!(copy_source_customer_headers(&headers).unwrap().key_md5.as_deref(), Some("bWQ1"));
        assert!(!names_encryption(&sse_headers(&HeaderMap::new()).unwrap()));

        headers.insert(SSE_BUCKET_KEY_ENABLED, "yes".parse().unwrap());
        assert_eq!(sse_headers(&headers).unwrap_err().code(), &S3ErrorCode::InvalidArgument);
    }
}
