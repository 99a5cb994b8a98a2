//! `conclave-master`: the master app. At start it checks its own branded
//! build (R10) and refuses to run when the check fails (exit code 3).
//!
//! `conclave-master start --support|--meeting` measures the relays baked
//! into the build, opens a session on the best one (R18), prints the session
//! ID, the password and the session code, and then takes commands, one per
//! line on standard input: `admit N`, `deny N`, `remove N`, `grant N
//! presenter,control,files,recording|none`, `lock`, `unlock`, `chat TEXT`,
//! `end`. With `--json`, every event is a JSON line for scripts. Ctrl-C or
//! SIGTERM ends the session for everyone. Nothing is written to disk (R14).

use clap::{ArgGroup, Parser, Subcommand};
use conclave_client::cli::share_option;
use conclave_client::cli::{drive, print_extra, Output, EXIT_FAILED};
use conclave_client::collab::MediaOptions;
use conclave_client::connect::{Attempts, Who};
use conclave_client::relays::generate_password;
use conclave_client::session::{start_master, MasterOptions};
use conclave_protocol::artefact::Role;
use conclave_protocol::stage1::SessionKind;
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(name = "conclave-master", version, about = "Conclave master app")]
struct Cli {
    /// Print the relay list, policy profile and branding baked into this build.
    #[arg(long)]
    show_config: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Open a session and run it, taking commands on standard input.
    Start(Start),
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["support", "meeting"])))]
struct Start {
    /// A 1:1 remote-support session (locks itself once the customer is in, when policy says so).
    #[arg(long)]
    support: bool,
    /// A meeting with many participants.
    #[arg(long)]
    meeting: bool,
    /// Your name as participants see it [default: the system user name].
    #[arg(long)]
    name: Option<String>,
    /// The session password (visible to other local users in the process
    /// list; prefer the CONCLAVE_PASSWORD variable or --generate-password).
    #[arg(long, env = "CONCLAVE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Draw a random password (also done when policy requires one and none is given).
    #[arg(long, conflicts_with = "password")]
    generate_password: bool,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// What to share when you present (meetings): `x11[:DISPLAY[:MONITOR]]`, `synthetic:WORKLOAD[:WxH]` or `none` [default: the X display in DISPLAY, if any].
    #[arg(long, value_name = "SCREEN")]
    screen: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    let build = conclave_client::build::start("conclave-master", Role::Master, cli.show_config);
    let Some(Cmd::Start(args)) = cli.command else {
        conclave_client::build::nothing_to_do(
            "conclave-master",
            "conclave-master start --support` or `--meeting",
            cli.show_config,
        )
    };
    conclave_client::cli::init_logging();
    let output = Output::json_if(args.json);
    let who = Who::this_process();
    let share = match share_option(args.screen.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conclave-master: {e}");
            std::process::exit(2);
        }
    };
    let profile = &build.config.profile;
    let password = match args.password {
        Some(p) => Some(Zeroizing::new(p)),
        None if args.generate_password || profile.password_required => Some(generate_password(
            &profile.password_rules,
            &mut rand_core::OsRng,
        )),
        None => None,
    };
    let options = MasterOptions {
        kind: if args.support {
            SessionKind::Support
        } else {
            SessionKind::Meeting
        },
        moderator: args.name.unwrap_or_else(|| who.os_user.to_string()),
        password: password.clone(),
        who,
        attempts: Attempts::default(),
        media: MediaOptions {
            share,
            ..MediaOptions::default()
        },
    };
    conclave_client::cli::run_and_exit(async move {
        let running = match start_master(build, options).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("conclave-master: {e}");
                return EXIT_FAILED;
            }
        };
        match &password {
            Some(p) => print_extra(
                output,
                "password",
                "password",
                p,
                &format!("password: {}", p.as_str()),
            ),
            None => print_extra(
                output,
                "password",
                "password",
                "",
                "no password: admit each participant after comparing the safety code",
            ),
        }
        drive(running, output).await
    });
}
