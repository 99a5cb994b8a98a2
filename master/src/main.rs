//! `conclave-master`: the master app. At start it checks its own branded
//! build (R10) and refuses to run when the check fails. So far it can show
//! what its build carries; sessions come with the sessions work.

use std::process::ExitCode;

use clap::Parser;
use conclave_protocol::artefact::Role;

#[derive(Debug, Parser)]
#[command(name = "conclave-master", version, about = "Conclave master app")]
struct Cli {
    /// Print the relay list, policy profile and branding baked into this build.
    #[arg(long)]
    show_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match conclave_client::build::start("conclave-master", Role::Master, cli.show_config) {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
