//! `starling`: the command-line client of a Starling node. A thin layer over
//! `starling_core::Node`: argument parsing (`args`), the at-rest key
//! (`keys`), one function per command (`commands`), rendering (`output`)
//! and error reporting with documented exit statuses (`error`).

mod args;
mod commands;
mod dm_commands;
mod error;
mod keys;
mod net_commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::error::{CliError, CliResult, Kind};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and exit 0.
            let _ = e.print();
            if e.exit_code() == 0 {
                return ExitCode::SUCCESS;
            }
            if std::env::args_os().any(|a| a == "--json") {
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or("usage error");
                let message = first.strip_prefix("error: ").unwrap_or(first);
                let err = CliError::new(Kind::Usage, message).hint("see `starling --help`");
                output::print_json(&err.to_json());
            }
            return ExitCode::from(Kind::Usage.code());
        }
    };
    init_tracing();
    let as_json = cli.json;
    match run(cli) {
        Ok(report) => {
            report.print(as_json);
            ExitCode::SUCCESS
        }
        Err(err) => {
            if as_json {
                output::print_json(&err.to_json());
            }
            eprintln!("{err}");
            err.exit_code()
        }
    }
}

fn run(cli: Cli) -> CliResult<output::Report> {
    let data_dir = resolve_data_dir(cli.data_dir)?;
    if let args::Command::Net(command) = cli.command {
        return net_commands::run(&data_dir, cli.insecure_key_file, command, cli.json);
    }
    if let args::Command::Dm(command) = cli.command {
        return dm_commands::run(&data_dir, cli.insecure_key_file, command);
    }
    commands::run(&data_dir, cli.insecure_key_file, cli.command)
}

/// `--data-dir`, else `STARLING_DATA_DIR` (both handled by clap), else the
/// platform data dir (`ProjectDirs("org", "starling", "starling")`).
fn resolve_data_dir(flag: Option<PathBuf>) -> CliResult<PathBuf> {
    if let Some(dir) = flag.filter(|d| !d.as_os_str().is_empty()) {
        return Ok(dir);
    }
    directories::ProjectDirs::from("org", "starling", "starling")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| {
            CliError::other("cannot determine the platform data dir (no home directory?)")
                .hint("pass --data-dir DIR or set STARLING_DATA_DIR")
        })
}

/// Diagnostics go to stderr, off unless `RUST_LOG` asks for them.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
