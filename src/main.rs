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

use clap::Parser;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(message) = cli::check_flag_variables(&argv, |name| std::env::var_os(name)) {
        eprintln!("scopewatch: error: {message}");
        return ExitCode::from(2);
    }
    let args = cli::Cli::parse();
    match commands::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("scopewatch: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
