//! Stored bytes under opaque names in a bucket of any S3-compatible cluster (SeaweedFS, Ceph RGW, Garage, MinIO,
//! AWS): the remote data engine of the SQL metadata engine, through OpenDAL's S3 service.
//!
//! Every data file is the object `<prefix>data-<id>`, `<id>` 128 random bits in hex: as in the local directory
//! (`data_dir.rs`), names say nothing of buckets or keys, and what an object holds is what Coffer stored (the
//! ciphertext of encrypted objects). A file is uploaded — in [`UPLOAD_CHUNK`] multipart pieces when it is larger,
//! so memory stays bounded — before the record naming it commits.
//!
//! Reads ask for just the range they need: one ranged GET per read, streamed and cut into the chunks the caller
//! maps (see `reader.rs`). One GET per range rather than one per chunk: a request round trip (and, on AWS, a
//! request charge) per MiB would cost more than the body stream's own flow control, which already keeps memory
//! bounded.
//!
//! An open file handle pins a local file until the reader is done; nothing pins a remote object, and other nodes
//! sharing the metadata database may be reading it. So a file no record names any more is not deleted at once: the
//! transaction that stops naming it records it as released (`released_data_files`), and garbage collection
//! deletes it once it was released longer ago than the grace period. A read still running after that finds the
//! object gone and fails with [`std::io::ErrorKind::NotFound`]: a read error, never other data.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use opendal::layers::RetryLayer;
use opendal::{services, ErrorKind, Operator};
use tokio::io::AsyncReadExt;

use crate::fsio::unique_id;
use crate::names::is_data_file_name;
use crate::reader::READ_CHUNK;
use crate::staging::{Staged, StagedFile};

/// Files larger than this are uploaded in multipart pieces of this size (S3's minimum piece is 5 MiB); it bounds
/// the memory of one upload.
const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;

/// How long a released data file stays readable when nothing else is configured: far longer than any read of one
/// object should take.
pub const DEFAULT_RELEASE_GRACE: Duration = Duration::from_secs(15 * 60);

/// Where the SQL metadata engine keeps stored bytes.
#[derive(Debug, Clone, Default)]
pub enum DataLocation {
    /// The data directory (`DATA/data/`).
    #[default]
    Directory,
    /// A bucket on an S3-compatible endpoint.
    S3(S3Location),
}

impl DataLocation {
    /// What the metadata database records of the location: a node started with another one is refused. The
    /// endpoint is left out, as one cluster may be reached under several names.
    pub(crate) fn identity(&self) -> String {
        match self {
            DataLocation::Directory => "directory".to_owned(),
            DataLocation::S3(s3) => format!("s3://{}/{}", s3.bucket, s3.prefix()),
        }
    }
}

/// A bucket (and a prefix in it) on an S3-compatible endpoint, with the credentials to use it.
#[derive(Debug, Clone)]
pub struct S3Location {
    /// `http(s)://host:port` of the S3 API.
    pub endpoint: String,
    pub bucket: String,
    /// Names start with it (a `/` is added when it does not end with one); empty: the bucket's top level.
    pub prefix: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: S3SecretKey,
    /// How long a data file no record names any more stays in the bucket (see the module documentation).
    pub release_grace: Duration,
}

impl S3Location {
    fn prefix(&self) -> String {
        let prefix = self.prefix.trim_start_matches('/');
        if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        }
    }
}

/// The secret access key of the data bucket. Its `Debug` form shows nothing of it; it is zeroized on drop.
#[derive(Clone)]
pub struct S3SecretKey(zeroize::Zeroizing<String>);

impl S3SecretKey {
    pub fn new(secret: String) -> Self {
        S3SecretKey(zeroize::Zeroizing::new(secret))
    }
}

impl std::fmt::Debug for S3SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3SecretKey(<redacted>)")
    }
}

/// What an upload sends: staged bytes, or a local file streamed.
enum Upload<'a> {
    Bytes(Vec<u8>),
    File(&'a Path),
}

/// The data files in one bucket.
pub(crate) struct S3Data {
    operator: Operator,
    release_grace: Duration,
}

/// One data file in the bucket, for reading. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RemoteFile {
    operator: Operator,
    name: String,
}

// The operator holds the credentials: debug prints show only the bucket and names.
impl std::fmt::Debug for S3Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Data")
            .field("bucket", &self.operator.info().name())
            .field("release_grace", &self.release_grace)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RemoteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFile").field("name", &self.name).finish_non_exhaustive()
    }
}

impl S3Data {
    /// Connects to the bucket and checks that it can be listed: an unreachable endpoint, a missing bucket or
    /// refused credentials stop the start with a clear error.
    pub(crate) async fn open(location: &S3Location) -> io::Result<S3Data> {
        let root = format!("/{}", location.prefix());
        let builder = services::S3::default()
            .endpoint(&location.endpoint)
            .bucket(&location.bucket)
            .region(&location.region)
            .root(&root)
            .access_key_id(&location.access_key_id)
            .secret_access_key(&location.secret_access_key.0)
            // Only what is configured here: no AWS_* environment, profile files or instance metadata.
            .disable_config_load()
            .disable_ec2_metadata();
        let operator = Operator::new(builder).map_err(backend_error)?.layer(RetryLayer::new()).finish();
        operator.list_with("/").limit(1).await.map_err(|e| {
            io::Error::other(format!(
                "cannot use the data bucket {:?} at {}: {}",
                location.bucket,
                location.endpoint,
                backend_error(e)
            ))
        })?;
        Ok(S3Data { operator, release_grace: location.release_grace })
    }

    pub(crate) fn release_grace(&self) -> Duration {
        self.release_grace
    }

    /// Uploads `data` under a new name and returns the name once the upload completed.
    pub(crate) async fn persist(&self, data: StagedFile) -> io::Result<String> {
        let name = format!("data-{}", unique_id()?);
        match data.into_staged() {
            Staged::InMemory(bytes) => self.upload(&name, Upload::Bytes(bytes)).await?,
            Staged::OnDisk(temp) => self.upload(&name, Upload::File(temp.path())).await?,
        }
        Ok(name)
    }

    /// Uploads the local file at `path` as `name` (a data file name), unless the bucket holds a file of that name
    /// and length already: `coffer migrate` gives imported files their names, and an interrupted import runs again.
    /// An upload never completed is not a file of the bucket, so a file found there is whole.
    pub(crate) async fn put_file(&self, path: &Path, name: &str) -> io::Result<()> {
        if !is_data_file_name(name) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("invalid data file name {name:?}")));
        }
        let len = tokio::fs::metadata(path).await?.len();
        if self.stored_len(name).await? == Some(len) {
            return Ok(());
        }
        self.upload(name, Upload::File(path)).await
    }

    /// The length of the file `name` in the bucket (one HEAD request); `None` if there is none.
    async fn stored_len(&self, name: &str) -> io::Result<Option<u64>> {
        match self.operator.stat(name).await {
            Ok(found) => Ok(Some(found.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend_error(e)),
        }
    }

    /// Uploads `body` as `name`, in [`UPLOAD_CHUNK`] pieces (a file is read [`READ_CHUNK`] at a time); a failed
    /// upload is aborted.
    async fn upload(&self, name: &str, body: Upload<'_>) -> io::Result<()> {
        let mut writer = self.operator.writer_with(name).chunk(UPLOAD_CHUNK).await.map_err(backend_error)?;
        let written = async {
            match body {
                Upload::Bytes(bytes) => writer.write(bytes).await.map_err(backend_error)?,
                Upload::File(path) => {
                    let mut file = tokio::fs::File::open(path).await?;
                    loop {
                        let mut buffer = BytesMut::with_capacity(READ_CHUNK);
                        while buffer.len() < READ_CHUNK {
                            if file.read_buf(&mut buffer).await? == 0 {
                                break;
                            }
                        }
                        if buffer.is_empty() {
                            break;
                        }
                        writer.write(buffer.freeze()).await.map_err(backend_error)?;
                    }
                }
            }
            writer.close().await.map_err(backend_error)?;
            Ok::<_, io::Error>(())
        }
        .await;
        if let Err(e) = written {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(file = name, error = %abort, "cannot abort a failed upload; garbage collection will");
            }
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn file(&self, name: &str) -> RemoteFile {
        RemoteFile { operator: self.operator.clone(), name: name.to_owned() }
    }

    /// Deletes `name` (gone already is fine).
    pub(crate) async fn delete(&self, name: &str) -> io::Result<()> {
        if !is_data_file_name(name) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("invalid data file name {name:?}")));
        }
        self.operator.delete(name).await.map_err(backend_error)
    }

    /// Deletes a released file and returns the bytes that frees: a HEAD first, since releases keep no sizes. A file
    /// already gone (an earlier deletion whose row removal did not commit) frees nothing.
    pub(crate) async fn delete_released(&self, name: &str) -> io::Result<u64> {
        let bytes = self.stored_len(name).await?.unwrap_or(0);
        self.delete(name).await?;
        Ok(bytes)
    }

    /// Deletes files that were never committed (a failed commit); failures are logged and the files left to
    /// garbage collection.
    pub(crate) async fn discard(&self, names: &[String]) {
        for name in names {
            if let Err(e) = self.delete(name).await {
                tracing::warn!(file = name, error = %e, "cannot delete an uncommitted data file; garbage collection will");
            }
        }
    }

    /// Every data file older than `min_age`, by name and size: the candidates for garbage collection (younger files
    /// may belong to writes in flight, whose records have not committed yet).
    pub(crate) async fn files_older_than(&self, min_age: Duration) -> io::Result<Vec<(String, u64)>> {
        let now = SystemTime::now();
        let mut lister = self.operator.lister_with("/").await.map_err(backend_error)?;
        let mut found = Vec::new();
        while let Some(entry) = lister.try_next().await.map_err(backend_error)? {
            let name = entry.name();
            let meta = entry.metadata();
            let Some(modified) = meta.last_modified() else { continue };
            let age = now.duration_since(SystemTime::from(modified)).unwrap_or_default();
            if is_data_file_name(name) && age >= min_age {
                found.push((name.to_owned(), meta.content_length()));
            }
        }
        Ok(found)
    }
}

impl RemoteFile {
    /// Streams bytes `range` of the file with one ranged GET; with `to_end`, from `range.start` to the end of the
    /// file, however long it is (so that a caller can tell a file longer than committed).
    pub(crate) async fn read(
        &self,
        range: Range<u64>,
        to_end: bool,
    ) -> io::Result<impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static> {
        let missing = |e: opendal::Error| match e.kind() {
            ErrorKind::NotFound => io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the data file {} is not in the data bucket: released (overwritten or deleted) longer ago than the \
                     release grace period, or lost",
                    self.name
                ),
            ),
            _ => backend_error(e),
        };
        let reader = self.operator.reader(&self.name).await.map_err(missing)?;
        let stream = match to_end {
            true => reader.into_bytes_stream(range.start..).await,
            false => reader.into_bytes_stream(range).await,
        }
        .map_err(missing)?;
        Ok(stream.map(|piece| piece.map_err(|e| io::Error::other(format!("data bucket: {e}")))))
    }
}

impl RemoteFile {
    /// The file's length now (one HEAD request).
    pub(crate) async fn len(&self) -> io::Result<u64> {
        Ok(self.operator.stat(&self.name).await.map_err(backend_error)?.content_length())
    }
}

/// An I/O error from an error of the backend: not found stays not found. OpenDAL's messages name the operation,
/// the path and the endpoint, never the credentials.
fn backend_error(e: opendal::Error) -> io::Error {
    let kind = match e.kind() {
        ErrorKind::NotFound => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("data bucket: {e}"))
}
