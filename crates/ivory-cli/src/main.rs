//! `ivory`: the command line of the Ivory Connector SDK.
//!
//! Flags are parsed by clap into [`cli::Cli`]; each subcommand lives in its own module under
//! `cmd/` and returns an [`ExitCode`]. Exit codes are an interface scripts rely on: 0 success,
//! 1 a failed operation (reason on stderr), 2 a usage error.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let telemetry = init_telemetry(&cli);
    let code = match cmd::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    };
    // Flushes the last spans and metrics (bounded by the exporter timeout) before exiting.
    drop(telemetry);
    code
}

/// Logs, traces and metrics (`ivory-telemetry`: `OTEL_EXPORTER_OTLP_ENDPOINT`,
/// `OTEL_SERVICE_NAME`, `DEPLOY_ENV`, `IVORY_LOG_FORMAT`, `IVORY_LOG`). A service (`ivory serve`)
/// logs to stdout, as the platform's log collection expects; every other command logs to
/// stderr, its stdout being its result.
fn init_telemetry(cli: &cli::Cli) -> ivory_telemetry::Telemetry {
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let output = if matches!(cli.command, cli::Command::Serve(_)) {
        ivory_telemetry::LogOutput::Stdout
    } else {
        ivory_telemetry::LogOutput::Stderr
    };
    ivory_telemetry::init(ivory_telemetry::Options {
        default_filter: default.to_owned(),
        output,
    })
}
