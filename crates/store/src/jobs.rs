//! Job records of [`Engine`]: the state of long operations over many objects (rewrap jobs), kept so they resume
//! after a restart. Each record is opaque JSON owned by the server, one file per job, replaced atomically.

use std::fs;

use crate::engine::Engine;
use crate::error::{Result, StoreError};
use crate::fsio::{read_file, write_json_atomic};
use crate::meta::RawJson;

/// Longest job id: ids name files, so they are short and plain.
const MAX_JOB_ID_LEN: usize = 64;

/// Job ids are 1 to 64 lowercase letters, digits and `-`.
pub(crate) fn validate_job_id(id: &str) -> Result<()> {
    let plain = id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if id.is_empty() || id.len() > MAX_JOB_ID_LEN || !plain {
        return Err(StoreError::InvalidMeta("a job id is 1 to 64 lowercase letters, digits and '-'"));
    }
    Ok(())
}

impl Engine {
    pub(crate) fn save_job(&self, id: &str, record: &RawJson) -> Result<()> {
        validate_job_id(id)?;
        write_json_atomic(self.tmp_dir(), &self.jobs_dir().join(format!("{id}.json")), record, &[])?;
        Ok(())
    }

    pub(crate) fn job_records(&self) -> Result<Vec<RawJson>> {
        let mut records = Vec::new();
        for entry in fs::read_dir(self.jobs_dir())? {
            let path = entry?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let Some(bytes) = read_file(&path)? else { continue };
            let record = serde_json::from_slice::<Box<serde_json::value::RawValue>>(&bytes).map_err(|e| {
                StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: corrupt job record: {e}", path.display()),
                ))
            })?;
            records.push(RawJson::from(record));
        }
        Ok(records)
    }
}
