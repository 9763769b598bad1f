//! `clear start --wait`: polls the Clear until `Completed`, with a progress bar when the server reports
//! progress and a spinner (state and elapsed time) when it does not, as api.cloudflare.com does not.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::Value;

use super::client::{ApiClient, ClientError};

/// How often a progress line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One line of progress for a log: `Cache Reserve Clear: In-progress, 120/500 objects, 1.2 MiB deleted`.
fn line(op: &Value) -> String {
    let state = op["state"].as_str().unwrap_or("unknown");
    match progress(op) {
        Some((deleted, total, bytes)) => {
            format!("Cache Reserve Clear: {state}, {deleted}/{total} objects, {} deleted", HumanBytes(bytes))
        }
        None => format!("Cache Reserve Clear: {state}"),
    }
}

fn completed(op: &Value) -> bool {
    op["state"] == "Completed"
}

/// Objects deleted and total, bytes deleted, if the server reports progress.
fn progress(op: &Value) -> Option<(u64, u64, u64)> {
    let p = &op["progress"];
    let deleted = p["objects_deleted"].as_u64()?;
    let remaining = p["objects_remaining"].as_u64()?;
    Some((deleted, deleted + remaining, p["bytes_deleted"].as_u64().unwrap_or(0)))
}

/// Polls `path` until the Clear is `Completed`, first after 50 ms and then twice as long each time up to
/// `interval`, so a quick Clear is not kept waiting; returns the final operation.
pub async fn until_completed(
    api: &ApiClient,
    path: &str,
    mut op: Value,
    interval: Duration,
) -> Result<Value, ClientError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(50).min(interval);
    // Hidden when stderr is not a terminal: a log (CI, a pipe) gets a plain line every LOG_EVERY instead.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let logging = !std::io::stderr().is_terminal();
    let mut logged: Option<Instant> = None;
    loop {
        if logging && !completed(&op) && logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            eprintln!("{} ({:.0?})", line(&op), started.elapsed());
            logged = Some(Instant::now());
        }
        match progress(&op) {
            Some((deleted, total, bytes)) => {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} clearing [{bar:30}] {pos}/{len} objects, {msg} ({elapsed})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_length(total.max(1));
                bar.set_position(if total == 0 { 1 } else { deleted });
                bar.set_message(format!("{} deleted", HumanBytes(bytes)));
            }
            None => {
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("Cache Reserve Clear: {}", op["state"].as_str().unwrap_or("unknown")));
            }
        }
        bar.tick();
        if completed(&op) {
            bar.finish_and_clear();
            eprintln!("Completed in {:.1?}", started.elapsed());
            return Ok(op);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(interval);
        op = api.call(Method::GET, path, None).await?;
    }
}
