//! `conclave-participant`: the participant app. At start it checks its own
//! branded build (R10) and refuses to run when the check fails (exit code 3).
//!
//! `conclave-participant join ID [--password …]` finds the session's relay
//! from the ID alone (R18), joins, shows the moderator's verified name and
//! the safety code, and then takes commands, one per line on standard input:
//! `chat TEXT`, `leave`. With `--json`, every event is a JSON line for
//! scripts. Ctrl-C or SIGTERM leaves. Nothing is written to disk (R14).

use clap::{Parser, Subcommand};
use conclave_client::cli::share_option;
use conclave_client::cli::{drive, Output, EXIT_FAILED};
use conclave_client::collab::MediaOptions;
use conclave_client::connect::{Attempts, Who};
use conclave_client::session::{join, JoinOptions};
use conclave_protocol::artefact::Role;
use conclave_protocol::frame::SessionId;
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(
    name = "conclave-participant",
    version,
    about = "Conclave participant app"
)]
struct Cli {
    /// Print the relay list, policy profile and branding baked into this build.
    #[arg(long)]
    show_config: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Join a session by its ID.
    Join(Join),
}

#[derive(Debug, clap::Args)]
struct Join {
    /// The session ID you were given (spaces allowed).
    #[arg(value_parser = parse_session, num_args = 1..)]
    session: Vec<String>,
    /// The session password, if the moderator gave you one (or CONCLAVE_PASSWORD).
    #[arg(long, env = "CONCLAVE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Your name as the moderator sees it [default: the system user name].
    #[arg(long)]
    name: Option<String>,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// What to share when asked to present (support: always): `x11[:DISPLAY[:MONITOR]]`, `synthetic:WORKLOAD[:WxH]` or `none` [default: the X display in DISPLAY, if any].
    #[arg(long, value_name = "SCREEN")]
    screen: Option<String>,
}

fn parse_session(text: &str) -> Result<String, String> {
    if text.chars().all(|c| c.is_ascii_digit() || c == '-') && !text.is_empty() {
        Ok(text.replace('-', ""))
    } else {
        Err(format!("{text:?} is not a session ID: it has only digits"))
    }
}

fn main() {
    let cli = Cli::parse();
    let build =
        conclave_client::build::start("conclave-participant", Role::Participant, cli.show_config);
    let Some(Cmd::Join(args)) = cli.command else {
        conclave_client::build::nothing_to_do(
            "conclave-participant",
            "conclave-participant join ID",
            cli.show_config,
        )
    };
    let digits = args.session.concat();
    let session = match digits.parse::<u64>() {
        Ok(id) => SessionId(id),
        Err(_) => {
            eprintln!("conclave-participant: {digits:?} is not a session ID");
            std::process::exit(2);
        }
    };
    conclave_client::cli::init_logging();
    let output = Output::json_if(args.json);
    let who = Who::this_process();
    let share = match share_option(args.screen.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conclave-participant: {e}");
            std::process::exit(2);
        }
    };
    let options = JoinOptions {
        session,
        password: args.password.map(Zeroizing::new),
        name: args.name.unwrap_or_else(|| who.os_user.to_string()),
        who,
        attempts: Attempts::default(),
        media: MediaOptions {
            share,
            ..MediaOptions::default()
        },
    };
    conclave_client::cli::run_and_exit(async move {
        match join(build, options).await {
            Ok(running) => drive(running, output).await,
            Err(e) => {
                eprintln!("conclave-participant: {e}");
                EXIT_FAILED
            }
        }
    });
}
