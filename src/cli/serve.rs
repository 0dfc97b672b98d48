//! `steward serve --gateway URL [--listen ADDR] [--token-file FILE |
//! --insecure-no-token] [--log-format text|json]`.
//!
//! Prints `steward serve: listening on http://ADDR/` on standard output
//! once it listens (write that URL into a node directory's `node.url` to
//! point the stock `tahoe` CLI at it), then serves until SIGTERM or Ctrl-C
//! and exits 0 after a graceful shutdown.

use super::common::{stop_signal, GridArgs};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use steward::config;
use steward::error::{Error, Exit};
use steward::serve;

/// How log lines look.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on. Anything but a loopback address needs
    /// --token-file or --insecure-no-token.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:3457")]
    pub listen: SocketAddr,
    /// Require `Authorization: Bearer <token>` on every request, the token
    /// being this file's first line (the file must be mode 0600). The stock
    /// `tahoe` CLI cannot send it: use it for other HTTP clients.
    #[arg(long = "token-file", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without a token: anyone who reaches
    /// it can use the grid through it.
    #[arg(long = "insecure-no-token")]
    pub insecure_no_token: bool,
    /// Log lines (one per request, at info level; STEWARD_LOG filters) as
    /// text or as JSON objects.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Checks (and repairs) in flight per operation at most (steward finds
    /// the best number below it unless --fixed-jobs).
    #[arg(long, short = 'j', default_value_t = 64)]
    pub jobs: usize,
    /// Directory listings in flight per operation.
    #[arg(long = "list-jobs", default_value_t = 8)]
    pub list_jobs: usize,
    /// With repair=true: also repair objects whose happiness is below N.
    #[arg(long, value_name = "N")]
    pub happy: Option<u64>,
    /// Keep operations that survive the connection (`POST
    /// /steward/v1/operations`) in DIR (made 0700; one serve at a time):
    /// their units, checkpoints and records. A restarted serve resumes the
    /// ones still running. Without it those endpoints answer 503.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// How long a finished operation (and its units) is kept under --state
    /// before it is removed: seconds, or a number with s, m, h or d.
    #[arg(long = "keep-finished", value_name = "DURATION", default_value = "1d", value_parser = duration_arg)]
    pub keep_finished: Duration,
    /// Seconds to wait for open connections after SIGTERM before exiting.
    #[arg(long = "shutdown-grace", value_name = "SECS", default_value_t = 5)]
    pub shutdown_grace: u64,
    #[command(flatten)]
    pub grid: GridArgs,
}

/// `30`, `30s`, `10m`, `2h`, `7d`.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "a number of seconds, or a number with s, m, h or d (like 30m)".to_string())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// Log to stderr as asked; default level info (the request lines).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

pub async fn run(a: ServeArgs) -> Result<Exit, Error> {
    let (access, warning) =
        serve::access::policy(a.listen, a.token_file.as_deref(), a.insecure_no_token)?;
    if let Some(w) = warning {
        eprintln!("steward serve: warning: {w}");
    }
    let urls = config::gateway_urls(&a.grid.gateway, &a.grid.node_dir())?;
    let gateway = a.grid.gateway(a.jobs.max(a.list_jobs)).await?;
    let listener = serve::bind(a.listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("the listening socket", e))?;
    let shown = serve::redact::url(&urls[0]);
    let ready = move || {
        println!("steward serve: listening on http://{addr}/");
        let _ = std::io::stdout().flush();
        tracing::info!(gateway = %shown, listen = %addr, "serving");
    };
    let cfg = serve::Config {
        gateway_url: urls[0].clone(),
        backend: gateway,
        access,
        list_jobs: a.list_jobs.max(1),
        check_jobs: a.jobs.max(1),
        happy: a.happy,
        grace: Duration::from_secs(a.shutdown_grace),
        sched: a.grid.scheduler(),
        state: a.state.clone(),
        keep_finished: a.keep_finished,
        ready: Some(Box::new(ready)),
    };
    serve::run(cfg, listener, stop_signal()).await?;
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(duration_arg("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration_arg("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration_arg("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration_arg("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(duration_arg("5w").unwrap_err().contains("unknown unit"));
        assert!(duration_arg("m").is_err());
    }
}
