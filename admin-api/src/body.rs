//! Request bodies: the configure document (turned into a [`KmsConfig`]) and the create-key body.
//!
//! A configure body is either the flat RustFS-style document or the document `GET config` (`coffer admin kms config
//! --json`) prints, with a `backend` object; secrets it shows as `***` keep their current values (see
//! [`KmsConfig::restore_redacted`], applied by the handler). Secrets can be given as files (`master_key_file`,
//! `{"TokenFile":{"path":…}}`, AppRole `secret_id_file`) instead of values.
//!
//! Bodies are read field by field from a JSON object so that every problem names its field: an unknown field, a
//! value of the wrong type, a missing required field or a field that does not apply to the chosen backend. Error
//! messages quote field names only, never submitted values, because values may be tokens or master keys.

use std::path::PathBuf;

use coffer_kms::{BackendConfig, KmsConfig, LocalConfig, Secret, VaultAuth, VaultConfig};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::api::{RewrapSpec, ScrubSpec};
use crate::error::ApiError;

/// Vault's own conventions for where the transit engine and AppRole auth are mounted when nobody says otherwise.
const VAULT_TRANSIT_MOUNT: &str = "transit";
const VAULT_APPROLE_MOUNT: &str = "approle";

const CONFIG_FIELDS: &[&str] = &[
    "backend_type",
    "key_dir",
    "master_key",
    "master_key_file",
    "address",
    "auth_method",
    "namespace",
    "mount_path",
    "skip_tls_verify",
    "ca_cert_path",
    "client_cert_path",
    "client_key_path",
    "default_key_id",
    "timeout_seconds",
    "retry_attempts",
    "enable_cache",
    "max_cached_keys",
    "cache_ttl_seconds",
];
const TOKEN_FIELDS: &[&str] = &["token"];
const TOKEN_FILE_FIELDS: &[&str] = &["path"];
const APPROLE_FIELDS: &[&str] = &["role_id", "secret_id", "secret_id_file"];
const CREATE_KEY_FIELDS: &[&str] = &["key_id", "description", "expires_at"];
const EXPIRY_FIELDS: &[&str] = &["expires_at"];
const MIN_DECRYPTION_VERSION_FIELDS: &[&str] = &["min_decryption_version"];
const BUCKET_KEY_FIELDS: &[&str] = &["key_id"];
const LOCAL_ONLY_FIELDS: [&str; 3] = ["key_dir", "master_key", "master_key_file"];
const VAULT_ONLY_FIELDS: [&str; 8] = [
    "address",
    "auth_method",
    "namespace",
    "mount_path",
    "skip_tls_verify",
    "ca_cert_path",
    "client_cert_path",
    "client_key_path",
];

/// A configure/reconfigure body, by its form.
#[derive(Debug)]
pub enum ConfigBody {
    /// RustFS's flat document: the default store and the global settings.
    Flat(KmsConfig),
    /// The document `GET config` shows: the whole configuration.
    Document(KmsConfig),
}

/// Parses a configure/reconfigure body, or says which field is wrong.
pub fn parse_kms_config(body: &[u8]) -> Result<ConfigBody, ApiError> {
    if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) {
        if object.get("backend").or_else(|| object.get("stores")).is_some_and(Value::is_object) {
            return parse_document(Value::Object(object), "the configuration document `GET config` shows")
                .map(ConfigBody::Document);
        }
    }
    parse_flat_config(body).map(ConfigBody::Flat)
}

/// A store's backend, as `GET stores/{store}` shows it under `config` (`{"type":"vault-transit",…}`).
pub fn parse_store(body: &[u8]) -> Result<BackendConfig, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("MalformedJSON", "the request body must be a JSON object"))?;
    parse_document(value, "a store's configuration (`{\"type\":\"local\",…}` or `{\"type\":\"vault-transit\",…}`)")
}

/// `{"key_id":"store/key"}` (or a key of the default store).
pub fn parse_bucket_key(body: &[u8]) -> Result<String, ApiError> {
    let mut fields = Fields::from_body(body, BUCKET_KEY_FIELDS)?;
    let key_id = fields.required::<String>("key_id", "a string (`store/key`, or `key` in the default store)")?;
    fields.finish()?;
    Ok(key_id)
}

fn parse_flat_config(body: &[u8]) -> Result<KmsConfig, ApiError> {
    let mut fields = Fields::from_body(body, CONFIG_FIELDS)?;
    let backend_type = fields.required::<String>("backend_type", "a string")?;
    let is_vault = match backend_type.as_str() {
        "local" | "Local" => false,
        "vault-transit" | "VaultTransit" | "vault" => true,
        _ => {
            return Err(ApiError::invalid_field(
                "InvalidField",
                "backend_type",
                "field `backend_type` must be one of: local, vault-transit (also accepted: Local, VaultTransit, vault)",
            ));
        }
    };
    let foreign_fields = if is_vault { LOCAL_ONLY_FIELDS.as_slice() } else { VAULT_ONLY_FIELDS.as_slice() };
    for field in foreign_fields {
        if fields.take(field).is_some() {
            let backend = if is_vault { "vault-transit" } else { "local" };
            return Err(ApiError::invalid_field(
                "InvalidField",
                *field,
                format!("field `{field}` does not apply to backend_type {backend}"),
            ));
        }
    }
    let backend = if is_vault { vault_backend(&mut fields)? } else { local_backend(&mut fields)? };

    let mut config = KmsConfig::new(backend);
    if let Some(default_key_id) = fields.optional("default_key_id", "a string")? {
        config.default_key_id = default_key_id;
    }
    if let Some(timeout_seconds) = fields.optional("timeout_seconds", "a non-negative integer")? {
        config.timeout_seconds = timeout_seconds;
    }
    if let Some(retry_attempts) = fields.optional("retry_attempts", "a non-negative integer")? {
        config.retry_attempts = retry_attempts;
    }
    if let Some(enabled) = fields.optional("enable_cache", "a boolean")? {
        config.cache.enabled = enabled;
    }
    if let Some(max_cached_keys) = fields.optional("max_cached_keys", "a non-negative integer")? {
        config.cache.max_cached_keys = max_cached_keys;
    }
    if let Some(ttl_seconds) = fields.optional("cache_ttl_seconds", "a non-negative integer")? {
        config.cache.ttl_seconds = ttl_seconds;
    }
    fields.finish()?;
    Ok(config)
}

/// A document in the form Coffer shows it. Serde's messages name unknown and missing fields, but may quote a value
/// of the wrong type (a secret, perhaps): only the former are passed on.
fn parse_document<T: DeserializeOwned>(document: Value, form: &str) -> Result<T, ApiError> {
    serde_json::from_value(document).map_err(|err| {
        let message = err.to_string();
        let detail = if message.starts_with("unknown field") || message.starts_with("missing field") {
            format!(": {message}")
        } else {
            String::new()
        };
        ApiError::bad_request("InvalidField", format!("the body does not match {form}{detail}"))
    })
}

fn local_backend(fields: &mut Fields) -> Result<BackendConfig, ApiError> {
    Ok(BackendConfig::Local(LocalConfig {
        key_dir: fields.optional::<PathBuf>("key_dir", "a string (a directory path)")?,
        master_key: fields.optional::<String>("master_key", "a string")?.map(Secret::new),
        master_key_file: fields.optional::<PathBuf>("master_key_file", "a string (a file path)")?,
    }))
}

fn vault_backend(fields: &mut Fields) -> Result<BackendConfig, ApiError> {
    let address = fields.required_for_vault::<String>("address", "a string (an http:// or https:// URL)")?;
    let auth = match fields.take("auth_method") {
        Some(value) => vault_auth(value)?,
        None => return Err(missing_for_vault("auth_method")),
    };
    Ok(BackendConfig::VaultTransit(VaultConfig {
        address,
        mount_path: fields.optional("mount_path", "a string")?.unwrap_or_else(|| VAULT_TRANSIT_MOUNT.to_owned()),
        namespace: fields.optional("namespace", "a string")?,
        auth,
        ca_cert_path: fields.optional("ca_cert_path", "a string (a file path)")?,
        client_cert_path: fields.optional("client_cert_path", "a string (a file path)")?,
        client_key_path: fields.optional("client_key_path", "a string (a file path)")?,
        skip_tls_verify: fields.optional("skip_tls_verify", "a boolean")?.unwrap_or(false),
    }))
}

/// `{"Token":{"token":…}}`, `{"TokenFile":{"path":…}}` or `{"AppRole":{"role_id":…,"secret_id":…}}` (or
/// `"secret_id_file"` instead of `"secret_id"`).
fn vault_auth(value: Value) -> Result<VaultAuth, ApiError> {
    const SHAPE: &str = r#"field `auth_method` must be {"Token":{"token":"…"}}, {"TokenFile":{"path":"…"}} or {"AppRole":{"role_id":"…","secret_id":"…"}} (or "secret_id_file" instead of "secret_id")"#;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid_field("InvalidField", "auth_method", SHAPE));
    };
    let mut methods = object.into_iter();
    let (Some((method, settings)), None) = (methods.next(), methods.next()) else {
        return Err(ApiError::invalid_field("InvalidField", "auth_method", SHAPE));
    };
    let auth = match method.as_str() {
        "Token" => {
            let mut fields = Fields::from_value(settings, "auth_method.Token.", TOKEN_FIELDS)?;
            let token = fields.required::<String>("token", "a string")?;
            fields.finish()?;
            VaultAuth::Token { token: Secret::new(token) }
        }
        "TokenFile" => {
            let mut fields = Fields::from_value(settings, "auth_method.TokenFile.", TOKEN_FILE_FIELDS)?;
            let path = fields.required::<PathBuf>("path", "a string (a file path)")?;
            fields.finish()?;
            VaultAuth::TokenFile { path }
        }
        "AppRole" => {
            let mut fields = Fields::from_value(settings, "auth_method.AppRole.", APPROLE_FIELDS)?;
            let role_id = fields.required::<String>("role_id", "a string")?;
            let secret_id = fields.optional::<String>("secret_id", "a string")?.map(Secret::new);
            let secret_id_file = fields.optional::<PathBuf>("secret_id_file", "a string (a file path)")?;
            if secret_id.is_some() == secret_id_file.is_some() {
                return Err(ApiError::invalid_field(
                    if secret_id.is_some() { "InvalidField" } else { "MissingField" },
                    "auth_method.AppRole.secret_id",
                    "exactly one of `auth_method.AppRole.secret_id` and `auth_method.AppRole.secret_id_file` is \
                     required",
                ));
            }
            fields.finish()?;
            VaultAuth::AppRole { role_id, secret_id, secret_id_file, mount: VAULT_APPROLE_MOUNT.to_owned() }
        }
        _ => return Err(ApiError::invalid_field("InvalidField", format!("auth_method.{method}"), SHAPE)),
    };
    Ok(auth)
}

fn missing_for_vault(field: &str) -> ApiError {
    ApiError::invalid_field(
        "MissingField",
        field,
        format!("field `{field}` is required for backend_type vault-transit"),
    )
}

/// A key to create: an explicit id or none (the KMS generates one), an optional description and expiration time.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CreateKeyRequest {
    pub key_id: Option<String>,
    pub description: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

/// Parses the optional `{"key_id":…,"description":…}` body of `POST keys`; an empty body asks for a generated id.
pub fn parse_create_key(body: &[u8]) -> Result<CreateKeyRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateKeyRequest::default());
    }
    let mut fields = Fields::from_body(body, CREATE_KEY_FIELDS)?;
    let request = CreateKeyRequest {
        key_id: fields.optional("key_id", "a string")?,
        description: fields.optional("description", "a string")?,
        expires_at: expires_at(&mut fields)?,
    };
    fields.finish()?;
    Ok(request)
}

/// `{"expires_at":"2027-01-01T00:00:00Z"}`, or `null` to clear the expiration.
pub fn parse_expiry(body: &[u8]) -> Result<Option<OffsetDateTime>, ApiError> {
    let mut fields = Fields::from_body(body, EXPIRY_FIELDS)?;
    let expires_at = expires_at(&mut fields)?;
    fields.finish()?;
    Ok(expires_at)
}

/// `{"min_decryption_version":2}`; the KMS checks it against the key's versions.
pub fn parse_min_decryption_version(body: &[u8]) -> Result<u32, ApiError> {
    let mut fields = Fields::from_body(body, MIN_DECRYPTION_VERSION_FIELDS)?;
    let version = fields.required("min_decryption_version", "a key version number (a positive integer)")?;
    fields.finish()?;
    Ok(version)
}

fn expires_at(fields: &mut Fields) -> Result<Option<OffsetDateTime>, ApiError> {
    let Some(text) = fields.optional::<String>("expires_at", "an RFC 3339 time (2027-01-01T00:00:00Z)")? else {
        return Ok(None);
    };
    OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).map(Some).map_err(|_| {
        ApiError::invalid_field(
            "InvalidField",
            "expires_at",
            "field `expires_at` must be an RFC 3339 time (2027-01-01T00:00:00Z)",
        )
    })
}

/// The fields of one JSON object, consumed as they are read; whatever is left at the end is unknown.
struct Fields {
    object: Map<String, Value>,
    /// Prefix naming where this object sits in the body (`auth_method.Token.`), for messages.
    path: &'static str,
    known: &'static [&'static str],
}

impl Fields {
    fn from_body(body: &[u8], known: &'static [&'static str]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("MissingBody", "the request body must be a JSON object"));
        }
        let value: Value = serde_json::from_slice(body).map_err(|err| {
            ApiError::bad_request("MalformedJSON", format!("the request body is not valid JSON: {err}"))
        })?;
        Self::from_value(value, "", known)
    }

    fn from_value(value: Value, path: &'static str, known: &'static [&'static str]) -> Result<Self, ApiError> {
        match value {
            Value::Object(object) => Ok(Self { object, path, known }),
            _ if path.is_empty() => {
                Err(ApiError::bad_request("MalformedJSON", "the request body must be a JSON object"))
            }
            _ => {
                let field = path.trim_end_matches('.');
                Err(ApiError::invalid_field("InvalidField", field, format!("field `{field}` must be a JSON object")))
            }
        }
    }

    /// Removes a field; JSON `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.object.remove(name).filter(|value| !value.is_null())
    }

    fn optional<T: DeserializeOwned>(&mut self, name: &'static str, expected: &str) -> Result<Option<T>, ApiError> {
        let path = self.path;
        self.take(name)
            .map(|value| {
                // The deserializer's own message may quote the value (a secret, perhaps): say what was expected instead.
                serde_json::from_value(value).map_err(|_| {
                    ApiError::invalid_field(
                        "InvalidField",
                        format!("{path}{name}"),
                        format!("field `{path}{name}` must be {expected}"),
                    )
                })
            })
            .transpose()
    }

    fn required<T: DeserializeOwned>(&mut self, name: &'static str, expected: &str) -> Result<T, ApiError> {
        let path = self.path;
        self.optional(name, expected)?.ok_or_else(|| {
            ApiError::invalid_field(
                "MissingField",
                format!("{path}{name}"),
                format!("field `{path}{name}` is required"),
            )
        })
    }

    fn required_for_vault<T: DeserializeOwned>(&mut self, name: &'static str, expected: &str) -> Result<T, ApiError> {
        self.optional(name, expected)?.ok_or_else(|| missing_for_vault(name))
    }

    /// Fails on the first field nobody asked for.
    fn finish(self) -> Result<(), ApiError> {
        match self.object.keys().next() {
            None => Ok(()),
            Some(unknown) => {
                let field = format!("{}{unknown}", self.path);
                let message = format!("unknown field `{field}`; accepted fields: {}", self.known.join(", "));
                Err(ApiError::invalid_field("UnknownField", field, message))
            }
        }
    }
}

/// A rewrap job's spec (docs/rewrap.md); an error names the field (`from.mode`) in `field` and the message.
pub(crate) fn parse_rewrap(body: &[u8]) -> Result<RewrapSpec, ApiError> {
    parse_job_spec(body)
}

/// A scrub job's spec; errors as [`parse_rewrap`]'s.
pub(crate) fn parse_scrub(body: &[u8]) -> Result<ScrubSpec, ApiError> {
    parse_job_spec(body)
}

/// A job's spec; an empty body is `{}`. Specs hold no secrets, so serde's message (which may quote a value) can be
/// shown.
fn parse_job_spec<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "MalformedJSON"
        } else if inner.to_string().starts_with("unknown field") {
            "UnknownField"
        } else {
            "InvalidField"
        };
        ApiError::invalid_field(code, field.clone(), format!("{field}: {inner}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<KmsConfig, ApiError> {
        parse_kms_config(json.as_bytes()).map(|(ConfigBody::Flat(config) | ConfigBody::Document(config))| config)
    }

    fn field_error(json: &str) -> (String, String, String) {
        let err = parse(json).expect_err("the body must be refused");
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        (err.code.to_owned(), err.field.unwrap_or_default(), err.message)
    }

    #[test]
    fn local_body_becomes_a_local_config() {
        let config = parse(
            r#"{"backend_type":"local","key_dir":"/var/lib/keys","master_key":"m4st3r","default_key_id":"app",
                "timeout_seconds":5,"retry_attempts":1,"enable_cache":false,"max_cached_keys":10,"cache_ttl_seconds":60}"#,
        )
        .unwrap();
        let BackendConfig::Local(local) = config.default_backend() else { panic!("not local: {config:?}") };
        assert_eq!(local.key_dir.as_deref(), Some(std::path::Path::new("/var/lib/keys")));
        assert_eq!(local.master_key.as_ref().map(Secret::expose), Some("m4st3r"));
        assert_eq!(config.default_key_id, "app");
        assert_eq!((config.timeout_seconds, config.retry_attempts), (5, 1));
        assert!(!config.cache.enabled);
        assert_eq!((config.cache.max_cached_keys, config.cache.ttl_seconds), (10, 60));
    }

    #[test]
    fn backend_type_spellings_from_rustfs_are_accepted() {
        for spelling in ["local", "Local"] {
            let config = parse(&format!(r#"{{"backend_type":"{spelling}","key_dir":"/k"}}"#)).unwrap();
            assert!(matches!(config.default_backend(), BackendConfig::Local(_)));
        }
        for spelling in ["vault-transit", "VaultTransit", "vault"] {
            let config = parse(&format!(
                r#"{{"backend_type":"{spelling}","address":"http://127.0.0.1:8200","auth_method":{{"Token":{{"token":"t"}}}}}}"#
            ))
            .unwrap();
            assert!(matches!(config.default_backend(), BackendConfig::VaultTransit(_)));
        }
    }

    #[test]
    fn vault_body_with_approle_becomes_a_vault_config() {
        let config = parse(
            r#"{"backend_type":"vault-transit","address":"https://vault:8200","namespace":"team",
                "mount_path":"kms","skip_tls_verify":true,"ca_cert_path":"/ca.pem",
                "auth_method":{"AppRole":{"role_id":"r-1","secret_id":"s-1"}}}"#,
        )
        .unwrap();
        let BackendConfig::VaultTransit(vault) = config.default_backend() else { panic!("not vault: {config:?}") };
        assert_eq!(vault.address, "https://vault:8200");
        assert_eq!(vault.mount_path, "kms");
        assert_eq!(vault.namespace.as_deref(), Some("team"));
        assert!(vault.skip_tls_verify);
        let VaultAuth::AppRole { role_id, secret_id, .. } = &vault.auth else { panic!("not approle") };
        assert_eq!(role_id, "r-1");
        assert_eq!(secret_id.as_ref().map(Secret::expose), Some("s-1"));
    }

    #[test]
    fn vault_mount_defaults_to_transit() {
        let config =
            parse(r#"{"backend_type":"vault","address":"http://v:8200","auth_method":{"Token":{"token":"t"}}}"#)
                .unwrap();
        let BackendConfig::VaultTransit(vault) = config.default_backend() else { panic!("not vault") };
        assert_eq!(vault.mount_path, "transit");
    }

    #[test]
    fn unknown_fields_are_named() {
        let (code, field, message) = field_error(r#"{"backend_type":"local","key_dir":"/k","cache_size":5}"#);
        assert_eq!((code.as_str(), field.as_str()), ("UnknownField", "cache_size"));
        assert!(message.contains("`cache_size`") && message.contains("key_dir"), "{message}");

        let (_, field, _) = field_error(
            r#"{"backend_type":"vault","address":"http://v:8200","auth_method":{"Token":{"token":"t","ttl":1}}}"#,
        );
        assert_eq!(field, "auth_method.Token.ttl");
    }

    #[test]
    fn wrong_types_are_named_without_echoing_the_value() {
        let (code, field, message) = field_error(r#"{"backend_type":"local","key_dir":"/k","timeout_seconds":"soon"}"#);
        assert_eq!((code.as_str(), field.as_str()), ("InvalidField", "timeout_seconds"));
        assert!(!message.contains("soon"), "{message}");

        let (_, field, message) = field_error(
            r#"{"backend_type":"vault","address":"http://v:8200","auth_method":{"Token":{"token":98765}}}"#,
        );
        assert_eq!(field, "auth_method.Token.token");
        assert!(!message.contains("98765"), "{message}");

        let (_, field, message) = field_error(r#"{"backend_type":"local","key_dir":"/k","master_key":["hunter2"]}"#);
        assert_eq!(field, "master_key");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn missing_required_fields_are_named() {
        let (code, field, _) = field_error(r#"{"key_dir":"/k"}"#);
        assert_eq!((code.as_str(), field.as_str()), ("MissingField", "backend_type"));
        let (_, field, _) = field_error(r#"{"backend_type":"vault","auth_method":{"Token":{"token":"t"}}}"#);
        assert_eq!(field, "address");
        let (_, field, _) = field_error(r#"{"backend_type":"vault","address":"http://v:8200"}"#);
        assert_eq!(field, "auth_method");
        let (_, field, _) = field_error(
            r#"{"backend_type":"vault","address":"http://v:8200","auth_method":{"AppRole":{"role_id":"r"}}}"#,
        );
        assert_eq!(field, "auth_method.AppRole.secret_id");
    }

    #[test]
    fn fields_of_the_other_backend_are_refused() {
        let (_, field, message) = field_error(r#"{"backend_type":"local","key_dir":"/k","address":"http://v:8200"}"#);
        assert_eq!(field, "address");
        assert!(message.contains("does not apply"), "{message}");
        let (_, field, _) = field_error(
            r#"{"backend_type":"vault","address":"http://v","auth_method":{"Token":{"token":"t"}},"master_key":"m"}"#,
        );
        assert_eq!(field, "master_key");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in ["", "  ", "not json", "[1,2]", r#"{"backend_type":"local""#] {
            let err = parse(body).expect_err(body);
            assert_eq!(err.status, http::StatusCode::BAD_REQUEST, "{body}");
        }
        let (_, field, _) = field_error(r#"{"backend_type":"sqlite"}"#);
        assert_eq!(field, "backend_type");
        let (_, field, _) =
            field_error(r#"{"backend_type":"vault","address":"http://v","auth_method":{"Kerberos":{}}}"#);
        assert_eq!(field, "auth_method.Kerberos");
        let (_, field, _) = field_error(r#"{"backend_type":"vault","address":"http://v","auth_method":"token"}"#);
        assert_eq!(field, "auth_method");
    }

    #[test]
    fn nulls_count_as_absent() {
        let config = parse(r#"{"backend_type":"local","key_dir":"/k","master_key":null,"address":null}"#).unwrap();
        let BackendConfig::Local(local) = config.default_backend().clone() else { panic!("not local") };
        assert!(local.master_key.is_none());
    }

    #[test]
    fn create_key_body_is_optional() {
        assert_eq!(parse_create_key(b"").unwrap(), CreateKeyRequest::default());
        assert_eq!(
            parse_create_key(br#"{"key_id":"app","description":"for app"}"#).unwrap(),
            CreateKeyRequest { key_id: Some("app".into()), description: Some("for app".into()), expires_at: None }
        );
        assert_eq!(parse_create_key(br#"{"name":"app"}"#).unwrap_err().field.as_deref(), Some("name"));
    }

    #[test]
    fn a_minimum_decryption_version_is_a_positive_integer() {
        assert_eq!(parse_min_decryption_version(br#"{"min_decryption_version":2}"#).unwrap(), 2);
        for (body, code) in [
            (&br#"{"min_decryption_version":-1}"#[..], "InvalidField"),
            (br#"{"min_decryption_version":"2"}"#, "InvalidField"),
            (br#"{}"#, "MissingField"),
            (br#"{"min_decryption_version":2,"version":2}"#, "UnknownField"),
        ] {
            assert_eq!(parse_min_decryption_version(body).unwrap_err().code, code, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_document_config_shows_is_accepted_back() {
        let shown = KmsConfig::new(BackendConfig::VaultTransit(VaultConfig {
            address: "http://127.0.0.1:8200".into(),
            mount_path: "kms".into(),
            namespace: Some("team".into()),
            auth: VaultAuth::Token { token: Secret::new("s.secret") },
            ca_cert_path: Some("/tls/ca.pem".into()),
            client_cert_path: None,
            client_key_path: None,
            skip_tls_verify: false,
        }))
        .redacted();
        let config = parse(&shown.to_string()).unwrap();
        let BackendConfig::VaultTransit(vault) = config.default_backend() else { panic!("not vault") };
        assert_eq!((vault.mount_path.as_str(), vault.namespace.as_deref()), ("kms", Some("team")));
        assert!(matches!(&vault.auth, VaultAuth::Token { token } if token.expose() == "***"));

        let err = parse(r#"{"backend":{"type":"local","key_dir":"/k"},"timeout_seconds":"hunter2"}"#).unwrap_err();
        assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        let err = parse(r#"{"backend":{"type":"local","key_dir":"/k"},"cache_size":1}"#).unwrap_err();
        assert!(err.message.contains("cache_size"), "{}", err.message);
    }

    #[test]
    fn secrets_can_be_given_as_files() {
        let config =
            parse(r#"{"backend_type":"local","key_dir":"/k","master_key_file":"/etc/coffer/master"}"#).unwrap();
        let BackendConfig::Local(local) = config.default_backend() else { panic!("not local") };
        assert_eq!(local.master_key_file.as_deref(), Some(std::path::Path::new("/etc/coffer/master")));

        let config = parse(
            r#"{"backend_type":"vault","address":"http://v:8200","auth_method":{"TokenFile":{"path":"/run/token"}}}"#,
        )
        .unwrap();
        let BackendConfig::VaultTransit(vault) = config.default_backend() else { panic!("not vault") };
        assert!(matches!(&vault.auth, VaultAuth::TokenFile { path } if path.as_os_str() == "/run/token"));

        let config = parse(
            r#"{"backend_type":"vault","address":"http://v:8200",
                "auth_method":{"AppRole":{"role_id":"r","secret_id_file":"/run/secret-id"}}}"#,
        )
        .unwrap();
        let BackendConfig::VaultTransit(vault) = config.default_backend() else { panic!("not vault") };
        assert!(matches!(&vault.auth, VaultAuth::AppRole { secret_id: None, secret_id_file: Some(_), .. }));
        let (_, field, _) = field_error(
            r#"{"backend_type":"vault","address":"http://v","auth_method":{"AppRole":{"role_id":"r","secret_id":"s","secret_id_file":"/f"}}}"#,
        );
        assert_eq!(field, "auth_method.AppRole.secret_id");
    }

    #[test]
    fn scrub_specs_take_a_bucket_a_prefix_and_a_pace_only() {
        assert_eq!(parse_scrub(b" ").unwrap(), ScrubSpec::default());
        let spec = parse_scrub(br#"{"bucket": "b", "prefix": "logs/", "objects_per_second": 5}"#).unwrap();
        assert_eq!(spec, ScrubSpec { bucket: Some("b".into()), prefix: Some("logs/".into()), objects_per_second: 5 });
        let err = parse_scrub(br#"{"buckets": ["b"]}"#).unwrap_err();
        assert_eq!((err.code, err.field.as_deref()), ("UnknownField", Some("buckets")));
        let err = parse_scrub(br#"{"objects_per_second": -1}"#).unwrap_err();
        assert_eq!((err.code, err.field.as_deref()), ("InvalidField", Some("objects_per_second")));
    }

    #[test]
    fn rewrap_specs_name_what_is_wrong() {
        let spec = parse_rewrap(b"").unwrap();
        assert_eq!((spec.concurrency, spec.objects_per_second, spec.dry_run), (4, 0, false));
        let spec = parse_rewrap(br#"{"from": {"key": "k", "versions_below": 2}, "to": {"mode": "sse-kms"}}"#).unwrap();
        assert_eq!(spec.from.versions_below, Some(2));
        for (body, code, field) in [
            (r#"{"form": {}}"#, "UnknownField", "form"),
            (r#"{"from": {"bucket": "b"}}"#, "UnknownField", "from.bucket"),
            (r#"{"to": {"mode": "sse-c"}}"#, "InvalidField", "to.mode"),
            (r#"{"from": {"versions_below": "two"}}"#, "InvalidField", "from.versions_below"),
            (r#"{"concurrency": -1}"#, "InvalidField", "concurrency"),
            (r#"{"concurrency": "#, "MalformedJSON", "concurrency"),
        ] {
            let err = parse_rewrap(body.as_bytes()).unwrap_err();
            assert_eq!((err.status, err.code), (http::StatusCode::BAD_REQUEST, code), "{body}");
            assert_eq!(err.field.as_deref(), Some(field), "{body}: {}", err.message);
            assert!(err.message.starts_with(&format!("{field}: ")), "{body}: {}", err.message);
        }
    }
}
