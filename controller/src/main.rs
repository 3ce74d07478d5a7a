//! `airlock` binary entry point: parse the command line, set up tracing, run.

use std::process::ExitCode;

use airlock::cli::{CertsCommand, Cli, Command};
use airlock::config::Config;
use clap::Parser;

/// EX_USAGE: the configuration is invalid.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Certs(CertsCommand::Init(args)) => args.run(&mut std::io::stdout().lock()),
        // The offline commands: the configuration, stdin and stdout.
        Command::Admin(admin) => match Config::from_env() {
            Ok(config) => admin.run(&config, &mut stdin(), &mut stdout()),
            Err(error) => return config_error(&error),
        },
        Command::Pools(pools) => match Config::from_env() {
            Ok(config) => pools.run(&config, &mut stdin(), &mut stdout()),
            Err(error) => return config_error(&error),
        },
        Command::Images(command) => command.run(&mut std::io::stdout()),
        Command::Doctor(args) => match args.run(&mut std::io::stdout()) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        Command::Health(args) => match args.run(&mut std::io::stdout()) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        Command::Serve => match Config::from_env() {
            Ok(config) => match airlock::serve::run_blocking(config) {
                Err(error) if error.is_configuration() => {
                    eprintln!("airlock: {error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
                served => served.map_err(anyhow::Error::from),
            },
            Err(error) => return config_error(&error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The CLI's one place that reports errors: the chain, outermost first.
            eprintln!("airlock: {error:#}");
            match error.downcast_ref::<airlock::ops::backup::BackupError>() {
                Some(backup) => ExitCode::from(backup.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn stdin() -> std::io::StdinLock<'static> {
    std::io::stdin().lock()
}

fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// Reports an invalid configuration: exit 64.
fn config_error(error: &airlock::config::ConfigError) -> ExitCode {
    eprintln!("airlock: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// `RUST_LOG` filters; `LOG_FORMAT=json` switches to JSON lines (for containers). The HTTP
/// and Docker client crates stay at INFO at most: their debug output carries request bodies,
/// and a container create body holds the sandbox's secret env values.
fn init_tracing() {
    let mut filter = tracing_subscriber::EnvFilter::from_default_env();
    for cap in ["bollard=info", "hyper=info", "hyper_util=info", "h2=info"] {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
