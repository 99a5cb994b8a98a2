//! `conclave-master`: the master app. At start it checks its own branded
//! build (R10) and refuses to run when the check fails (exit code 3).
//!
//! `conclave-master start --support|--meeting` measures the relays baked
//! into the build, opens a session on the best one (R18), prints the session
//! ID, the password and the session code, and then takes commands, one per
//! line on standard input: `admit N`, `deny N`, `remove N`, `grant N
//! presenter,control,files,recording|none`, `lock`, `unlock`, `chat TEXT`,
//! `record [stop]`, `end`. With `--json`, every event is a JSON line for
//! scripts. Ctrl-C or SIGTERM ends the session for everyone.
//!
//! With an X display (`DISPLAY`) and without `--headless`, the viewer window
//! (R21, R22) opens beside that command line: the shared screen, who is
//! connected, the live figures and the remote-control buttons. The window
//! runs on the main thread, the session on the runtime's two workers;
//! closing the window ends the session, and the session ending closes the
//! window. With `--headless`, or with no display, the app is the command
//! line alone.
//!
//! Nothing is written to disk (R14) but the files the user accepts (into
//! `--downloads DIR`) and the recording the user starts (into `--record
//! FILE`, R25).
//!
//! Two commands only read a recording, and run on any machine, with no
//! branded build:
//!
//! - `conclave-master verify-recording FILE` checks its signatures and hash
//!   chain and prints who signed it (the key's fingerprint) and whether it
//!   was finished or cut short: exit 0; or says where and how it was
//!   altered or damaged: exit 1.
//! - `conclave-master play-recording FILE` replays it: the screen in a
//!   viewer window at the recorded pace (`--speed X` for faster or slower),
//!   chat and notes printed as a timeline with their times. With
//!   `--headless` (or no display) it prints the timeline at once (paced
//!   only with `--speed`), and `--last-frame FILE.png` saves the last
//!   picture shown. Entries a cut-short recording holds after its last
//!   signed checkpoint are marked unverified, after a warning line.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use conclave_client::cli::share_option;
use conclave_client::cli::{drive, print_extra, run_with_window, Output, EXIT_FAILED};
use conclave_client::collab::MediaOptions;
use conclave_client::connect::{Attempts, Who};
use conclave_client::relays::generate_password;
use conclave_client::screen::MAX_VIEWER_PIXELS;
use conclave_client::session::{start_master, MasterOptions};
use conclave_media::frame::Frame;
use conclave_protocol::artefact::Role;
use conclave_protocol::recording::{self, RecordingError};
use conclave_protocol::stage1::SessionKind;
use conclave_protocol::trailer::VerifiedBuild;
use conclave_ui::replay::{self, parse_speed, Ending, Player, UNVERIFIED_WARNING};
use conclave_ui::{
    drive_with_window, run_viewer, Bridge, LatestFrame, Model, ScreenSink, SharedBridge,
    SharedModel, WindowOptions,
};
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
    /// Check a recording's signatures and hash chain (R25) and say who
    /// signed it; exit 1 if it was altered or damaged.
    VerifyRecording(VerifyRecording),
    /// Replay a recording: its screen in a window, chat and notes as a
    /// timeline.
    PlayRecording(PlayRecording),
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
    /// What to share when you present (meetings): `x11[:DISPLAY[:MONITOR]]`, one window `x11:DISPLAY:window=ID`, `synthetic:WORKLOAD[:WxH]` or `none` [default: the X display in DISPLAY, if any].
    #[arg(long, value_name = "SCREEN")]
    screen: Option<String>,
    /// No window, even with a display: events on standard output, commands on standard input.
    #[arg(long)]
    headless: bool,
    /// Where files you accept are saved [default: the working directory].
    #[arg(long, value_name = "DIR")]
    downloads: Option<PathBuf>,
    /// Where the recording goes when you start one with `record` (R25); a policy that forces recording needs it.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct VerifyRecording {
    /// The recording.
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
struct PlayRecording {
    /// The recording.
    file: PathBuf,
    /// No window, even with a display: print the timeline only.
    #[arg(long)]
    headless: bool,
    /// Pace: 1 as recorded, 2 twice as fast, 0.5 half as fast [default: 1 in a window; headless, no waiting].
    #[arg(long, value_name = "X", value_parser = parse_speed)]
    speed: Option<f64>,
    /// At the end, save the last picture shown as a PNG image.
    #[arg(long, value_name = "FILE.png")]
    last_frame: Option<PathBuf>,
}

fn main() {
    conclave_ui::leave_no_shader_cache();
    let cli = Cli::parse();
    // Reading a recording needs no branded build: any machine can check one.
    match &cli.command {
        Some(Cmd::VerifyRecording(args)) => verify_recording(&args.file),
        Some(Cmd::PlayRecording(args)) => play_recording(args),
        Some(Cmd::Start(_)) | None => {}
    }
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
            sink: None,
            downloads: args.downloads,
            record: args.record,
        },
    };
    if !args.headless && display_present() {
        start_with_window(build, options, password, output)
    }
    conclave_client::cli::run_and_exit(async move {
        let running = match start_master(build, options).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("conclave-master: {e}");
                return EXIT_FAILED;
            }
        };
        print_password(output, password.as_ref());
        drive(running, output).await
    });
}

/// Whether an X display is there for a window.
fn display_present() -> bool {
    std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
}

/// Prints the session's password, or that there is none.
fn print_password(output: Output, password: Option<&Zeroizing<String>>) {
    match password {
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
}

/// Runs the session with the viewer window on this thread; never returns.
fn start_with_window(
    build: VerifiedBuild,
    mut options: MasterOptions,
    password: Option<Zeroizing<String>>,
    output: Output,
) -> ! {
    let countdown = Duration::from_secs(u64::from(build.config.profile.control_countdown_secs));
    let title = format!("{} (master)", build.config.branding.product_name.as_str());
    let model = SharedModel::new(Model {
        title: "Opening the session…".into(),
        ..Model::default()
    });
    let screen = LatestFrame::new();
    options.media.sink = Some(Box::new(ScreenSink::new(screen.clone())));
    let bridge = SharedBridge::new(Bridge::master(model.clone(), countdown));
    let (actions, from_window) = mpsc::channel();
    run_with_window(
        async move {
            let running = match start_master(build, options).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("conclave-master: {e}");
                    bridge.with(|b| b.end(format!("the session could not start: {e}")));
                    return EXIT_FAILED;
                }
            };
            print_password(output, password.as_ref());
            bridge.with(|b| match &password {
                Some(p) => b.show_password(p),
                None => {
                    b.notice("no password: admit each participant after comparing the safety code")
                }
            });
            drive_with_window(running, output, bridge, from_window, "window-actions").await
        },
        move || {
            run_viewer(WindowOptions::viewer(title), model, screen, actions)
                .map_err(|e| format!("conclave-master: {e}"))
        },
    )
}

/// `verify-recording FILE`: prints the report and exits 0, or the reason
/// and exits 1.
fn verify_recording(file: &Path) -> ! {
    let verified = std::fs::File::open(file)
        .map_err(RecordingError::Io)
        .and_then(|f| recording::verify(std::io::BufReader::new(f)));
    match verified {
        Ok(report) => {
            println!("{report}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("conclave-master: {}: {e}", file.display());
            std::process::exit(1)
        }
    }
}

/// `play-recording FILE`: replays it in a window, or prints its timeline;
/// exits 0 when it played to its end (or the window was closed), 1 when it
/// was refused or the last picture could not be saved.
fn play_recording(args: &PlayRecording) -> ! {
    let opened = std::fs::File::open(&args.file)
        .map_err(RecordingError::Io)
        .and_then(|f| Player::open(std::io::BufReader::new(f), MAX_VIEWER_PIXELS));
    let player = match opened {
        Ok(p) => p,
        Err(e) => {
            eprintln!("conclave-master: {}: {e}", args.file.display());
            std::process::exit(1)
        }
    };
    let header = player.header();
    println!(
        "recording of session {} by {:?}, started at Unix time {}, signed by key {}",
        header.session,
        header.name.as_str(),
        header.started.0,
        header.recorder.fingerprint()
    );
    let code = if !args.headless && display_present() {
        play_in_window(player, args)
    } else {
        let stop = AtomicBool::new(false);
        let last_frame = args.last_frame.as_deref();
        finish_replay(player, &args.file, last_frame, args.speed, &stop, None)
    };
    std::process::exit(i32::from(code))
}

/// Replays into the viewer window (on this thread) from a thread of its own.
fn play_in_window<R: std::io::Read + Send + 'static>(
    player: Player<R>,
    args: &PlayRecording,
) -> u8 {
    let header = player.header();
    let title = format!(
        "Recording of session {} by {}",
        header.session,
        header.name.as_str()
    );
    let model = SharedModel::new(Model {
        title: title.clone(),
        replay: true,
        ..Model::default()
    });
    let screen = LatestFrame::new();
    let stop = Arc::new(AtomicBool::new(false));
    let shown = Shown {
        model: model.clone(),
        screen: screen.clone(),
    };
    let speed = args.speed.unwrap_or(1.0);
    let replaying = std::thread::Builder::new().name("replay".into()).spawn({
        let stop = Arc::clone(&stop);
        let last_frame = args.last_frame.clone();
        let file = args.file.clone();
        move || {
            let last_frame = last_frame.as_deref();
            finish_replay(player, &file, last_frame, Some(speed), &stop, Some(&shown))
        }
    });
    let replaying = match replaying {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conclave-master: cannot replay: {e}");
            return 1;
        }
    };
    // The viewer's buttons have nothing to do in a replay.
    let (actions, _ignored) = mpsc::channel();
    let shown = run_viewer(WindowOptions::viewer(title), model, screen, actions);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let code = replaying.join().unwrap_or(1);
    if let Err(e) = shown {
        eprintln!("conclave-master: {e} (--headless prints the timeline without a window)");
        return 1;
    }
    code
}

/// Where a replay in a window shows what it plays.
struct Shown {
    model: SharedModel,
    screen: LatestFrame,
}

/// Plays the recording to its end (or until `stop`), printing the timeline
/// and showing it in `window` if any, then saves the last picture if asked;
/// returns the exit code.
fn finish_replay<R: std::io::Read>(
    mut player: Player<R>,
    file: &Path,
    last_frame: Option<&Path>,
    speed: Option<f64>,
    stop: &AtomicBool,
    window: Option<&Shown>,
) -> u8 {
    let played = replay::play(&mut player, speed, stop, |step, player| {
        if step.first_unverified {
            println!("{UNVERIFIED_WARNING}");
            if let Some(w) = window {
                w.model.update(|m| m.push_notice(UNVERIFIED_WARNING));
            }
        }
        let line = step.line();
        if let Some(line) = &line {
            println!("{line}");
        }
        if let Some(w) = window {
            if let (replay::Played::Frame { .. }, Some(frame)) = (&step.played, player.canvas()) {
                w.screen.publish(frame);
            }
            let status = format!("{} · {}×", replay::clock(step.at_ms), speed.unwrap_or(1.0));
            w.model.update(|m| {
                m.status_line = status;
                if let Some(line) = line {
                    m.push_notice(line);
                }
            });
        }
    });
    let mut code = 0;
    match played {
        Ok(Ending::End) => {
            let report = player.report();
            println!("end of the recording\n{report}");
            if let Some(w) = window {
                let finished = if report.finished {
                    "end of the recording (finished properly)"
                } else {
                    "end of the recording: it was cut short"
                };
                w.model.update(|m| m.push_notice(finished));
            }
        }
        Ok(Ending::Stopped) => println!("replay stopped"),
        Err(e) => {
            eprintln!("conclave-master: {}: {e}", file.display());
            if let Some(w) = window {
                w.model
                    .update(|m| m.ended = Some(format!("the recording is refused: {e}")));
            }
            code = 1;
        }
    }
    if let Some(path) = last_frame {
        match player.canvas() {
            Some(frame) => match save_png(frame, path) {
                Ok(()) => println!("last picture saved to {}", path.display()),
                Err(e) => {
                    eprintln!("conclave-master: cannot save {}: {e}", path.display());
                    code = 1;
                }
            },
            None => {
                eprintln!(
                    "conclave-master: the recording shows no picture; {} not written",
                    path.display()
                );
                code = 1;
            }
        }
    }
    code
}

/// Saves `frame` as an RGB PNG image.
fn save_png(frame: &Frame, path: &Path) -> Result<(), image::ImageError> {
    let (pixels, _) = frame.as_bytes().as_chunks::<4>();
    let rgb: Vec<u8> = pixels.iter().flat_map(|&[b, g, r, _]| [r, g, b]).collect();
    image::save_buffer_with_format(
        path,
        &rgb,
        frame.width(),
        frame.height(),
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
}
