//! Long operations over stored objects, and the object side of the admin API ([`ObjectAdmin`]): rewrap jobs and
//! key impact reports (docs/rewrap.md).
//!
//! A job walks its buckets in key order, one listing page at a time, and changes up to `concurrency` objects at
//! once; results are taken in key order, so everything up to the job's cursor is done. The record (spec, state,
//! counters, cursor) is saved through the store at least once a second and at every state change; a job that was
//! running when the server stopped resumes from its cursor at the next start. Objects redone after a crash are
//! found already changed, so they come out `unchanged`: the end state is the same.

mod impact;
mod rewrap;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use coffer_admin_api::api::{JobFailure, JobInfo, JobProgress, JobState, RewrapSpec, MAX_JOB_FAILURES};
use coffer_admin_api::{ImpactScope, JobAction, ObjectAdmin, ObjectAdminError};
use coffer_store::{ListQuery, RawJson, StoreError};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use self::rewrap::{Outcome, RewrapPlan};
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
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
}

/// What the persisted record of a job holds besides what the API shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct JobRecord {
    format: u32,
    info: JobInfo,
    /// The buckets to walk, in order, fixed when the job was created.
    buckets: Vec<String>,
    /// The last object done: every object before it (in bucket, then key order) is done too.
    cursor: Option<Cursor>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cursor {
    bucket: String,
    key: String,
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
    pub async fn start(state: AppState) -> Arc<Jobs> {
        let jobs = Arc::new(Jobs { state, jobs: Mutex::new(BTreeMap::new()) });
        let records = match jobs.state.store.job_records().await {
            Ok(records) => records,
            Err(e) => {
                warn!(error = %e, "cannot read the saved jobs; none are resumed");
                Vec::new()
            }
        };
        for raw in records {
            let record = match serde_json::from_str::<JobRecord>(raw.get()) {
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
        let plan = RewrapPlan::new(&self.state, &job.record().info.spec)?.for_job(&job.id);
        Ok(tokio::spawn(walk(self.state.clone(), Arc::clone(job), Arc::new(plan))))
    }

    /// The buckets a spec names (all when none), sorted, and how many objects they hold under its prefix.
    async fn scope(&self, spec: &RewrapSpec) -> Result<(Vec<String>, u64), ObjectAdminError> {
        let mut buckets = if spec.buckets.is_empty() {
            self.state.store.list_buckets().await.map_err(internal)?.into_iter().map(|bucket| bucket.name).collect()
        } else {
            spec.buckets.clone()
        };
        buckets.sort();
        buckets.dedup();
        let mut total = 0u64;
        for bucket in &buckets {
            let mut query = ListQuery { prefix: spec.prefix.clone().unwrap_or_default(), ..ListQuery::default() };
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
}

#[async_trait::async_trait]
impl ObjectAdmin for Jobs {
    async fn impact(&self, scope: &ImpactScope) -> Result<coffer_admin_api::api::ImpactReport, ObjectAdminError> {
        impact::impact(&self.state, scope).await
    }

    async fn start_rewrap(&self, spec: RewrapSpec) -> Result<JobInfo, ObjectAdminError> {
        RewrapPlan::check(&self.state, &spec).await?;
        let (buckets, total) = self.scope(&spec).await?;
        let id = format!("rewrap-{}", hex::encode(random_id()));
        let created = now();
        let info = JobInfo {
            id: id.clone(),
            state: JobState::Running,
            dry_run: spec.dry_run,
            spec,
            created_at: created.clone(),
            started_at: Some(created),
            finished_at: None,
            progress: JobProgress { total, ..JobProgress::default() },
            failures: Vec::new(),
            error: None,
        };
        let job = self.add(JobRecord { format: RECORD_FORMAT, info, buckets, cursor: None }, Control::Run);
        let mut runner = job.runner.lock().await;
        job.save(&self.state).await;
        info!(job = %id, objects = total, "rewrap job started");
        *runner = Some(self.spawn(&job)?);
        Ok(job.info())
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

/// Walks a job's objects from its cursor until done, or until an admin pauses or cancels it.
async fn walk(state: AppState, job: Arc<Job>, plan: Arc<RewrapPlan>) {
    let mut control = job.control.subscribe();
    let (buckets, cursor, spec) = {
        let record = job.record();
        (record.buckets.clone(), record.cursor.clone(), record.info.spec.clone())
    };
    let mut pace = Pace::new(spec.objects_per_second);
    let rate = Rate::new(job.record().info.progress.examined);
    let mut last_save = Instant::now();
    let first =
        cursor.as_ref().and_then(|cursor| buckets.iter().position(|bucket| *bucket == cursor.bucket)).unwrap_or(0);
    for bucket in &buckets[first..] {
        let mut query = ListQuery {
            prefix: spec.prefix.clone().unwrap_or_default(),
            start_after: cursor.as_ref().filter(|cursor| cursor.bucket == *bucket).map(|cursor| cursor.key.clone()),
            max_keys: PAGE_SIZE,
            ..ListQuery::default()
        };
        loop {
            let page = match state.store.list_objects(bucket, &query).await {
                Ok(page) => page,
                Err(StoreError::NoSuchBucket) => break,
                Err(e) => {
                    job.record().info.error = Some(format!("cannot list bucket {bucket}: {e}"));
                    job.set_state(JobState::Failed);
                    job.save(&state).await;
                    return;
                }
            };
            let mut keys = page.objects.into_iter().map(|object| object.key).peekable();
            let mut in_flight: VecDeque<(String, JoinHandle<Outcome>)> = VecDeque::new();
            loop {
                while in_flight.len() < spec.concurrency as usize && keys.peek().is_some() && running(&control) {
                    pace.wait(&mut control).await;
                    if !running(&control) {
                        break;
                    }
                    let key = keys.next().expect("peeked");
                    let (state, plan, bucket_name, object) =
                        (state.clone(), Arc::clone(&plan), bucket.clone(), key.clone());
                    let task = tokio::spawn(async move { plan.process(&state, &bucket_name, &object).await });
                    in_flight.push_back((key, task));
                }
                let Some((key, task)) = in_flight.pop_front() else { break };
                let outcome = task.await.unwrap_or_else(|e| Outcome::Failed(format!("the object's task failed: {e}")));
                {
                    let mut record = job.record();
                    record_outcome(&mut record, bucket, key, outcome);
                    rate.update(&mut record.info.progress);
                }
                if last_save.elapsed() >= SAVE_INTERVAL {
                    job.save(&state).await;
                    last_save = Instant::now();
                }
            }
            if !running(&control) {
                // The admin's action sets the state and saves once this walk has ended.
                return;
            }
            match page.next_start_after {
                Some(next) if page.is_truncated => query.start_after = Some(next),
                _ => break,
            }
        }
    }
    job.set_state(JobState::Completed);
    job.save(&state).await;
    let progress = job.record().info.progress.clone();
    info!(job = %job.id, changed = progress.changed, failed = progress.failed, "job completed");
}

fn running(control: &watch::Receiver<Control>) -> bool {
    *control.borrow() == Control::Run
}

fn record_outcome(record: &mut JobRecord, bucket: &str, key: String, outcome: Outcome) {
    let progress = &mut record.info.progress;
    progress.examined += 1;
    match outcome {
        Outcome::Changed(bytes) => {
            progress.changed += 1;
            progress.bytes += bytes;
        }
        Outcome::Unchanged => progress.unchanged += 1,
        Outcome::SkippedSseC => progress.skipped_sse_c += 1,
        Outcome::Failed(reason) => {
            progress.failed += 1;
            if record.info.failures.len() < MAX_JOB_FAILURES {
                record.info.failures.push(JobFailure { bucket: bucket.to_owned(), key: key.clone(), reason });
            }
        }
    }
    record.cursor = Some(Cursor { bucket: bucket.to_owned(), key });
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

    fn record() -> JobRecord {
        let info = JobInfo {
            id: "rewrap-1".into(),
            state: JobState::Running,
            dry_run: false,
            spec: RewrapSpec::default(),
            created_at: now(),
            started_at: None,
            finished_at: None,
            progress: JobProgress { total: 10, ..JobProgress::default() },
            failures: Vec::new(),
            error: None,
        };
        JobRecord { format: RECORD_FORMAT, info, buckets: vec!["b".into()], cursor: None }
    }

    #[test]
    fn outcomes_count_and_move_the_cursor() {
        let mut record = record();
        record_outcome(&mut record, "b", "a".into(), Outcome::Changed(100));
        record_outcome(&mut record, "b", "b".into(), Outcome::Unchanged);
        record_outcome(&mut record, "b", "c".into(), Outcome::SkippedSseC);
        record_outcome(&mut record, "b", "d".into(), Outcome::Failed("KMS.DisabledException: off".into()));
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
        assert_eq!((cursor.bucket.as_str(), cursor.key.as_str()), ("b", "d"));
    }

    #[test]
    fn failures_are_counted_past_the_ones_kept() {
        let mut record = record();
        for n in 0..MAX_JOB_FAILURES + 5 {
            record_outcome(&mut record, "b", format!("k{n:05}"), Outcome::Failed("no".into()));
        }
        assert_eq!(record.info.progress.failed, (MAX_JOB_FAILURES + 5) as u64);
        assert_eq!(record.info.failures.len(), MAX_JOB_FAILURES);
        assert_eq!(record.info.failures[0].key, "k00000");
    }

    #[test]
    fn records_round_trip_through_their_json() {
        let mut record = record();
        record_outcome(&mut record, "b", "x".into(), Outcome::Changed(7));
        let json = serde_json::to_string(&record).unwrap();
        let back: JobRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.info, record.info);
        assert_eq!(back.cursor.unwrap().key, "x");
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
