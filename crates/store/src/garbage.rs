//! Garbage collection: reclaims the space of files that no record references, which a crash (kill -9, power loss)
//! between writing data and committing the record that names it leaves behind:
//!
//! * temp files and trash in `.coffer/tmp` (staged uploads, directories being deleted);
//! * data files in an object directory that its `meta.json` does not name (staged data renamed in, or parts linked
//!   in, before a commit that never happened; the files of a version replaced just before the crash);
//! * object directories without a `meta.json` (a crash before a new key's first commit);
//! * data files in an upload directory that no part record names (a part whose record was never written, or the
//!   replaced data of a part uploaded again);
//! * uploads whose completion was committed (see `multipart.rs`).
//!
//! Nothing a record references is ever removed, and nothing next to a record that cannot be read: its data files
//! may be what it references. Object and upload directories are judged under the lock that every writer of that
//! directory holds from placing a data file until its record is committed, so no write in flight is mistaken for
//! garbage whatever its age. Temp files have no such lock (a client may take its time sending a body), so only those
//! untouched for the given minimum age go; at open, when nothing can be in flight, the temp directory is emptied.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::Engine;
use crate::error::Result;
use crate::fsio::{fsync_dir, parent, remove_any};
use crate::layout::{ObjectRecord, PartRecord, UploadRecord, OBJECT_FILE, UPLOAD_FILE};
use crate::names::{is_data_file_name, is_object_dir_name, is_upload_id};

/// What a collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Files removed (those in removed directories included).
    pub files: u64,
    /// Bytes freed: the sizes of the removed files that had no other name (a part file also linked into its
    /// object frees nothing).
    pub bytes: u64,
}

impl Reclaimed {
    /// Removes the file or directory tree at `path`, counting what it held if it is gone afterwards.
    pub(crate) fn remove(&mut self, path: &Path) {
        let (files, bytes) = tree_size(path);
        remove_any(path);
        if fs::symlink_metadata(path).is_err() {
            self.files += files;
            self.bytes += bytes;
        }
    }

    pub(crate) fn add(&mut self, other: Reclaimed) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Files under `path` (itself, if a file) and the bytes removing them frees.
fn tree_size(path: &Path) -> (u64, u64) {
    let Ok(meta) = fs::symlink_metadata(path) else { return (0, 0) };
    if !meta.is_dir() {
        return (1, if meta.nlink() <= 1 { meta.len() } else { 0 });
    }
    let Ok(entries) = fs::read_dir(path) else { return (0, 0) };
    entries.flatten().map(|entry| tree_size(&entry.path())).fold((0, 0), |(f, b), (f2, b2)| (f + f2, b + b2))
}

/// Removes what in the temp directory is older than `min_age`: older than any write in flight.
pub(crate) fn sweep_temp_dir(tmp_dir: &Path, min_age: Duration) -> Result<Reclaimed> {
    let mut reclaimed = Reclaimed::default();
    let now = SystemTime::now();
    for entry in fs::read_dir(tmp_dir)? {
        let path = entry?.path();
        if fs::symlink_metadata(&path).is_ok_and(|meta| age(&meta, now) >= min_age) {
            reclaimed.remove(&path);
        }
    }
    Ok(reclaimed)
}

/// Time since `meta`'s last change: content, name or attributes (ctime: a rename into the temp directory counts).
fn age(meta: &fs::Metadata, now: SystemTime) -> Duration {
    let changed =
        UNIX_EPOCH + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec().clamp(0, 999_999_999) as u32);
    now.duration_since(changed).unwrap_or_default()
}

impl Engine {
    pub(crate) fn collect_garbage(&self, temp_min_age: Duration) -> Result<Reclaimed> {
        let mut reclaimed = sweep_temp_dir(self.tmp_dir(), temp_min_age)?;
        for bucket in fs::read_dir(self.buckets_dir())? {
            let Ok(bucket) = bucket?.file_name().into_string() else { continue };
            reclaimed.add(self.collect_bucket(&bucket)?);
        }
        Ok(reclaimed)
    }

    fn collect_bucket(&self, bucket: &str) -> Result<Reclaimed> {
        let mut reclaimed = Reclaimed::default();
        for entry in read_dir_if_exists(&self.objects_dir(bucket))? {
            let Ok(name) = entry?.file_name().into_string() else { continue };
            if is_object_dir_name(&name) {
                if let Err(e) = self.collect_object_dir(bucket, &name, &mut reclaimed) {
                    tracing::warn!(bucket, object = name, error = %e, "garbage collection skips an object directory");
                }
            }
        }
        for entry in read_dir_if_exists(&self.uploads_dir(bucket))? {
            let Ok(upload_id) = entry?.file_name().into_string() else { continue };
            if is_upload_id(&upload_id) {
                if let Err(e) = self.collect_upload_dir(bucket, &upload_id, &mut reclaimed) {
                    tracing::warn!(bucket, upload_id, error = %e, "garbage collection skips an upload directory");
                }
            }
        }
        Ok(reclaimed)
    }

    /// Removes the data files of an object directory its record does not name, or the whole directory if it holds
    /// no record and nothing but data files.
    fn collect_object_dir(&self, bucket: &str, name: &str, reclaimed: &mut Reclaimed) -> Result<()> {
        let _namespace = self.namespace_read();
        let dir = self.objects_dir(bucket).join(name);
        let _object = self.lock_object(&dir);
        let record = match self.load_record::<ObjectRecord>(&dir.join(OBJECT_FILE)) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(bucket, object = name, error = %e, "garbage collection skips an unreadable object record");
                return Ok(());
            }
        };
        let entries = data_files_and_others(&dir)?;
        match record {
            Some(record) => {
                for file in entries.data_files.iter().filter(|file| !record.data_files.contains(file)) {
                    reclaimed.remove(&dir.join(file));
                }
            }
            // Only this store's own leftovers go: anything else in the directory is left for a person to look at.
            None if entries.others == 0 && fs::symlink_metadata(&dir).is_ok() => {
                let trash = self.temp_path("trash")?;
                fs::rename(&dir, trash.path())?;
                fsync_dir(parent(&dir))?;
                reclaimed.remove(trash.path());
            }
            None => {}
        }
        Ok(())
    }

    /// Removes the data files of an upload that no part record names; the whole upload if it was completed.
    fn collect_upload_dir(&self, bucket: &str, upload_id: &str, reclaimed: &mut Reclaimed) -> Result<()> {
        let _namespace = self.namespace_read();
        let _upload = self.lock_upload(bucket, upload_id);
        let dir = self.uploads_dir(bucket).join(upload_id);
        let skip = |e: &dyn std::fmt::Display| {
            tracing::warn!(bucket, upload_id, error = %e, "garbage collection skips an upload with an unreadable record");
        };
        let upload = match self.load_record::<UploadRecord>(&dir.join(UPLOAD_FILE)) {
            Ok(Some(upload)) => upload,
            Ok(None) => return Ok(()),
            Err(e) => {
                skip(&e);
                return Ok(());
            }
        };
        if self.upload_completed(bucket, &upload) {
            let (files, bytes) = tree_size(&dir);
            self.remove_upload(bucket, &dir)?;
            reclaimed.add(Reclaimed { files, bytes });
            return Ok(());
        }
        let mut referenced = Vec::new();
        let mut data_files = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let Ok(name) = entry?.file_name().into_string() else { continue };
            if is_data_file_name(&name) {
                data_files.push(name);
            } else if name.starts_with("part-") && name.ends_with(".json") {
                match self.load_record::<PartRecord>(&dir.join(&name)) {
                    Ok(Some(part)) => referenced.push(part.data_file),
                    Ok(None) => {}
                    Err(e) => {
                        skip(&e);
                        return Ok(());
                    }
                }
            }
        }
        for file in data_files.iter().filter(|file| !referenced.contains(file)) {
            reclaimed.remove(&dir.join(file));
        }
        Ok(())
    }
}

/// The entries of an object directory: its data files by name, and how many others there are besides `meta.json`.
struct DirEntries {
    data_files: Vec<String>,
    others: usize,
}

fn data_files_and_others(dir: &Path) -> io::Result<DirEntries> {
    let mut entries = DirEntries { data_files: Vec::new(), others: 0 };
    for entry in read_dir_if_exists(dir)? {
        match entry?.file_name().into_string() {
            Ok(name) if is_data_file_name(&name) => entries.data_files.push(name),
            Ok(name) if name == OBJECT_FILE => {}
            _ => entries.others += 1,
        }
    }
    Ok(entries)
}

/// The entries of `dir`; none if it does not exist (deleted meanwhile).
fn read_dir_if_exists(dir: &Path) -> io::Result<impl Iterator<Item = io::Result<fs::DirEntry>>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(entries.into_iter().flatten())
}
