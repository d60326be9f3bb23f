//! `scopewatch ingest`: follow the configured sources, or backfill paths
//! with `--once`, with a progress bar, signals and a summary.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use scopewatch_ingest::pipeline::{Ingest, IngestOptions};
use scopewatch_ingest::push::{self, PushServer};
use scopewatch_model::config::{Config, Source};
use scopewatch_model::events::Env;
use serde_json::json;

use crate::cli::IngestArgs;

/// SIGINT and SIGTERM set the flag: long-running verbs (ingest, serve)
/// finish what they are doing and exit.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the signal handler")?;
    }
    Ok(stop)
}

/// Logs to stderr, filtered by `SCOPEWATCH_LOG` (default info).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCOPEWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// What streaming detection runs with: the rule file and the registry,
/// loaded once (`run` loads them before the dashboard starts, so a rule file
/// that does not load stops everything before anything is up).
pub struct DetectionInputs {
    rules: Arc<scopewatch_rules::config::Rules>,
    registry: Option<Arc<scopewatch_model::registry::Registry>>,
}

impl DetectionInputs {
    pub fn load(config: &Config) -> Result<DetectionInputs> {
        Ok(DetectionInputs {
            rules: Arc::new(
                crate::rules::load_rules(config, None).context("loading the detection rules")?,
            ),
            registry: crate::rules::load_registry(config, None)?.map(Arc::new),
        })
    }
}

/// `scopewatch ingest`. `detection` is what the rules run with when they
/// run (loaded here from the config when not given).
pub fn run(
    config: &Config,
    args: IngestArgs,
    detection: Option<DetectionInputs>,
) -> Result<ExitCode> {
    init_logging();
    let stop = stop_flag()?;
    let mut options = IngestOptions::from_config(config);
    if let Ok(key) = std::env::var("SCOPEWATCH_PSEUDONYM_KEY") {
        options.pseudonym_key = Some(key);
    }
    if args.once && args.paths.is_empty() {
        options.lake.max_age = Duration::from_secs(3600);
        return backfill(&config.sources, options, &stop, args.quiet);
    }
    if args.once {
        let env = Env::parse(&args.env)
            .with_context(|| format!("--env {:?}: use prod, sandbox or test", args.env))?;
        let source = Source {
            name: args.source.clone(),
            format: args.format.clone(),
            paths: args.paths.clone(),
            tenant: args.tenant.clone(),
            env,
            start_at_end: false,
            options: Default::default(),
        };
        // A backfill commits by size, not by age.
        options.lake.max_age = Duration::from_secs(3600);
        return backfill(&[source], options, &stop, args.quiet);
    }
    if !args.paths.is_empty() {
        bail!(
            "paths are only for a backfill: add --once, or put them in a [[source]] of the config"
        );
    }
    if let Some(addr) = config.ingest.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
        tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
    }
    let mut ingest = Ingest::open(&config.sources, options)?;
    let detection = if args.no_rules {
        None
    } else {
        let inputs = match detection {
            Some(inputs) => inputs,
            None => DetectionInputs::load(config)?,
        };
        Some(start_detection(config, &mut ingest, inputs)?)
    };
    // The push endpoint runs on its own threads beside this loop, which owns
    // the lake writer: handlers queue parsed requests and wait for the commit.
    let push = match &config.push {
        Some(push_config) => {
            let parser = ingest.enable_push(push_config)?;
            let (queue, intake) = push::queue(push_config.max_concurrent_requests);
            let server = PushServer::start(push_config, parser, queue)?;
            let addr = server.local_addr();
            tracing::info!(
                %addr,
                sources = push_config.sources.join(","),
                "push endpoint listening on http://{addr} (POST /ingest/<source>)"
            );
            Some((server, intake))
        }
        None => None,
    };
    tracing::info!(sources = config.sources.len(), data = %config.data_dir.display(), "following sources; SIGINT or SIGTERM stops");
    let followed = ingest.follow_with_push(&stop, push.as_ref().map(|(_, intake)| intake));
    if let Some((server, intake)) = push {
        // Queued pushes not taken by the loop get 503 once the intake is
        // gone; then the server lets answers in progress go out and stops.
        drop(intake);
        server.stop(Duration::from_secs(5));
    }
    // The last commit has been handed over: closing the hook's channel
    // lets the rules thread finish judging and save its state.
    ingest.on_commit(Box::new(|_, _| {}));
    if let Some(handle) = detection {
        match handle.join() {
            Ok(Ok(detector)) => tracing::info!(
                alerts = detector.store().len(),
                judged = detector.engine().judged,
                "rules stopped; alerts and state saved"
            ),
            Ok(Err(e)) => tracing::error!("the rules stopped with an error: {e:#}"),
            Err(_) => tracing::error!("the rules thread panicked"),
        }
    }
    followed?;
    let stats = ingest.stats().clone();
    tracing::info!(
        lines = stats.lines,
        auth = stats.auth_events,
        access = stats.access_events,
        dead = stats.dead_lettered,
        "stopped; everything read is committed"
    );
    println!("{}", serde_json::to_string(&stats)?);
    Ok(ExitCode::SUCCESS)
}

fn backfill(
    sources: &[Source],
    options: IngestOptions,
    stop: &AtomicBool,
    quiet: bool,
) -> Result<ExitCode> {
    let started = Instant::now();
    let mut ingest = Ingest::open(sources, options)?;
    let total = ingest.lag_bytes();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .expect("a valid template"),
    );
    ingest.run_to_end(stop, |s| {
        bar.set_position(s.per_source.values().map(|p| p.bytes).sum());
        let events: u64 = s.per_source.values().map(|p| p.events).sum();
        let dead: u64 = s.per_source.values().map(|p| p.dead_lettered).sum();
        let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{events} events ({rate:.0}/s), {dead} dead-lettered"
        ));
    })?;
    bar.finish_and_clear();
    let stats = ingest.stats();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "lines": stats.lines,
            "bytes": stats.bytes,
            "events": { "auth": stats.auth_events, "access": stats.access_events },
            "dead_lettered": stats.dead_lettered,
            "commits": stats.commits,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "data_dir": ingest.data_dir().display().to_string(),
        })
    );
    if stats.dead_lettered > 0 {
        eprintln!(
            "scopewatch: {} line(s) could not be read; see {}/deadletter/",
            stats.dead_lettered,
            ingest.data_dir().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts streaming detection: opens the alert store and the rules' saved
/// state, judges what the lake got since the last run, then judges every
/// commit on the rules thread.
fn start_detection(
    config: &Config,
    ingest: &mut Ingest,
    DetectionInputs { rules, registry }: DetectionInputs,
) -> Result<std::thread::JoinHandle<Result<scopewatch_rules::stream::Detector>>> {
    let mut detector =
        scopewatch_rules::stream::Detector::open(&config.data_dir, Arc::clone(&rules), registry)?;
    let mut notify = notifier(config, &rules)?;
    let replayed = crate::rules::catch_up(&mut detector, &config.data_dir, notify.as_mut())?;
    tracing::info!(
        rules = rules.rules.len(),
        origin = %rules.origin,
        replayed,
        alerts = detector.store().len(),
        "detection rules running on every commit"
    );
    let (tx, rx) = std::sync::mpsc::channel::<crate::rules::Committed>();
    ingest.on_commit(Box::new(move |batches, caught_up| {
        if tx
            .send(crate::rules::Committed { batches, caught_up })
            .is_err()
        {
            tracing::error!("the rules thread has stopped: committed events are not judged until the next start");
        }
    }));
    Ok(crate::rules::spawn_detector(detector, rx, notify))
}

/// Where new alerts go: the delivery outbox under `<data>/alerts/outbox`,
/// sent by its own thread (which lives as long as the process: a message
/// queued at shutdown is sent at the next start).
fn notifier(
    config: &Config,
    rules: &scopewatch_rules::config::Rules,
) -> Result<scopewatch_rules::stream::Notifier> {
    use scopewatch_rules::deliver::{spawn_deliverer, Outbox};
    let dir = scopewatch_rules::stream::alerts_dir(&config.data_dir).join("outbox");
    let outbox = Outbox::open(&dir, rules.delivery.clone())?;
    if rules.delivery.is_enabled() {
        spawn_deliverer(
            outbox.clone(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        )
        .context("starting the alert delivery thread")?;
        tracing::info!(
            destinations = rules.delivery.destination_names().join(","),
            "alert delivery on"
        );
    } else {
        tracing::info!("alert delivery off: no [delivery] destinations in the rule file");
    }
    Ok(Box::new(move |alert, rule| {
        outbox
            .enqueue(alert, &rule.destinations)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }))
}
