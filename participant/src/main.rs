//! `conclave-participant`: the participant app. At start it checks its own branded
//! build (R10) and refuses to run when the check fails. So far it can show
//! what its build carries; sessions come with the sessions work.

use std::process::ExitCode;

use clap::Parser;
use conclave_protocol::artefact::Role;

#[derive(Debug, Parser)]
#[command(name = "conclave-participant", version, about = "Conclave participant app")]
struct Cli {
    /// Print the relay list, policy profile and branding baked into this build.
    #[arg(long)]
    show_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let build = match conclave_client::build::load_own_build(Role::Participant, conclave_protocol::time::UnixTime(now)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("conclave-participant: refusing to run: {e}");
            return ExitCode::from(3);
        }
    };
    if cli.show_config {
        print!("{}", conclave_client::build::describe(&build));
    } else {
        println!("{} {}: build verified. Run with --show-config to see what it carries.", build.config.branding.product_name, build.config.version);
    }
    ExitCode::SUCCESS
}
