//! `airlock-probe [--plan JSON]`: runs the plan (or `AIRLOCK_PROBE_PLAN`) and prints the
//! report. Exit status: 0 every check passed, 1 some failed, 2 bad usage.

use std::io::Write;
use std::process::ExitCode;

use airlock_probe::attempt::{self, ProbeEnv};
use airlock_probe::{Plan, ENV_PLAN};

const USAGE: &str = "usage: airlock-probe [--plan JSON]   (or AIRLOCK_PROBE_PLAN=JSON)\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = match args.as_slice() {
        [] => std::env::var(ENV_PLAN).ok(),
        [flag, plan] if flag == "--plan" => Some(plan.clone()),
        _ => None,
    };
    let Some(text) = text else {
        return usage(USAGE);
    };
    let plan = match Plan::from_json(&text) {
        Ok(plan) => plan,
        Err(error) => return usage(&format!("{error}\n")),
    };
    let env = ProbeEnv {
        http_proxy: std::env::var("HTTP_PROXY")
            .or_else(|_unset| std::env::var("http_proxy"))
            .ok(),
        resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let report = attempt::run(&plan, &env);
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{}", report.to_json()).and_then(|()| out.flush());
    match (written, report.passed) {
        (Err(_closed), _) => ExitCode::from(2),
        (Ok(()), true) => ExitCode::SUCCESS,
        (Ok(()), false) => ExitCode::from(1),
    }
}

fn usage(message: &str) -> ExitCode {
    // Nothing useful can be done if stderr is closed too.
    let _ignored = std::io::stderr().write_all(message.as_bytes());
    ExitCode::from(2)
}
