//! Long operations over stored objects, and the object side of the admin API ([`ObjectAdmin`]): rewrap jobs
//! (docs/rewrap.md), scrub jobs (docs/operations.md) and key impact reports; and the store's upkeep ([`upkeep`]):
//! background scrubs and the collection of what crashes leave behind.
//!
//! A job walks its buckets in order, one page at a time — a rewrap every version of every key (current or not), a
//! scrub the stored objects' directories (so it also meets records that no longer read) — and works on up to
//! `concurrency` objects
//! at once; results are taken in order, so everything up to the job's cursor is done. The record (spec, state,
//! counters, cursor) is saved through the store at least once a second and at every state change; a job that was
//! running when the server stopped resumes from its cursor at the next start. Objects a rewrap redoes after a crash
//! are found already changed, so they come out `unchanged`: the end state is the same; a scrub checks them again.

mod impact;
mod rewrap;
mod scrub;
pub mod upkeep;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coffer_admin_api::api::{
    JobFailure, JobInfo, JobProgress, JobSpec, JobState, RewrapSpec, ScrubSpec, MAX_JOB_FAILURES,
};
use coffer_admin_api::{ImpactScope, JobAction, ObjectAdmin, ObjectAdminError};
use coffer_store::{ListQuery, RawJson, StoreError, VersionPage, VersionQuery, NULL_VERSION};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use self::rewrap::RewrapPlan;
use self::scrub::ScrubPlan;
use crate::metrics::UpkeepMetrics;
use crate::service::AppState;

/// Objects listed (and so at most redone after a crash) per step of a job.
const PAGE_SIZE: usize = 256;
/// How often a running job's record is saved.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Version of the job record format.
const RECORD_FORMAT: u32 = 1;

/// The jobs of one server, and its answers to the admin API about objects.
pub struct Jobs {
    state: AppState,
    metrics: Arc<UpkeepMetrics>,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
}

/// What happened to one object.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Changed (in a dry run: would be); the object's size.
    Changed(u64),
    /// Not selected, already at the target, or deleted meanwhile.
    Unchanged,
    SkippedSseC,
    Failed(String),
    /// Found intact by a scrub; the stored bytes read.
    Verified(u64),
    /// Nothing wrong found, but not every byte could be checked; the stored bytes read.
    Unverifiable(u64),
    /// Found damaged by a scrub: the object's key (empty if unknown) and what is wrong.
    Damaged {
        key: String,
        reason: String,
    },
    /// A scrub could not check the object: its key (empty if unknown) and why.
    Unchecked {
        key: String,
        reason: String,
    },
    /// Not one of the job's objects after all (gone, or outside its prefix): not counted.
    Skipped,
}

/// How a job walks and what it does to each object.
enum Plan {
    Rewrap(RewrapPlan),
    Scrub(ScrubPlan),
}

impl Plan {
    /// The plan of job `id`.
    fn new(state: &AppState, spec: &JobSpec, id: &str) -> Result<Self, ObjectAdminError> {
        Ok(match spec {
            JobSpec::Rewrap(spec) => Plan::Rewrap(RewrapPlan::new(state, spec)?.for_job(id)),
            JobSpec::Scrub(_) => Plan::Scrub(ScrubPlan),
        })
    }

    /// Objects worked on at once.
    fn concurrency(&self, spec: &JobSpec) -> usize {
        match (self, spec) {
            (Plan::Rewrap(_), JobSpec::Rewrap(spec)) => spec.concurrency as usize,
            _ => 1,
        }
    }

    /// The next page of the bucket's items after `after`, and whether more may follow. `None` if the bucket is
    /// gone.
    async fn page(
        &self,
        state: &AppState,
        bucket: &str,
        prefix: &str,
        after: Option<Item>,
    ) -> Result<Option<(Vec<Item>, bool)>, StoreError> {
        let page = match self {
            Plan::Rewrap(_) => versions_page(state, bucket, prefix, after.as_ref()).await.map(|page| {
                let items = page
                    .versions
                    .into_iter()
                    .map(|version| Item {
                        key: version.key,
                        version: Some(version.version_id.unwrap_or_else(|| NULL_VERSION.to_owned())),
                    })
                    .collect();
                (items, page.is_truncated)
            }),
            Plan::Scrub(_) => {
                state.store.object_ids(bucket, after.map(|item| item.key).as_deref(), PAGE_SIZE).await.map(|ids| {
                    let more = ids.len() == PAGE_SIZE;
                    (ids.into_iter().map(|id| Item { key: id, version: None }).collect(), more)
                })
            }
        };
        match page {
            Ok(page) => Ok(Some(page)),
            Err(StoreError::NoSuchBucket) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn process(&self, state: &AppState, bucket: &str, item: &Item, prefix: &str) -> Outcome {
        match self {
            Plan::Rewrap(plan) => plan.process(state, bucket, &item.key, item.version.as_deref()).await,
            Plan::Scrub(plan) => plan.process(state, bucket, &item.key, prefix).await,
        }
    }
}

/// What the persisted record of a job holds besides what the API shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct JobRecord {
    format: u32,
    info: JobInfo,
    /// The buckets to walk, in order, fixed when the job was created.
    buckets: Vec<String>,
    /// The last item done: every item before it (in bucket, then listing order) is done too.
    cursor: Option<Cursor>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cursor {
    bucket: String,
    #[serde(flatten)]
    item: Item,
}

/// One thing a job works on: for a rewrap an object version, for a scrub a stored object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    /// The object's key; for a scrub, the id of the stored object (`Store::object_ids`).
    key: String,
    /// A rewrap's version id (`null` for the null version). Absent from the cursors of records saved before
    /// versions existed: such a job resumes after every version of `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

/// One page of `bucket`'s object versions under `prefix`, after the version `after` names (after every version of
/// its key when it names none).
async fn versions_page(
    state: &AppState,
    bucket: &str,
    prefix: &str,
    after: Option<&Item>,
) -> Result<VersionPage, StoreError> {
    let query = VersionQuery {
        prefix: prefix.to_owned(),
        delimiter: None,
        key_marker: after.map(|item| item.key.clone()),
        version_id_marker: after.and_then(|item| item.version.clone()),
        max_keys: PAGE_SIZE,
    };
    state.store.list_object_versions(bucket, &query).await
}

/// What an admin asked the runner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Run,
    Pause,
    Cancel,
}

struct Job {
    id: String,
    record: Mutex<JobRecord>,
    control: watch::Sender<Control>,
    /// The running walk, if any. Held across a control action, so actions on one job happen one at a time.
    runner: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Saves happen one at a time, each writing the record as it is when it starts: never an older one last.
    saving: tokio::sync::Mutex<()>,
}

impl Job {
    fn record(&self) -> MutexGuard<'_, JobRecord> {
        self.record.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn info(&self) -> JobInfo {
        self.record().info.clone()
    }

    async fn save(&self, state: &AppState) {
        let _saving = self.saving.lock().await;
        let json = serde_json::value::to_raw_value(&*self.record()).expect("a job record always serializes");
        if let Err(e) = state.store.save_job(&self.id, RawJson::from(json)).await {
            warn!(job = %self.id, error = %e, "cannot save the job's record; it goes on, but may redo work after a restart");
        }
    }

    /// Sets the state of a job that is still going, and whether it is finished.
    fn set_state(&self, state: JobState) {
        let mut record = self.record();
        if record.info.state.is_finished() {
            return;
        }
        record.info.state = state;
        record.info.progress.eta_seconds = None;
        if state != JobState::Running {
            record.info.progress.objects_per_second = 0.0;
        }
        if state.is_finished() {
            record.info.finished_at = Some(now());
        }
    }
}

impl Jobs {
    /// Loads the saved jobs and resumes those that were running.
    pub async fn start(state: AppState, metrics: Arc<UpkeepMetrics>) -> Arc<Jobs> {
        let jobs = Arc::new(Jobs { state, metrics, jobs: Mutex::new(BTreeMap::new()) });
        let records = match jobs.state.store.job_records().await {
            Ok(records) => records,
            Err(e) => {
                warn!(error = %e, "cannot read the saved jobs; none are resumed");
                Vec::new()
            }
        };
        for raw in records {
            let record = match parse_record(raw.get()) {
                Ok(record) if record.format == RECORD_FORMAT => record,
                Ok(record) => {
                    warn!(format = record.format, "skipping a job record of an unknown format");
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "skipping an unreadable job record");
                    continue;
                }
            };
            let resume = record.info.state == JobState::Running;
            let job = jobs.add(record, if resume { Control::Run } else { Control::Pause });
            if resume {
                info!(job = %job.id, "resuming a job that was running when the server stopped");
                match jobs.spawn(&job) {
                    Ok(walking) => *job.runner.lock().await = Some(walking),
                    Err(e) => {
                        job.record().info.error = Some(format!("cannot resume: {e}"));
                        job.set_state(JobState::Failed);
                        job.save(&jobs.state).await;
                    }
                }
            }
        }
        jobs
    }

    fn add(&self, record: JobRecord, control: Control) -> Arc<Job> {
        let job = Arc::new(Job {
            id: record.info.id.clone(),
            record: Mutex::new(record),
            control: watch::Sender::new(control),
            runner: tokio::sync::Mutex::new(None),
            saving: tokio::sync::Mutex::new(()),
        });
        self.lock_jobs().insert(job.id.clone(), Arc::clone(&job));
        job
    }

    fn lock_jobs(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn find(&self, id: &str) -> Result<Arc<Job>, ObjectAdminError> {
        self.lock_jobs().get(id).cloned().ok_or_else(|| ObjectAdminError::NoSuchJob(id.to_owned()))
    }

    /// Starts walking the job's objects; the plan is rebuilt from its spec against the KMS as it is now.
    fn spawn(&self, job: &Arc<Job>) -> Result<JoinHandle<()>, ObjectAdminError> {
        let plan = Plan::new(&self.state, &job.record().info.spec, &job.id)?;
        let walker = Walker { state: self.state.clone(), metrics: Arc::clone(&self.metrics) };
        Ok(tokio::spawn(walker.walk(Arc::clone(job), Arc::new(plan))))
    }

    /// The buckets named (all when none), sorted, and how many objects they hold under `prefix`: every version of
    /// them when `versions`, else the current ones.
    async fn scope(
        &self,
        named: &[String],
        prefix: Option<&str>,
        versions: bool,
    ) -> Result<(Vec<String>, u64), ObjectAdminError> {
        let mut buckets = if named.is_empty() {
            self.state.store.list_buckets().await.map_err(internal)?.into_iter().map(|bucket| bucket.name).collect()
        } else {
            named.to_vec()
        };
        buckets.sort();
        buckets.dedup();
        let mut total = 0u64;
        for bucket in &buckets {
            if versions {
                total += self.count_versions(bucket, prefix.unwrap_or_default()).await?;
                continue;
            }
            let mut query = ListQuery { prefix: prefix.unwrap_or_default().to_owned(), ..ListQuery::default() };
            loop {
                let page = match self.state.store.list_objects(bucket, &query).await {
                    Ok(page) => page,
                    Err(StoreError::NoSuchBucket) => break,
                    Err(e) => return Err(internal(e)),
                };
                total += page.objects.len() as u64;
                match page.next_start_after {
                    Some(next) if page.is_truncated => query.start_after = Some(next),
                    _ => break,
                }
            }
        }
        Ok((buckets, total))
    }

    /// How many object versions (delete markers aside) `bucket` holds under `prefix`.
    async fn count_versions(&self, bucket: &str, prefix: &str) -> Result<u64, ObjectAdminError> {
        let mut total = 0;
        let mut after = None;
        loop {
            let page = match versions_page(&self.state, bucket, prefix, after.as_ref()).await {
                Ok(page) => page,
                Err(StoreError::NoSuchBucket) => return Ok(total),
                Err(e) => return Err(internal(e)),
            };
            total += page.versions.iter().filter(|version| !version.delete_marker).count() as u64;
            match page.next_key_marker {
                Some(key) if page.is_truncated => after = Some(Item { key, version: page.next_version_id_marker }),
                _ => return Ok(total),
            }
        }
    }
}

impl Jobs {
    /// Creates, saves and starts the job of a checked spec over `buckets` (`total` objects).
    async fn start_job(&self, spec: JobSpec, buckets: Vec<String>, total: u64) -> Result<JobInfo, ObjectAdminError> {
        let kind = spec.kind();
        let id = format!("{kind}-{}", hex::encode(random_id()));
        let created = now();
        let info = JobInfo {
            id: id.clone(),
            dry_run: matches!(&spec, JobSpec::Rewrap(rewrap) if rewrap.dry_run),
            spec,
            state: JobState::Running,
            created_at: created.clone(),
            started_at: Some(created),
            finished_at: None,
            progress: JobProgress { total, ..JobProgress::default() },
            failures: Vec::new(),
            damaged: Vec::new(),
            error: None,
        };
        let job = self.add(JobRecord { format: RECORD_FORMAT, info, buckets, cursor: None }, Control::Run);
        let mut runner = job.runner.lock().await;
        job.save(&self.state).await;
        info!(job = %id, objects = total, "{kind} job started");
        *runner = Some(self.spawn(&job)?);
        Ok(job.info())
    }
}

/// A saved job record. Records written before scrubs existed are rewrap jobs without a `kind`.
fn parse_record(json: &str) -> serde_json::Result<JobRecord> {
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    if let Some(info) = value.get_mut("info").and_then(serde_json::Value::as_object_mut) {
        info.entry("kind").or_insert_with(|| "rewrap".into());
    }
    serde_json::from_value(value)
}

#[async_trait::async_trait]
impl ObjectAdmin for Jobs {
    async fn impact(&self, scope: &ImpactScope) -> Result<coffer_admin_api::api::ImpactReport, ObjectAdminError> {
        impact::impact(&self.state, scope).await
    }

    async fn start_rewrap(&self, spec: RewrapSpec) -> Result<JobInfo, ObjectAdminError> {
        RewrapPlan::check(&self.state, &spec).await?;
        let (buckets, total) = self.scope(&spec.buckets, spec.prefix.as_deref(), true).await?;
        self.start_job(JobSpec::Rewrap(spec), buckets, total).await
    }

    async fn start_scrub(&self, spec: ScrubSpec) -> Result<JobInfo, ObjectAdminError> {
        ScrubPlan::check(&self.state, &spec).await?;
        let (buckets, total) = self.scope(spec.bucket.as_slice(), spec.prefix.as_deref(), false).await?;
        self.start_job(JobSpec::Scrub(spec), buckets, total).await
    }

    async fn jobs(&self) -> Vec<JobInfo> {
        let jobs: Vec<Arc<Job>> = self.lock_jobs().values().cloned().collect();
        let mut infos: Vec<JobInfo> = jobs.iter().map(|job| job.info()).collect();
        infos.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        infos
    }

    async fn job(&self, id: &str) -> Result<JobInfo, ObjectAdminError> {
        Ok(self.find(id)?.info())
    }

    async fn control_job(&self, id: &str, action: JobAction) -> Result<JobInfo, ObjectAdminError> {
        let job = self.find(id)?;
        let mut runner = job.runner.lock().await;
        let state = job.record().info.state;
        match (action, state) {
            (JobAction::Pause, JobState::Running) | (JobAction::Cancel, JobState::Running | JobState::Paused) => {
                let (control, next) = match action {
                    JobAction::Pause => (Control::Pause, JobState::Paused),
                    _ => (Control::Cancel, JobState::Cancelled),
                };
                job.control.send_replace(control);
                // In-flight objects finish and are counted; the walk stops before the next one.
                if let Some(walking) = runner.take() {
                    let _ = walking.await;
                }
                job.set_state(next);
                job.save(&self.state).await;
            }
            (JobAction::Resume, JobState::Paused) => {
                job.control.send_replace(Control::Run);
                let walking = self.spawn(&job).inspect_err(|_| {
                    job.control.send_replace(Control::Pause);
                })?;
                *runner = Some(walking);
                job.set_state(JobState::Running);
                job.save(&self.state).await;
            }
            (JobAction::Pause, JobState::Paused)
            | (JobAction::Resume, JobState::Running)
            | (JobAction::Cancel, JobState::Cancelled) => {}
            (_, finished) => {
                return Err(ObjectAdminError::InvalidJobState(format!(
                    "job {id} is {}: it cannot change any more",
                    finished.as_str()
                )));
            }
        }
        Ok(job.info())
    }
}

/// What a walk needs besides its job and plan.
struct Walker {
    state: AppState,
    metrics: Arc<UpkeepMetrics>,
}

impl Walker {
    /// Walks a job's objects from its cursor until done, or until an admin pauses or cancels it.
    async fn walk(self, job: Arc<Job>, plan: Arc<Plan>) {
        let state = &self.state;
        let mut control = job.control.subscribe();
        let (buckets, cursor, spec) = {
            let record = job.record();
            (record.buckets.clone(), record.cursor.clone(), record.info.spec.clone())
        };
        let prefix = spec.prefix().unwrap_or_default().to_owned();
        let concurrency = plan.concurrency(&spec);
        let mut pace = Pace::new(spec.objects_per_second());
        let rate = Rate::new(job.record().info.progress.examined);
        let mut last_save = Instant::now();
        let first =
            cursor.as_ref().and_then(|cursor| buckets.iter().position(|bucket| *bucket == cursor.bucket)).unwrap_or(0);
        for bucket in &buckets[first..] {
            let mut after = cursor.as_ref().filter(|cursor| cursor.bucket == *bucket).map(|cursor| cursor.item.clone());
            loop {
                let (items, more) = match plan.page(state, bucket, &prefix, after.clone()).await {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(e) => {
                        job.record().info.error = Some(format!("cannot list bucket {bucket}: {e}"));
                        job.set_state(JobState::Failed);
                        job.save(state).await;
                        return;
                    }
                };
                after = items.last().cloned();
                let mut items = items.into_iter().peekable();
                let mut in_flight: VecDeque<(Item, JoinHandle<Outcome>)> = VecDeque::new();
                loop {
                    while in_flight.len() < concurrency && items.peek().is_some() && running(&control) {
                        pace.wait(&mut control).await;
                        if !running(&control) {
                            break;
                        }
                        let item = items.next().expect("peeked");
                        let (state, plan, bucket_name, object, prefix) =
                            (state.clone(), Arc::clone(&plan), bucket.clone(), item.clone(), prefix.clone());
                        let task =
                            tokio::spawn(async move { plan.process(&state, &bucket_name, &object, &prefix).await });
                        in_flight.push_back((item, task));
                    }
                    let Some((item, task)) = in_flight.pop_front() else { break };
                    let outcome =
                        task.await.unwrap_or_else(|e| Outcome::Failed(format!("the object's task failed: {e}")));
                    if matches!(*plan, Plan::Scrub(_)) {
                        self.metrics.scrubbed(&outcome);
                    }
                    {
                        let mut record = job.record();
                        record_outcome(&mut record, bucket, item, outcome);
                        rate.update(&mut record.info.progress);
                    }
                    if last_save.elapsed() >= SAVE_INTERVAL {
                        job.save(state).await;
                        last_save = Instant::now();
                    }
                }
                if !running(&control) {
                    // The admin's action sets the state and saves once this walk has ended.
                    return;
                }
                if !more {
                    break;
                }
            }
        }
        job.set_state(JobState::Completed);
        job.save(state).await;
        let progress = job.record().info.progress.clone();
        match *plan {
            Plan::Rewrap(_) => {
                // What the rewrap replaced (plaintext, object keys sealed under old key versions) must not linger in
                // the metadata's files.
                if let Err(error) = state.store.erase_replaced().await {
                    warn!(job = %job.id, %error, "cannot erase what the rewrap replaced from the metadata files");
                }
                info!(job = %job.id, changed = progress.changed, failed = progress.failed, "job completed");
            }
            Plan::Scrub(_) => {
                info!(
                    job = %job.id,
                    verified = progress.verified,
                    unverifiable = progress.unverifiable,
                    damaged = progress.damaged,
                    failed = progress.failed,
                    bytes = progress.bytes,
                    "scrub completed"
                );
                if progress.damaged > 0 {
                    warn!(job = %job.id, damaged = progress.damaged, "the scrub found damaged objects: see the job's `damaged` list (docs/troubleshooting.md)");
                }
                self.metrics.scrub_completed(progress.damaged);
                upkeep::collect_garbage(&state.store, &self.metrics).await;
            }
        }
    }
}

fn running(control: &watch::Receiver<Control>) -> bool {
    *control.borrow() == Control::Run
}

fn record_outcome(record: &mut JobRecord, bucket: &str, item: Item, outcome: Outcome) {
    let key = item.key.clone();
    let info = &mut record.info;
    let progress = &mut info.progress;
    let keep = |list: &mut Vec<JobFailure>, key: String, reason: String| {
        if list.len() < MAX_JOB_FAILURES {
            list.push(JobFailure { bucket: bucket.to_owned(), key, reason });
        }
    };
    if !matches!(outcome, Outcome::Skipped) {
        progress.examined += 1;
    }
    match outcome {
        Outcome::Changed(bytes) => {
            progress.changed += 1;
            progress.bytes += bytes;
        }
        Outcome::Unchanged => progress.unchanged += 1,
        Outcome::SkippedSseC => progress.skipped_sse_c += 1,
        Outcome::Failed(reason) => {
            progress.failed += 1;
            let reason = match item.version.as_deref() {
                Some(version) if version != NULL_VERSION => format!("version {version}: {reason}"),
                _ => reason,
            };
            keep(&mut info.failures, key, reason);
        }
        Outcome::Verified(bytes) => {
            progress.verified += 1;
            progress.bytes += bytes;
        }
        Outcome::Unverifiable(bytes) => {
            progress.unverifiable += 1;
            progress.bytes += bytes;
        }
        Outcome::Damaged { key, reason } => {
            progress.damaged += 1;
            keep(&mut info.damaged, key, reason);
        }
        Outcome::Unchecked { key, reason } => {
            progress.failed += 1;
            keep(&mut info.failures, key, reason);
        }
        Outcome::Skipped => {}
    }
    record.cursor = Some(Cursor { bucket: bucket.to_owned(), item });
}

/// Spaces object starts `1 / objects_per_second` apart (no spacing at 0).
struct Pace {
    interval: Option<Duration>,
    next: tokio::time::Instant,
}

impl Pace {
    fn new(objects_per_second: u32) -> Self {
        let interval = (objects_per_second > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(objects_per_second)));
        Self { interval, next: tokio::time::Instant::now() }
    }

    /// Waits for the next start slot, or until an admin changes the job's control.
    async fn wait(&mut self, control: &mut watch::Receiver<Control>) {
        let Some(interval) = self.interval else { return };
        let slot = self.next.max(tokio::time::Instant::now());
        tokio::select! {
            () = tokio::time::sleep_until(slot) => self.next = slot + interval,
            _ = control.changed() => {}
        }
    }
}

/// The examination rate of the current run of a job, and the time left at that rate.
struct Rate {
    started: Instant,
    examined_at_start: u64,
}

impl Rate {
    fn new(examined: u64) -> Self {
        Self { started: Instant::now(), examined_at_start: examined }
    }

    fn update(&self, progress: &mut JobProgress) {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let per_second = (progress.examined - self.examined_at_start) as f64 / seconds;
        progress.objects_per_second = (per_second * 10.0).round() / 10.0;
        progress.eta_seconds = (per_second > 0.0)
            .then(|| (progress.total.saturating_sub(progress.examined) as f64 / per_second).ceil() as u64);
    }
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).expect("a UTC timestamp always formats as RFC 3339")
}

fn random_id() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    bytes
}

fn internal(err: StoreError) -> ObjectAdminError {
    ObjectAdminError::Internal(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str) -> Item {
        Item { key: key.to_owned(), version: None }
    }

    fn record() -> JobRecord {
        let info = JobInfo {
            id: "rewrap-1".into(),
            state: JobState::Running,
            dry_run: false,
            spec: JobSpec::Rewrap(RewrapSpec::default()),
            created_at: now(),
            started_at: None,
            finished_at: None,
            progress: JobProgress { total: 10, ..JobProgress::default() },
            failures: Vec::new(),
            damaged: Vec::new(),
            error: None,
        };
        JobRecord { format: RECORD_FORMAT, info, buckets: vec!["b".into()], cursor: None }
    }

    #[test]
    fn outcomes_count_and_move_the_cursor() {
        let mut record = record();
        record_outcome(&mut record, "b", item("a"), Outcome::Changed(100));
        record_outcome(&mut record, "b", item("b"), Outcome::Unchanged);
        record_outcome(&mut record, "b", item("c"), Outcome::SkippedSseC);
        record_outcome(&mut record, "b", item("d"), Outcome::Failed("KMS.DisabledException: off".into()));
        let progress = &record.info.progress;
        assert_eq!(
            (progress.examined, progress.changed, progress.unchanged, progress.skipped_sse_c, progress.failed),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(progress.bytes, 100);
        assert_eq!(
            record.info.failures,
            [JobFailure { bucket: "b".into(), key: "d".into(), reason: "KMS.DisabledException: off".into() }]
        );
        let cursor = record.cursor.as_ref().unwrap();
        assert_eq!((cursor.bucket.as_str(), cursor.item.key.as_str()), ("b", "d"));
    }

    #[test]
    fn a_version_is_named_in_its_failure_and_kept_in_the_cursor() {
        let mut record = record();
        let version = "0123456789abcdef0123456789abcdef";
        let failed = Item { key: "k".into(), version: Some(version.into()) };
        record_outcome(&mut record, "b", failed, Outcome::Failed("KMS.DisabledException: off".into()));
        let null = Item { key: "k".into(), version: Some(NULL_VERSION.into()) };
        record_outcome(&mut record, "b", null.clone(), Outcome::Failed("no".into()));
        let reasons: Vec<&str> = record.info.failures.iter().map(|failure| failure.reason.as_str()).collect();
        assert_eq!(reasons, [format!("version {version}: KMS.DisabledException: off").as_str(), "no"]);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["cursor"], serde_json::json!({"bucket": "b", "key": "k", "version": "null"}));
        assert_eq!(parse_record(&json.to_string()).unwrap().cursor.unwrap().item, null);

        // A cursor saved before versions existed names a key only.
        let mut old = json;
        old["cursor"] = serde_json::json!({"bucket": "b", "key": "k"});
        assert_eq!(parse_record(&old.to_string()).unwrap().cursor.unwrap().item, item("k"));
    }

    #[test]
    fn failures_are_counted_past_the_ones_kept() {
        let mut record = record();
        for n in 0..MAX_JOB_FAILURES + 5 {
            record_outcome(&mut record, "b", item(&format!("k{n:05}")), Outcome::Failed("no".into()));
        }
        assert_eq!(record.info.progress.failed, (MAX_JOB_FAILURES + 5) as u64);
        assert_eq!(record.info.failures.len(), MAX_JOB_FAILURES);
        assert_eq!(record.info.failures[0].key, "k00000");
    }

    #[test]
    fn records_round_trip_through_their_json() {
        let mut record = record();
        record_outcome(&mut record, "b", item("x"), Outcome::Changed(7));
        let json = serde_json::to_string(&record).unwrap();
        let back: JobRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.info, record.info);
        assert_eq!(back.cursor.unwrap().item.key, "x");
    }

    #[test]
    fn scrub_findings_count_keep_the_first_damaged_and_skip_what_is_not_in_scope() {
        let mut record = record();
        record.info.spec = JobSpec::Scrub(ScrubSpec::default());
        record_outcome(&mut record, "b", item("id1"), Outcome::Verified(10));
        record_outcome(&mut record, "b", item("id2"), Outcome::Unverifiable(5));
        record_outcome(&mut record, "b", item("id3"), Outcome::Skipped);
        for n in 0..MAX_JOB_FAILURES + 2 {
            let (key, reason) = (format!("k{n:05}"), "fails its checksum".to_owned());
            record_outcome(&mut record, "b", item(&format!("d{n:05}")), Outcome::Damaged { key, reason });
        }
        record_outcome(&mut record, "b", item("id4"), Outcome::Unchecked { key: String::new(), reason: "EIO".into() });
        let progress = &record.info.progress;
        assert_eq!(
            (progress.examined, progress.verified, progress.unverifiable, progress.damaged, progress.failed),
            (5 + MAX_JOB_FAILURES as u64, 1, 1, MAX_JOB_FAILURES as u64 + 2, 1)
        );
        assert_eq!(progress.bytes, 15);
        assert_eq!(record.info.damaged.len(), MAX_JOB_FAILURES);
        assert_eq!(
            record.info.damaged[0],
            JobFailure { bucket: "b".into(), key: "k00000".into(), reason: "fails its checksum".into() }
        );
        assert_eq!(record.info.failures.len(), 1);
        assert_eq!(record.cursor.as_ref().unwrap().item.key, "id4");

        let json = serde_json::to_value(&record).unwrap();
        assert_eq!((json["info"]["kind"].as_str(), json["info"]["spec"]["bucket"].is_null()), (Some("scrub"), true));
        let back = parse_record(&json.to_string()).unwrap();
        assert_eq!(back.info, record.info);
    }

    #[test]
    fn records_saved_before_scrubs_are_rewrap_jobs() {
        let mut json = serde_json::to_value(record()).unwrap();
        let info = json["info"].as_object_mut().unwrap();
        info.remove("kind");
        info.remove("damaged");
        let back = parse_record(&json.to_string()).unwrap();
        assert_eq!(back.info.spec, JobSpec::Rewrap(RewrapSpec::default()));
    }

    #[tokio::test(start_paused = true)]
    async fn pace_spaces_starts_and_yields_to_a_control_change() {
        let (control, mut receiver) = watch::channel(Control::Run);
        let mut pace = Pace::new(4);
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            pace.wait(&mut receiver).await;
        }
        assert_eq!(started.elapsed(), Duration::from_millis(500), "starts at 0, 250 and 500 ms");
        let waiting = tokio::spawn(async move {
            pace.wait(&mut receiver).await;
            tokio::time::Instant::now()
        });
        tokio::task::yield_now().await;
        control.send_replace(Control::Pause);
        let woke = waiting.await.unwrap();
        assert!(woke - started < Duration::from_millis(750), "a pause does not wait for the next slot");
    }
}
