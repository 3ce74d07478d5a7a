//! `airlock` binary entry point: parse the command line, set up tracing, run.

use std::process::ExitCode;

use airlock::cli::{CertsCommand, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Certs(CertsCommand::Init(args)) => args.run(&mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The CLI's one place that reports errors: the chain, outermost first.
            eprintln!("airlock: {error:#}");
            ExitCode::FAILURE
        }
    }
}
