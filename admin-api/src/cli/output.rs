//! Human-readable renderings of admin API answers for `coffer admin` (the `--json` flag bypasses them).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::{ImpactReport, JobInfo, JobList, JobSpec, KeyInfo, KeyList, KmsStatusInfo, StoreInfo, StoreList};

const NONE: &str = "-";

pub fn status(status: &KmsStatusInfo) -> String {
    let cache = &status.cache;
    let cache_line = format!(
        "{}, {} entries, {} hits, {} misses, {} evictions",
        if cache.enabled { "enabled" } else { "disabled" },
        cache.entry_count,
        cache.hit_count,
        cache.miss_count,
        cache.eviction_count
    );
    let counts = |counts: &BTreeMap<String, u64>| {
        let nonzero: Vec<String> =
            counts.iter().filter(|(_, count)| **count > 0).map(|(name, count)| format!("{name}={count}")).collect();
        if nonzero.is_empty() {
            NONE.to_owned()
        } else {
            nonzero.join(" ")
        }
    };
    two_columns(&[
        ("status", status.status.clone()),
        ("healthy", status.healthy.to_string()),
        ("reason", or_none(status.reason.as_deref())),
        ("backend_type", or_none(status.backend_type.as_deref())),
        ("default_store", or_none(status.default_store.as_deref())),
        ("default_key_id", or_none(status.default_key_id.as_deref())),
        ("stores", stores_line(&status.stores)),
        ("cache", cache_line),
        ("kms_calls", counts(&status.kms_calls)),
        ("kms_errors", counts(&status.kms_errors)),
        ("last_error", or_none(status.last_error.as_deref())),
    ])
}

/// `local=healthy eu-vault=down` (the default store first is not needed: `default_store` names it).
fn stores_line(stores: &[StoreInfo]) -> String {
    if stores.is_empty() {
        return NONE.to_owned();
    }
    let health = |store: &StoreInfo| if store.healthy { "healthy" } else { "down" };
    stores.iter().map(|store| format!("{}={}", store.name, health(store))).collect::<Vec<_>>().join(" ")
}

/// Stores as a table: name, backend, default, health and why not.
pub fn stores(list: &StoreList) -> String {
    let rows: Vec<(String, String)> = list
        .stores
        .iter()
        .map(|store| {
            let mut line = format!("{} {}", store.backend_type, if store.healthy { "healthy" } else { "down" });
            if store.default {
                line.push_str(" default");
            }
            if let Some(reason) = &store.reason {
                line.push_str(&format!(" ({reason})"));
            }
            (store.name.clone(), line)
        })
        .collect();
    let rows: Vec<(&str, String)> = rows.iter().map(|(name, line)| (name.as_str(), line.clone())).collect();
    two_columns(&rows)
}

/// The configuration as `dotted.path  value` lines (it is nested and its shape belongs to the KMS).
pub fn config(config: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", config, &mut rows);
    let rows: Vec<(&str, String)> = rows.iter().map(|(path, value)| (path.as_str(), value.clone())).collect();
    two_columns(&rows)
}

pub fn key(key: &KeyInfo) -> String {
    let versions =
        key.versions.iter().map(|v| format!("{} ({})", v.version, v.created_at)).collect::<Vec<_>>().join(", ");
    two_columns(&[
        ("key_id", key.key_id.clone()),
        ("state", key.state.clone()),
        ("created_at", key.created_at.clone()),
        ("current_version", key.current_version.to_string()),
        ("min_decryption_version", key.min_decryption_version.to_string()),
        ("versions", versions),
        ("deletion_date", or_none(key.deletion_date.as_deref())),
        ("description", or_none(key.description.as_deref())),
        ("expires_at", expiry(key)),
    ])
}

/// `2027-01-01T00:00:00Z (12 days left)`, `… (expired)` or `-`.
fn expiry(key: &KeyInfo) -> String {
    match (&key.expires_at, key.days_left) {
        (Some(at), Some(days)) if days < 0 => format!("{at} (expired)"),
        (Some(at), Some(days)) => format!("{at} ({days} days left)"),
        (Some(at), None) => at.clone(),
        (None, _) => NONE.to_owned(),
    }
}

pub fn key_list(list: &KeyList) -> String {
    let header = ["KEY ID", "STATE", "VERSION", "CREATED", "DELETION DATE", "EXPIRES"].map(str::to_owned);
    let rows = list.keys.iter().map(|key| {
        [
            key.key_id.clone(),
            key.state.clone(),
            key.current_version.to_string(),
            key.created_at.clone(),
            or_none(key.deletion_date.as_deref()),
            expiry(key),
        ]
    });
    let mut text = columns(std::iter::once(header).chain(rows).collect());
    if let Some(marker) = &list.next_marker {
        text.push_str(&format!("more keys follow: list again with --marker {marker}\n"));
    }
    text
}

/// What depends on a key or store: totals, then one row per bucket and per key version.
pub fn impact(report: &ImpactReport) -> String {
    let subject = report.key.clone().unwrap_or_else(|| format!("store {}", report.store));
    let mut text = format!("{subject}: {} objects, {} bytes\n", report.objects, report.bytes);
    let mut rows = vec![["BUCKET".to_owned(), "OBJECTS".to_owned(), "BYTES".to_owned()]];
    rows.extend(
        report.buckets.iter().map(|usage| [usage.bucket.clone(), usage.objects.to_string(), usage.bytes.to_string()]),
    );
    if rows.len() > 1 {
        text.push_str(&columns(rows));
    }
    if let Some(versions) = report.versions.as_ref().filter(|versions| !versions.is_empty()) {
        let mut rows = vec![["VERSION".to_owned(), "OBJECTS".to_owned(), "BYTES".to_owned()]];
        rows.extend(versions.iter().map(|v| [v.version.to_string(), v.objects.to_string(), v.bytes.to_string()]));
        text.push_str(&columns(rows));
    }
    text
}

/// `12 changed, 3 unchanged, 1 SSE-C skipped, 0 failed, 410.5 objects/s, 3 s left` (a rewrap), or
/// `15 verified, 0 unverifiable, 1 damaged, 0 failed, …` (a scrub).
pub fn progress_line(job: &JobInfo) -> String {
    let progress = &job.progress;
    let mut line = match job.spec {
        JobSpec::Rewrap(_) => format!(
            "{} {}, {} unchanged, {} SSE-C skipped, {} failed",
            progress.changed,
            if job.dry_run { "would change" } else { "changed" },
            progress.unchanged,
            progress.skipped_sse_c,
            progress.failed
        ),
        JobSpec::Scrub(_) => format!(
            "{} verified, {} unverifiable, {} damaged, {} failed",
            progress.verified, progress.unverifiable, progress.damaged, progress.failed
        ),
    };
    if progress.objects_per_second > 0.0 {
        line.push_str(&format!(", {} objects/s", progress.objects_per_second));
    }
    if let Some(eta) = progress.eta_seconds {
        line.push_str(&format!(", {eta} s left"));
    }
    line
}

pub fn job(job: &JobInfo) -> String {
    let progress = &job.progress;
    let mut text = two_columns(&[
        ("id", job.id.clone()),
        ("kind", job.spec.kind().to_owned()),
        ("state", job.state.as_str().to_owned()),
        ("dry_run", job.dry_run.to_string()),
        ("objects", format!("{}/{} examined, {}", progress.examined, progress.total, progress_line(job))),
        ("bytes", progress.bytes.to_string()),
        ("created_at", job.created_at.clone()),
        ("finished_at", or_none(job.finished_at.as_deref())),
        ("error", or_none(job.error.as_deref())),
    ]);
    if !job.failures.is_empty() {
        let mut rows = vec![["BUCKET".to_owned(), "KEY".to_owned(), "REASON".to_owned()]];
        rows.extend(job.failures.iter().map(|f| [f.bucket.clone(), f.key.clone(), f.reason.clone()]));
        text.push_str(&columns(rows));
    }
    if !job.damaged.is_empty() {
        let shown = if job.progress.damaged > job.damaged.len() as u64 {
            format!("the first {} of {}", job.damaged.len(), job.progress.damaged)
        } else {
            job.damaged.len().to_string()
        };
        text.push_str(&format!("damaged objects ({shown}):\n"));
        let mut rows = vec![["BUCKET".to_owned(), "KEY".to_owned(), "DAMAGE".to_owned()]];
        rows.extend(job.damaged.iter().map(|d| [d.bucket.clone(), d.key.clone(), d.reason.clone()]));
        text.push_str(&columns(rows));
    }
    text
}

pub fn job_list(list: &JobList) -> String {
    let header = ["JOB ID", "STATE", "EXAMINED", "TOTAL", "CHANGED", "FAILED", "CREATED"].map(str::to_owned);
    let rows = list.jobs.iter().map(|job| {
        [
            job.id.clone(),
            job.state.as_str().to_owned(),
            job.progress.examined.to_string(),
            job.progress.total.to_string(),
            job.progress.changed.to_string(),
            job.progress.failed.to_string(),
            job.created_at.clone(),
        ]
    });
    columns(std::iter::once(header).chain(rows).collect())
}

fn flatten(path: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (name, inner) in object {
                let inner_path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                flatten(&inner_path, inner, rows);
            }
        }
        Value::Null => rows.push((path.to_owned(), NONE.to_owned())),
        Value::String(text) => rows.push((path.to_owned(), text.clone())),
        other => rows.push((path.to_owned(), other.to_string())),
    }
}

fn or_none(value: Option<&str>) -> String {
    value.unwrap_or(NONE).to_owned()
}

fn two_columns(rows: &[(&str, String)]) -> String {
    columns(rows.iter().map(|(name, value)| [(*name).to_owned(), value.clone()]).collect())
}

/// Left-aligned columns separated by two spaces, one row per line.
fn columns<const N: usize>(rows: Vec<[String; N]>) -> String {
    let mut widths = [0; N];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CacheInfo, KeyVersionInfo};

    #[test]
    fn status_is_a_two_column_table() {
        let info = KmsStatusInfo {
            status: "Running".into(),
            healthy: true,
            reason: None,
            backend_type: Some("local".into()),
            default_store: Some("local".into()),
            default_key_id: Some("coffer-default".into()),
            stores: vec![StoreInfo {
                name: "local".into(),
                backend_type: "local".into(),
                default: true,
                healthy: true,
                reason: None,
                cached_keys: 1,
                config: None,
            }],
            cache: CacheInfo { enabled: true, hit_count: 3, miss_count: 1, entry_count: 1, eviction_count: 0 },
            kms_calls: [("generate_data_key".to_owned(), 1), ("health".to_owned(), 0)].into(),
            kms_errors: [("generate_data_key".to_owned(), 0)].into(),
            latency: BTreeMap::new(),
            last_error: None,
        };
        let text = status(&info);
        assert!(text.starts_with("status          Running\nhealthy         true\n"), "{text}");
        assert!(text.contains("cache           enabled, 1 entries, 3 hits, 1 misses, 0 evictions\n"), "{text}");
        assert!(text.contains("kms_calls       generate_data_key=1\nkms_errors      -\n"), "{text}");
    }

    #[test]
    fn config_is_flattened_into_dotted_paths() {
        let text = config(
            &serde_json::json!({"backend": {"type": "vault-transit", "auth": {"token": "***"}}, "timeout_seconds": 10}),
        );
        assert_eq!(text, "backend.auth.token  ***\nbackend.type        vault-transit\ntimeout_seconds     10\n");
    }

    #[test]
    fn keys_and_key_lists_show_their_fields_with_a_continuation_hint() {
        let app = KeyInfo {
            key_id: "app".into(),
            state: "Enabled".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            current_version: 2,
            min_decryption_version: 2,
            versions: vec![KeyVersionInfo { version: 2, created_at: "2025-01-01T00:00:00Z".into() }],
            deletion_date: None,
            description: None,
            expires_at: Some("2027-01-01T00:00:00Z".into()),
            days_left: Some(12),
        };
        assert!(key(&app).contains("\nmin_decryption_version  2\nversions                2 (2025-01-01T00:00:00Z)\n"));
        let text = key_list(&KeyList { keys: vec![app], next_marker: Some("app".into()) });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "KEY ID  STATE    VERSION  CREATED               DELETION DATE  EXPIRES");
        assert_eq!(
            lines[1],
            "app     Enabled  2        2025-01-01T00:00:00Z  -              2027-01-01T00:00:00Z (12 days left)"
        );
        assert_eq!(lines[2], "more keys follow: list again with --marker app");
    }
}
