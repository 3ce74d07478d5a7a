//! `airlock-egress` binary entry point: parse the command line, set up tracing, run.

use std::process::ExitCode;

use airlock_egress::cli::{init_tracing, Cli, Command};
use clap::Parser;

/// `EX_USAGE`: the configuration is invalid.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("airlock-egress: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check(args) => runtime.block_on(airlock_egress::check::main(args)),
        Command::Serve(args) => {
            let config = match args.config(|var| std::env::var(var).ok()) {
                Ok(config) => config,
                Err(error) => {
                    eprint!("airlock-egress: {error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            // Held until exit: dropping it writes out the buffered log lines.
            let _log_guard = match init_tracing() {
                Ok(guard) => guard,
                Err(error) => {
                    eprintln!("airlock-egress: cannot start the log writer: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(airlock_egress::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    let code = error.exit_code();
                    eprintln!("airlock-egress: {:#}", anyhow::Error::from(error));
                    ExitCode::from(code)
                }
            }
        }
    }
}
