//! `scopewatch`: the command line. Parsing lives in `cli`, each verb in
//! `commands`; the work itself is in the library crates.

mod cli;
mod commands;
mod ingest;
mod report;
mod rules;
mod run;
mod serve;
mod sql;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let parsed = cli::Cli::try_parse();
    // Help and version never depend on the environment: they explain it.
    if let Err(e) = &parsed {
        if matches!(
            e.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            e.exit();
        }
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(message) = cli::check_flag_variables(&argv, |name| std::env::var_os(name)) {
        eprintln!("scopewatch: error: {message}");
        return ExitCode::from(2);
    }
    let args = parsed.unwrap_or_else(|e| e.exit());
    match commands::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("scopewatch: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
