//! `scopewatch run`: everything in one process. Ingest follows every
//! configured source with the streaming rules and alert delivery, and the
//! dashboard serves beside it; SIGINT or SIGTERM stops both (ingest commits
//! what it read and saves its checkpoints, the outbox keeps what is unsent).
//! Without `--config`, it runs on the bundled samples
//! (`sample-logs/scopewatch.toml`, data under `./scopewatch-data`).

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use scopewatch_model::config::Config;

use crate::cli::IngestArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub serve: crate::serve::ServeArgs,
}

/// The config `run` uses when none is given: the bundled samples.
pub const SAMPLES_CONFIG: &str = "sample-logs/scopewatch.toml";

pub fn run(config: &Config, args: RunArgs) -> Result<ExitCode> {
    crate::ingest::init_logging();
    // Whatever would stop ingest stops `run` before the dashboard is up: a
    // rule file or registry that does not load.
    let detection = crate::ingest::DetectionInputs::load(config)?;
    if config.sources.is_empty() {
        tracing::warn!("the config has no [[source]]: nothing to ingest; the dashboard shows what the data directory holds");
    }
    let dashboard = crate::serve::start(config, &args.serve)?;
    let ingest = IngestArgs {
        once: false,
        paths: Vec::new(),
        format: "scopewatch".into(),
        tenant: None,
        env: "prod".into(),
        source: "cli".into(),
        quiet: true,
        no_rules: false,
    };
    let code = crate::ingest::run(config, ingest, Some(detection))?;
    dashboard
        .join()
        .map_err(|_| anyhow::anyhow!("the dashboard thread panicked"))?
        .context("the dashboard stopped with an error")?;
    Ok(code)
}
