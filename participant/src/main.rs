//! `conclave-participant`: the participant app. At start it checks its own
//! branded build (R10) and refuses to run when the check fails (exit code 3).
//!
//! `conclave-participant join ID [--password …]` finds the session's relay
//! from the ID alone (R18), joins, shows the moderator's verified name and
//! the safety code, and then takes commands, one per line on standard input:
//! `chat TEXT`, `allow`, `deny`, `stop`, `view-only on|off`, `leave`. With
//! `--json`, every event is a JSON line for scripts. Ctrl-C or SIGTERM
//! leaves.
//!
//! With an X display (`DISPLAY`) and without `--headless`, the banner
//! (R22) opens beside that command line: always on top, it shows who is
//! connected and with which rights, asks for consent when the moderator
//! wants control, says loudly while control is active, and ends it with its
//! Stop button. The banner runs on the main thread, the session on the
//! runtime's two workers; closing the banner leaves the session, and the
//! session ending closes the banner. With `--headless`, or with no display,
//! the app is the command line alone.
//!
//! Nothing is written to disk (R14) but the files the user accepts (into
//! `--downloads DIR`).

use std::path::PathBuf;
use std::sync::mpsc;

use clap::{Parser, Subcommand};
use conclave_client::cli::share_option;
use conclave_client::cli::{drive, run_with_window, Output, EXIT_FAILED};
use conclave_client::collab::MediaOptions;
use conclave_client::connect::{Attempts, Who};
use conclave_client::session::{join, JoinOptions};
use conclave_protocol::artefact::Role;
use conclave_protocol::frame::SessionId;
use conclave_protocol::trailer::VerifiedBuild;
use conclave_ui::{
    drive_with_window, run_banner, Bridge, Model, SharedBridge, SharedModel, WindowOptions,
};
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
    /// What to share when asked to present (support: always): `x11[:DISPLAY[:MONITOR]]`, one window `x11:DISPLAY:window=ID`, `synthetic:WORKLOAD[:WxH]` or `none` [default: the X display in DISPLAY, if any].
    #[arg(long, value_name = "SCREEN")]
    screen: Option<String>,
    /// No banner, even with a display: events on standard output, commands on standard input.
    #[arg(long)]
    headless: bool,
    /// Where files you accept are saved [default: the working directory].
    #[arg(long, value_name = "DIR")]
    downloads: Option<PathBuf>,
}

fn parse_session(text: &str) -> Result<String, String> {
    if text.chars().all(|c| c.is_ascii_digit() || c == '-') && !text.is_empty() {
        Ok(text.replace('-', ""))
    } else {
        Err(format!("{text:?} is not a session ID: it has only digits"))
    }
}

fn main() {
    conclave_ui::leave_no_shader_cache();
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
            sink: None,
            downloads: args.downloads,
            record: None,
        },
    };
    if !args.headless && std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty()) {
        join_with_banner(build, options, output)
    }
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

/// Runs the session with the banner on this thread; never returns.
fn join_with_banner(build: VerifiedBuild, options: JoinOptions, output: Output) -> ! {
    let title = build.config.branding.product_name.as_str().to_string();
    let model = SharedModel::new(Model {
        title: "Joining the session…".into(),
        ..Model::default()
    });
    let bridge = SharedBridge::new(Bridge::participant(model.clone()));
    let (actions, from_window) = mpsc::channel();
    run_with_window(
        async move {
            let running = match join(build, options).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("conclave-participant: {e}");
                    bridge.with(|b| b.end(format!("could not join: {e}")));
                    return EXIT_FAILED;
                }
            };
            drive_with_window(running, output, bridge, from_window, "banner-actions").await
        },
        move || {
            run_banner(WindowOptions::banner(title), model, actions)
                .map_err(|e| format!("conclave-participant: {e}"))
        },
    )
}
