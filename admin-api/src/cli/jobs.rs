//! The CLI commands that take more than one request: following a job until it ends (a progress bar on a terminal,
//! plain lines otherwise), and asking before a key that objects still need is disabled or deleted.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use http::Method;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::client::{AdminClient, AdminRequest, CliError};
use super::{key_request, output, request};
use crate::api::{ImpactReport, JobInfo, JobSpec, JobState};

/// How often a followed job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Polls a job until it is no longer running, showing its progress on stderr; returns its last state.
pub(super) async fn follow(client: &AdminClient, id: &str) -> Result<JobInfo, CliError> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(id.to_owned());
        bar
    });
    let mut last_line: Option<Instant> = None;
    loop {
        let job: JobInfo = fetch(client, request(Method::GET, &["jobs", id])).await?;
        let progress = &job.progress;
        let running = job.state == JobState::Running;
        match &bar {
            Some(bar) => {
                bar.set_length(progress.total.max(progress.examined));
                bar.set_position(progress.examined);
                bar.set_message(output::progress_line(&job));
                bar.tick();
            }
            None if !running || last_line.is_none_or(|at| at.elapsed() >= LINE_INTERVAL) => {
                eprintln!(
                    "{id}: {} {}/{} {}",
                    job.state.as_str(),
                    progress.examined,
                    progress.total,
                    output::progress_line(&job)
                );
                last_line = Some(Instant::now());
            }
            None => {}
        }
        if !running {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(job);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How a followed job ended, as the command's result: an error (exit status 1) unless every object was settled.
pub(super) fn outcome(job: &JobInfo) -> Result<(), CliError> {
    let id = &job.id;
    match job.state {
        JobState::Completed if job.progress.damaged > 0 => Err(CliError::Incomplete(format!(
            "job {id} found {} damaged objects (see `coffer admin kms jobs show {id}`; docs/troubleshooting.md)",
            job.progress.damaged
        ))),
        JobState::Completed if job.progress.failed == 0 => Ok(()),
        JobState::Completed if matches!(job.spec, JobSpec::Scrub(_)) => Err(CliError::Incomplete(format!(
            "job {id}: {} objects could not be checked (see `coffer admin kms jobs show {id}`)",
            job.progress.failed
        ))),
        JobState::Completed => Err(CliError::Incomplete(format!(
            "job {id}: {} objects could not be changed (see `coffer admin kms jobs show {id}`)",
            job.progress.failed
        ))),
        JobState::Paused => {
            Err(CliError::Incomplete(format!("job {id} is paused; go on with `coffer admin kms jobs resume {id}`")))
        }
        JobState::Running | JobState::Cancelled | JobState::Failed => {
            let why = job.error.as_deref().map(|error| format!(": {error}")).unwrap_or_default();
            Err(CliError::Incomplete(format!("job {id} {}{why}", job.state.as_str())))
        }
    }
}

/// Before a key is disabled or scheduled for deletion: if objects still need it, asks on a terminal and refuses
/// without one (unless `--yes`).
pub(super) async fn confirm_key_change(client: &AdminClient, key_id: &str, action: &str) -> Result<(), CliError> {
    let report: ImpactReport = fetch(client, key_request(Method::GET, key_id, Some("impact"))).await?;
    if report.objects == 0 {
        return Ok(());
    }
    let buckets: Vec<&str> = report.buckets.iter().map(|usage| usage.bucket.as_str()).collect();
    let summary = format!(
        "{} objects ({} bytes) in {} need key {key_id} to be read",
        report.objects,
        report.bytes,
        buckets.join(", ")
    );
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "{summary}; rewrap them first (coffer admin kms rewrap --from-key {key_id} --to-key …), or {action} it \
             anyway with --yes"
        )));
    }
    eprint!("{summary}. {action} it anyway? [y/N] ");
    std::io::stderr().flush().map_err(|err| CliError::Usage(err.to_string()))?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|err| CliError::Usage(err.to_string()))?;
    match answer.trim() {
        "y" | "Y" | "yes" | "YES" => Ok(()),
        _ => Err(CliError::Usage(format!("not confirmed: key {key_id} is unchanged"))),
    }
}

async fn fetch<T: serde::de::DeserializeOwned>(client: &AdminClient, request: AdminRequest) -> Result<T, CliError> {
    let answer = client.send(&request).await?;
    serde_json::from_value(answer)
        .map_err(|err| CliError::Transport(format!("unexpected answer from the server: {err}")))
}
