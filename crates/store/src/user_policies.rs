//! Users' identity policies attached through the admin API: one signed record, `.coffer/user-policies.json`,
//! mapping access keys to policy documents. The documents are opaque to the store (the server parses them); the
//! record MAC keeps anyone who can only write the file from granting themselves rights.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::Result;
use crate::fsio::write_json_atomic;
use crate::layout::{load, sign, Record, FORMAT_VERSION};

/// The place the record's MAC is bound to: the file cannot pass for any other record.
const PLACE: &str = ".coffer/user-policies.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct UserPoliciesRecord {
    format_version: u32,
    policies: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

impl Record for UserPoliciesRecord {
    const FLAT_TOP_LEVEL: Option<&'static [&'static str]> = None;

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
    }
}

/// One user's policy as the SQL engine keeps it: a row per user, signed for its place.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UserPolicyRecord {
    pub format_version: u32,
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Record for UserPolicyRecord {
    const FLAT_TOP_LEVEL: Option<&'static [&'static str]> = None;

    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
    }
}

impl Engine {
    fn user_policies_file(&self) -> PathBuf {
        self.coffer_dir().join("user-policies.json")
    }

    pub(crate) fn user_policies(&self) -> Result<BTreeMap<String, String>> {
        let record: Option<UserPoliciesRecord> = load(&self.user_policies_file(), self.macs(), PLACE)?;
        Ok(record.map(|record| record.policies).unwrap_or_default())
    }

    pub(crate) fn set_user_policy(&self, access_key: &str, policy: Option<String>) -> Result<()> {
        let _namespace = self.namespace_write();
        let path = self.user_policies_file();
        let mut record: UserPoliciesRecord = load(&path, self.macs(), PLACE)?.unwrap_or_default();
        match policy {
            Some(policy) => record.policies.insert(access_key.to_owned(), policy),
            None => record.policies.remove(access_key),
        };
        record.format_version = FORMAT_VERSION;
        sign(&mut record, self.macs(), PLACE)?;
        write_json_atomic(self.tmp_dir(), &path, &record, &[])?;
        Ok(())
    }
}
