//! The command line: parse arguments, load the config, hand over to the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use securityhub_agent::config::{self, Config};
use securityhub_agent::pipeline::{self, Mode};
use securityhub_agent::{service, status, validate};
use tokio_util::sync::CancellationToken;

/// Delivers security-scanner findings from a spool directory to AWS Security Hub.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: watch the spool and deliver findings until stopped.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Deliver the files present now, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Detect, convert and check files as the agent would, print the ASFF it would send, send
    /// nothing. Exits non-zero if any finding or file would be rejected.
    Validate {
        /// Files to check (ASFF, Trivy, Grype, SARIF, XCCDF/ARF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Configuration file (for account, Region, instance and format settings); the default
        /// path is used when it exists.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// `summary`: a line per finding; `json`: the findings, one JSON object per line.
        #[arg(long, value_enum, default_value = "summary")]
        output: validate::Output,
    },
    /// Show what the running daemon reports: backlog, rate, last delivery, last error.
    /// Exits non-zero when there is no recent report (the daemon is not running or is stuck).
    Status {
        /// Configuration file (for the status file's path).
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Print the raw JSON report instead.
        #[arg(long)]
        json: bool,
    },
    /// Deliver these files now through the same pipeline (any supported format), then exit.
    /// The files are copied, not moved; rejected findings and undecodable files are reported
    /// under `--failed-dir`. Exits non-zero if anything was rejected.
    Send {
        /// Files to deliver.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Configuration file (destination, rate, formats); the default path is used when it exists.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where reports of rejected findings and undecodable files go.
        #[arg(long, default_value = "securityhub-agent-failed")]
        failed_dir: PathBuf,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
    /// Check, for each destination, that its findings can arrive: credentials, their account,
    /// Security Hub enabled, the product integration enabled, permission to import. Prints the
    /// fix for each failure; exits non-zero if any check failed.
    Doctor {
        /// Configuration file; the default path is used when it exists.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the least-privilege IAM policies for the configured destinations as JSON:
    /// `permission` (for the principal that imports), and with an assumed role `trust` (the
    /// role's trust policy) and `assume` (for the agent's own principal).
    IamPolicy {
        /// Configuration file; the default path is used when it exists.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The integration model; default: what each destination's configuration implies.
        #[arg(long, value_enum)]
        model: Option<securityhub_agent::hub::preflight::Model>,
        /// Who may assume the customer's role (the trust policy's principal).
        #[arg(long, default_value = securityhub_agent::hub::policy::PARTNER_PRINCIPAL)]
        partner_principal: String,
    },
    /// Check the configuration file and exit (non-zero with the reason if it is wrong).
    CheckConfig {
        /// Configuration file.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, once } => run(&config, if once { Mode::Once } else { Mode::Watch }),
        Command::Validate { files, config, output } => validate_files(&files, config.as_deref(), output),
        Command::Status { config, json } => show_status(&config, json),
        Command::Send { files, config, failed_dir } => send(&files, config.as_deref(), &failed_dir),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "securityhub-agent", &mut buf);
            std::io::Write::write_all(&mut std::io::stdout(), &buf).map_err(Into::into)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(Into::into)
        }
        Command::Doctor { config } => doctor(config.as_deref()),
        Command::IamPolicy { config, model, partner_principal } => {
            iam_policy(config.as_deref(), model, &partner_principal)
        }
        Command::CheckConfig { config } => {
            Config::load(&config).map(|_| println!("{}: ok", config.display())).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("securityhub-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A small runtime for the one-shot commands that call AWS.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

fn doctor(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    use securityhub_agent::hub::preflight as doctor;
    let config = config_or_default(config)?;
    let reports = runtime()?.block_on(async {
        let destinations = pipeline::resolve_destinations(&config.destination.0).await;
        let mut reports = Vec::new();
        for d in &destinations {
            reports.push(doctor::check(d, config.retry.request_timeout, doctor::Depth::Full).await);
        }
        reports
    });
    print!("{}", doctor::render(&reports));
    if reports.iter().all(doctor::Report::ok) { Ok(()) } else { anyhow::bail!("a check failed (see above)") }
}

fn iam_policy(
    config: Option<&std::path::Path>,
    model: Option<securityhub_agent::hub::preflight::Model>,
    partner_principal: &str,
) -> anyhow::Result<()> {
    let config = config_or_default(config)?;
    let destinations = runtime()?.block_on(pipeline::resolve_destinations(&config.destination.0));
    let documents = securityhub_agent::hub::policy::documents(&destinations, model, partner_principal);
    println!("{}", serde_json::to_string_pretty(&documents)?);
    Ok(())
}

fn run(path: &std::path::Path, mode: Mode) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let log = init_logging(&config.log);
    if let Some(warning) = Config::permission_warning(path) {
        tracing::warn!("{warning}");
    }
    run_pipeline(config, mode, Some((path.to_owned(), log)), false).map(|_| ())
}

/// Handle to change the log filter of the running process.
type LogHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// What a reload asks of the running pipeline.
#[derive(Default)]
struct Restart {
    /// The configuration the pipeline runs with.
    running: Option<Config>,
    /// A new configuration that needs the pipeline restarted, once the current one has stopped.
    pending: Option<Config>,
    /// Stops the current pipeline (a child of the process's shutdown token).
    generation: CancellationToken,
}

/// SIGHUP: read the configuration again. The log level and the rates apply live; any other change
/// (spool, queue, batch, destinations, formats, ...) restarts the pipeline in place: it stops as
/// on SIGTERM (queued findings get the grace period, the rest stay in the spool) and starts again
/// with the new configuration, in the same process. A broken file is logged and the running
/// configuration kept.
fn reload(path: &std::path::Path, log: &LogHandle, observe: &pipeline::Observe, restart: &Mutex<Restart>) {
    match Config::load(path) {
        Err(e) => {
            tracing::error!(error = %e, "reload: the new configuration is invalid; keeping the running one")
        }
        Ok(new) => {
            if std::env::var_os("RUST_LOG").is_none() {
                let _ = log.modify(|f| *f = tracing_subscriber::EnvFilter::new(&new.log.level));
            }
            let mut restart = restart.lock().unwrap_or_else(|e| e.into_inner());
            if restart.running.as_ref().is_some_and(|running| running.restart_needed(&new)) {
                tracing::info!(path = %path.display(), "reload: the configuration changed beyond log level and rates; restarting the pipeline in place");
                restart.pending = Some(new);
                restart.generation.cancel();
                return;
            }
            for (lane, d) in observe.lanes().iter().zip(&new.destination.0) {
                *lane.new_rate.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(pipeline::rate_settings(&new, d));
            }
            tracing::info!(path = %path.display(), level = %new.log.level, "reload: log level and rate applied");
        }
    }
}

/// Config at `path`, else at the default path when it exists, else the defaults.
fn config_or_default(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let default = std::path::Path::new(config::DEFAULT_PATH);
    Ok(match path {
        Some(path) => Config::load(path)?,
        None if default.exists() => Config::load(default)?,
        None => Config::default(),
    })
}

fn send(
    files: &[PathBuf],
    config: Option<&std::path::Path>,
    failed_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut config = config_or_default(config)?;
    let _log = init_logging(&config.log);
    let spool = std::env::temp_dir().join(format!("securityhub-agent-send-{}", std::process::id()));
    std::fs::create_dir_all(&spool).with_context(|| format!("creating {}", spool.display()))?;
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().with_context(|| format!("{} is not a file", file.display()))?;
        let target = spool.join(format!("{i:04}-{}", name.to_string_lossy()));
        std::fs::copy(file, &target).with_context(|| format!("reading {}", file.display()))?;
    }
    config.spool.dir = spool.clone();
    config.spool.failed_dir = Some(failed_dir.to_owned());
    config.spool.on_success = config::OnSuccess::Delete;
    let result = run_pipeline(config, Mode::Once, None, std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = std::fs::remove_dir_all(&spool);
    let s = result?;
    let rejected: u64 = s.rejected.values().sum();
    println!(
        "sent {} files: {} findings accepted, {} rejected, {} files undecodable",
        files.len(),
        s.findings_accepted,
        rejected,
        s.files_quarantined
    );
    if rejected > 0 || s.files_quarantined > 0 {
        anyhow::bail!("some findings were not delivered; see {}", failed_dir.display());
    }
    Ok(())
}

/// A spinner with the counts while `send` runs on a terminal.
async fn show_progress(observe: pipeline::Observe, shutdown: CancellationToken) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
    );
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(120));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let s = observe.stats.snapshot();
        bar.set_message(format!(
            "{} findings read, {} accepted, {} rejected, {} requests",
            s.findings_decoded,
            s.findings_accepted,
            s.rejected.values().sum::<u64>(),
            s.requests
        ));
        bar.tick();
    }
    bar.finish_and_clear();
}

fn run_pipeline(
    config: Config,
    mode: Mode,
    reloadable: Option<(PathBuf, LogHandle)>,
    progress: bool,
) -> anyhow::Result<securityhub_agent::pipeline::stats::Snapshot> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let observe = pipeline::Observe::default();
        let (for_reload, for_report) = (observe.clone(), observe.clone());
        let restart = Arc::new(Mutex::new(Restart::default()));
        let for_restart = restart.clone();
        service::handle_signals(
            shutdown.clone(),
            move || match &reloadable {
                Some((path, log)) => reload(path, log, &for_reload, &for_restart),
                None => tracing::info!("SIGHUP ignored: no configuration file to reload"),
            },
            move || tracing::info!(status = %service::summary(&for_report.stats.snapshot()), "status"),
        )
        .context("installing signal handlers")?;
        let systemd = tokio::spawn(service::systemd(observe.clone(), shutdown.clone()));
        let bar = progress.then(|| tokio::spawn(show_progress(observe.clone(), shutdown.clone())));
        let mut config = config;
        let result = loop {
            let generation = shutdown.child_token();
            {
                let mut r = restart.lock().unwrap_or_else(|e| e.into_inner());
                r.running = Some(config.clone());
                r.generation = generation.clone();
            }
            observe.lanes.lock().unwrap_or_else(|e| e.into_inner()).clear();
            let result = pipeline::run(&config, mode, generation, observe.clone()).await;
            let pending = restart.lock().unwrap_or_else(|e| e.into_inner()).pending.take();
            match pending {
                Some(new) if !shutdown.is_cancelled() && result.is_ok() => {
                    tracing::info!("pipeline stopped for the reload; starting it with the new configuration");
                    config = new;
                }
                _ => break result,
            }
        };
        shutdown.cancel();
        let _ = systemd.await;
        if let Some(bar) = bar {
            let _ = bar.await;
        }
        let summary = result?;
        tracing::info!(
            files_finished = summary.files_finished,
            files_quarantined = summary.files_quarantined,
            accepted = summary.findings_accepted,
            rejected = summary.rejected.values().sum::<u64>(),
            requests = summary.requests,
            "stopped"
        );
        Ok(summary)
    })
}

fn validate_files(
    files: &[PathBuf],
    config: Option<&std::path::Path>,
    output: validate::Output,
) -> anyhow::Result<()> {
    let config = config_or_default(config)?;
    if config.destination.first().account_id.is_none() || config.destination.first().region.is_none() {
        eprintln!(
            "note: no account or Region configured; using {} / {} where findings lack them",
            validate::PLACEHOLDER_ACCOUNT,
            validate::PLACEHOLDER_REGION
        );
    }
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let totals =
        validate::run(&paths, &config, output, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
    if totals.rejected > 0 || totals.failed_files > 0 {
        anyhow::bail!(
            "{} findings valid, {} rejected, {} files would be quarantined",
            totals.valid,
            totals.rejected,
            totals.failed_files
        );
    }
    Ok(())
}

fn show_status(config: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let path = &config.status.path;
    let report = status::read(path)
        .with_context(|| format!("no status report at {} (is the daemon running?)", path.display()))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", status::render(&report, now));
    }
    if status::is_stale(&report, now) {
        anyhow::bail!("the status report is stale");
    }
    Ok(())
}

fn init_logging(log: &config::LogConfig) -> LogHandle {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match log.format {
        config::LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .init(),
        config::LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    handle
}
