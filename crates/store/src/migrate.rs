//! `coffer migrate`: imports a data directory of the directory engine into the SQL engine (SQLite in the directory,
//! or PostgreSQL), with its stored bytes kept in the data directory or in a data bucket.
//!
//! Every record is read and checked as a read would (its MAC, its contents), then written as a row signed for its new
//! place — with the data directory's own record key, or with the cluster key of the nodes that will share a
//! PostgreSQL database. Every data file keeps its name (`data-<id>`, 128 random bits): it gets a second name under
//! `DATA/data/` (a hard link: no data is copied), or is uploaded under that name to the data bucket; the directory
//! form stays intact until the end. Rows are upserts, existing links are accepted and a file the bucket holds whole
//! already is not uploaded again, so an interrupted import simply runs again, and no file is ever named twice. (An
//! upload the interruption cut short never completed, so it left no file; one that completed before its row
//! committed is named by the row the next run writes.) Once every bucket is imported and each bucket's object count
//! checked against the rows, `DATA/buckets` and `DATA/.coffer/jobs` are moved to `DATA/.coffer/imported-<time>/`,
//! which the operator deletes after checking the store; the SQL engine opens the directory from then on. A record
//! that fails its check stops the import, naming it: nothing is silently left behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{Result, StoreError};
use crate::fsio::{create_private_dir_all, fsync_dir};
use crate::layout::{part_file_name, ObjectRecord, PartRecord, UploadRecord, OBJECT_FILE, UPLOAD_FILE};
use crate::meta::RawJson;
use crate::names::{is_object_dir_name, is_upload_id};
use crate::s3_data::DataLocation;
use crate::sql::SqlEngine;
use crate::ClusterKey;

/// How far an import got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub buckets: u64,
    pub objects: u64,
    pub uploads: u64,
    pub parts: u64,
    /// Stored bytes now also in the SQL engine's data: hard-linked under `DATA/data/` (no space used), or in the data
    /// bucket.
    pub stored_bytes: u64,
}

/// Where an import goes.
#[derive(Debug, Clone, Copy)]
pub struct ImportTarget<'a> {
    /// The PostgreSQL database; `None`: SQLite in the data directory.
    pub postgres_url: Option<&'a str>,
    /// Where the SQL engine keeps stored bytes.
    pub data: &'a DataLocation,
    /// The key of the cluster whose nodes share the PostgreSQL database (`coffer server --cluster-key-file`): it
    /// signs the records. `None`: the data directory's own record key.
    pub cluster: Option<&'a ClusterKey>,
}

/// Imports the directory-format data directory `root` into the SQL engine of `target`, calling `progress` after each
/// bucket. Returns what was imported and where the directory form was moved.
pub async fn import_directory(
    root: &Path,
    target: ImportTarget<'_>,
    mut progress: impl FnMut(&str, &Imported),
) -> Result<(Imported, PathBuf)> {
    if !root.join("buckets").is_dir() {
        return Err(StoreError::Io(io::Error::other(format!(
            "{} holds no data in the directory format (no buckets/): nothing to import",
            root.display()
        ))));
    }
    let directory = {
        let root = root.to_owned();
        Arc::new(blocking(move || Engine::open_for_import(&root)).await?)
    };
    let sql = SqlEngine::open_for_import(root, target.postgres_url, target.data, target.cluster).await?;
    let mut imported = Imported::default();
    let mut buckets: Vec<String> =
        fs::read_dir(directory.buckets_dir())?.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect();
    buckets.sort();
    for bucket in &buckets {
        let record = directory.bucket_record(bucket)?;
        sql.import_bucket(&record).await?;
        imported.buckets += 1;
        let objects = import_objects(&directory, &sql, bucket, &mut imported).await?;
        import_uploads(&directory, &sql, bucket, &mut imported).await?;
        let rows = sql.count_objects(bucket).await?;
        if rows != objects {
            return Err(StoreError::Io(io::Error::other(format!(
                "bucket {bucket}: {objects} objects imported but {rows} rows found"
            ))));
        }
        progress(bucket, &imported);
    }
    for (access_key, policy) in directory.user_policies()? {
        sql.set_user_policy(&access_key, Some(policy)).await?;
    }
    for (id, record) in job_records(directory.jobs_dir())? {
        sql.save_job(&id, &record).await?;
    }
    let moved = root.join(".coffer").join(format!("imported-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    create_private_dir_all(&moved)?;
    fs::rename(directory.buckets_dir(), moved.join("buckets"))?;
    if directory.jobs_dir().exists() {
        fs::rename(directory.jobs_dir(), moved.join("jobs"))?;
    }
    fsync_dir(root)?;
    Ok((imported, moved))
}

async fn import_objects(
    directory: &Arc<Engine>,
    sql: &SqlEngine,
    bucket: &str,
    imported: &mut Imported,
) -> Result<u64> {
    let mut count = 0;
    for entry in fs::read_dir(directory.objects_dir(bucket))? {
        let dir = entry?.path();
        if !dir.file_name().and_then(|name| name.to_str()).is_some_and(is_object_dir_name) {
            continue;
        }
        let Some(record) = directory.load_record::<ObjectRecord>(&dir.join(OBJECT_FILE))? else {
            continue; // a directory a crash left before its first commit: no object
        };
        if sql.data_is_remote() && record.data_checksums.iter().flatten().count() != record.data_files.len() {
            return Err(unreadable_remotely(&dir));
        }
        imported.stored_bytes += place_data_files(sql, &dir, &record.data_files).await?;
        sql.import_object(bucket, record).await?;
        imported.objects += 1;
        count += 1;
    }
    Ok(count)
}

async fn import_uploads(directory: &Arc<Engine>, sql: &SqlEngine, bucket: &str, imported: &mut Imported) -> Result<()> {
    for entry in fs::read_dir(directory.uploads_dir(bucket))? {
        let dir = entry?.path();
        if !dir.file_name().and_then(|name| name.to_str()).is_some_and(is_upload_id) {
            continue;
        }
        let Some(upload) = directory.load_record::<UploadRecord>(&dir.join(UPLOAD_FILE))? else { continue };
        if directory.upload_completed(bucket, &upload) {
            continue;
        }
        let mut parts = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let number = name.to_str().and_then(|name| name.strip_prefix("part-")?.strip_suffix(".json")?.parse().ok());
            let Some(number) = number.filter(|&number| name.to_str() == Some(part_file_name(number).as_str())) else {
                continue;
            };
            if let Some(part) = directory.load_record::<PartRecord>(&dir.join(part_file_name(number)))? {
                if sql.data_is_remote() && part.data_checksums.is_none() {
                    return Err(unreadable_remotely(&dir));
                }
                imported.stored_bytes += place_data_files(sql, &dir, std::slice::from_ref(&part.data_file)).await?;
                parts.push(part);
            }
        }
        imported.parts += parts.len() as u64;
        sql.import_upload(bucket, upload, parts).await?;
        imported.uploads += 1;
    }
    Ok(())
}

/// Puts each data file of `dir` in the SQL engine's data too, under its name, durably; returns their size.
async fn place_data_files(sql: &SqlEngine, dir: &Path, names: &[String]) -> Result<u64> {
    let mut bytes = 0;
    for name in names {
        let from = dir.join(name);
        bytes += fs::metadata(&from)?.len();
        sql.place_data_file(&from, name).await?;
    }
    Ok(bytes)
}

/// A data file of `dir` has no chunk checksums (it was stored before they were kept): read from a data bucket,
/// whose reads check every chunk, it could not be served.
fn unreadable_remotely(dir: &Path) -> StoreError {
    StoreError::Io(io::Error::other(format!(
        "{}: a data file stored before chunk checksums were kept, which a data bucket cannot serve: import with \
         --data-engine directory (the default), or copy the object onto itself first",
        dir.display()
    )))
}

/// The job records of the directory engine, with their ids (their file names).
fn job_records(jobs_dir: &Path) -> Result<Vec<(String, RawJson)>> {
    let mut records = Vec::new();
    let Ok(entries) = fs::read_dir(jobs_dir) else { return Ok(records) };
    for entry in entries {
        let path = entry?.path();
        let Some(id) = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .filter(|_| path.extension().is_some_and(|ext| ext == "json"))
        else {
            continue;
        };
        let text = fs::read_to_string(&path)?;
        let raw = serde_json::value::RawValue::from_string(text).map_err(|e| {
            StoreError::Io(io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
        })?;
        records.push((id.to_owned(), RawJson::from(raw)));
    }
    Ok(records)
}

async fn blocking<T: Send + 'static>(op: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| StoreError::Io(io::Error::other(format!("store task failed: {e}"))))?
}
