//! The audit file: every event on the `coffer::audit` tracing target (admin actions, and each use of a KMS key on
//! the object path) as one JSON line, in a file rotated by size and fsynced in batches.
//!
//! Events are collected by [`AuditLayer`], a `tracing` layer installed with the logger before the configuration is
//! read; [`AuditFile::open`] later attaches the file. Lines go through a channel to one writer thread, so a request
//! never waits on the disk: the thread writes each line at once and fsyncs at most [`SYNC_INTERVAL`] later (or
//! every [`SYNC_LINES`] lines), and before the server exits. The events carry identifiers, outcomes and error codes
//! only — the code that emits them never passes a key, token or object byte.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// The tracing target of audit events (the admin API's and the object path's).
pub const AUDIT_TARGET: &str = coffer_admin_api::AUDIT_TARGET;
/// Longest wait between a line and its fsync.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Lines written before an fsync is due whatever the time.
const SYNC_LINES: usize = 256;
/// Lines waiting for the writer before new ones are dropped (with an error in the log).
const QUEUE_LINES: usize = 65_536;

/// Where audit events go once a file is attached; shared by the layer and the [`AuditFile`].
#[derive(Clone, Default)]
pub struct AuditLayer {
    sender: Arc<OnceLock<Mutex<Option<SyncSender<String>>>>>,
}

/// The open audit file: its writer thread, stopped (after a final fsync) by [`AuditFile::close`].
pub struct AuditFile {
    layer: AuditLayer,
    writer: Option<JoinHandle<()>>,
}

impl AuditLayer {
    pub fn new() -> Self {
        Self::default()
    }

    fn send(&self, line: String) {
        let Some(sender) = self.sender.get() else { return };
        if let Some(sender) = sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
            // A full queue means the disk cannot keep up: drop rather than stall requests.
            if sender.try_send(line).is_err() {
                tracing::error!("the audit file cannot keep up: an audit line was dropped");
            }
        }
    }
}

impl AuditFile {
    /// Opens (appending; created 0600) `path` and sends the layer's events to it from now on, rotating to
    /// `PATH.1` when it grows past `max_bytes`.
    pub fn open(layer: &AuditLayer, path: &Path, max_bytes: u64) -> io::Result<AuditFile> {
        let file = open_append(path)?;
        let (sender, receiver) = mpsc::sync_channel(QUEUE_LINES);
        let path = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("coffer-audit".into())
            .spawn(move || write_lines(&receiver, &path, file, max_bytes))?;
        if layer.sender.set(Mutex::new(Some(sender))).is_err() {
            return Err(io::Error::other("the audit file is already open"));
        }
        Ok(AuditFile { layer: layer.clone(), writer: Some(writer) })
    }

    /// Stops taking events, writes and fsyncs what is queued.
    pub fn close(mut self) {
        if let Some(sender) = self.layer.sender.get() {
            sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Whether an event is an audit event (the layer's static filter, so other callsites never reach it).
pub fn is_audit_event(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target() == AUDIT_TARGET
}

impl<S: Subscriber> Layer<S> for AuditLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if self.sender.get().is_none() {
            return;
        }
        let mut fields = Map::new();
        fields.insert("time".into(), Value::String(now()));
        event.record(&mut JsonFields(&mut fields));
        fields.remove("message");
        self.send(Value::Object(fields).to_string());
    }
}

/// Collects an event's fields as JSON values.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

/// The writer thread: one line at a time, fsynced in batches, rotated by size; ends when every sender is gone.
fn write_lines(receiver: &Receiver<String>, path: &Path, file: File, max_bytes: u64) {
    let mut size = file.metadata().map_or(0, |metadata| metadata.len());
    let mut out = BufWriter::new(file);
    let mut unsynced = 0usize;
    let mut oldest_unsynced = Instant::now();
    loop {
        let received = receiver.recv_timeout(SYNC_INTERVAL);
        if let Ok(line) = &received {
            if let Err(e) = writeln!(out, "{line}") {
                tracing::error!(error = %e, path = %path.display(), "cannot write the audit file");
            }
            size += line.len() as u64 + 1;
            if unsynced == 0 {
                oldest_unsynced = Instant::now();
            }
            unsynced += 1;
        }
        let closed = matches!(received, Err(RecvTimeoutError::Disconnected));
        if unsynced > 0 && (closed || unsynced >= SYNC_LINES || oldest_unsynced.elapsed() >= SYNC_INTERVAL) {
            sync(&mut out, path);
            unsynced = 0;
        }
        if size > max_bytes {
            sync(&mut out, path);
            unsynced = 0;
            match rotate(path) {
                Ok(file) => {
                    out = BufWriter::new(file);
                    size = 0;
                }
                Err(e) => tracing::error!(error = %e, path = %path.display(), "cannot rotate the audit file"),
            }
        }
        if closed {
            return;
        }
    }
}

fn sync(out: &mut BufWriter<File>, path: &Path) {
    if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_data()) {
        tracing::error!(error = %e, path = %path.display(), "cannot fsync the audit file");
    }
}

/// `PATH` becomes `PATH.1` (replacing an older one) and a new `PATH` is opened.
fn rotate(path: &Path) -> io::Result<File> {
    let mut rotated: PathBuf = path.to_owned();
    rotated.as_mut_os_string().push(".1");
    std::fs::rename(path, &rotated)?;
    open_append(path)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).expect("a UTC timestamp always formats as RFC 3339")
}

pub use coffer_admin_api::RequestId;

/// Who made an object request, as audit lines name them.
#[derive(Clone, Debug)]
pub struct Requester {
    pub request_id: String,
    /// The signing access key, or `anonymous`.
    pub access_key: String,
}

impl Requester {
    pub fn of<T>(req: &s3s::S3Request<T>) -> Self {
        Self {
            request_id: req.extensions.get::<RequestId>().map_or_else(|| "-".to_owned(), |id| id.0.clone()),
            access_key: req.credentials.as_ref().map_or_else(|| "anonymous".to_owned(), |c| c.access_key.clone()),
        }
    }
}

/// A KMS key use on the object path: `kms:GenerateDataKey` (a write sealed under a bucket key) or `kms:Decrypt` (a
/// read or an upload part opening one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    GenerateDataKey,
    Decrypt,
}

impl KeyAction {
    /// The action's name in audit lines and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GenerateDataKey => "kms:GenerateDataKey",
            Self::Decrypt => "kms:Decrypt",
        }
    }
}

/// Writes the audit line of one key use (in the log at debug level, in the audit file always). `origin` is where the
/// bucket key came from (unknown when a write failed before it had one: then `named` is the key the request named, if
/// any); `error` is the S3 error code on failure.
pub fn key_use(
    who: &Requester,
    action: KeyAction,
    bucket: &str,
    key: &str,
    origin: Option<&coffer_kms::KeyOrigin>,
    named: Option<&str>,
    error: Option<&str>,
) {
    let (store, key_id, key_version) = match origin {
        Some(origin) => (origin.store.as_str(), origin.key_id.as_str(), u64::from(origin.version)),
        None => ("-", named.unwrap_or("-"), 0),
    };
    let outcome = if error.is_some() { "failed" } else { "success" };
    // Debug level: one per encrypted request would double the log at `info`; the audit file takes every level.
    tracing::debug!(
        target: AUDIT_TARGET,
        request_id = %who.request_id,
        access_key = %who.access_key,
        action = action.as_str(),
        bucket,
        key,
        store,
        key_id,
        key_version,
        outcome,
        error = error.unwrap_or("-"),
        "key use"
    );
}
