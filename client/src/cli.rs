//! The headless command line both apps share: events out (text for people,
//! or JSON lines for scripts), commands in (one per line on standard input).
//!
//! Standard input reaching its end does not end the session, so an app
//! started with no input keeps running; Ctrl-C or SIGTERM leaves (a
//! participant) or ends (the master) the session cleanly. Nothing is written
//! anywhere but standard output and standard error (R14).
//!
//! An app with a window runs the same command line beside it: the window
//! on the main thread ([`run_with_window`]), the session on the runtime's
//! workers, each event shown in the window as it is printed
//! ([`drive_with`]), and the window's commands sent from a thread of
//! their own ([`CommandSender`]).

use std::io::Write;
use tokio::io::AsyncBufReadExt;

use crate::events::{parse_command, Command, Event};
use crate::screen::{ShareOptions, SourceSpec};
use crate::session::{Running, SessionHandle};

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Sentences for people.
    Text,
    /// One JSON object per line.
    Json,
}

impl Output {
    /// JSON lines when `json`, else text.
    pub fn json_if(json: bool) -> Output {
        if json {
            Output::Json
        } else {
            Output::Text
        }
    }
}

/// Exit code when the session was aborted because traffic was tampered with.
pub const EXIT_TAMPERED: u8 = 4;
/// Exit code when the session could not start or was refused.
pub const EXIT_FAILED: u8 = 1;

/// Logs go to standard error only; `RUST_LOG` sets the level (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A runtime with two worker threads (plenty for one session); exits the
/// process if there is none.
fn runtime_or_exit() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(i32::from(EXIT_FAILED));
        }
    }
}

/// Runs `app` on a runtime with two worker threads (plenty for one session)
/// and exits the process with the code it returns. The runtime is never
/// dropped: that would wait for the thread blocked reading standard input.
pub fn run_and_exit(app: impl std::future::Future<Output = u8>) -> ! {
    let runtime = runtime_or_exit();
    let code = runtime.block_on(app);
    std::process::exit(i32::from(code))
}

/// What to share when presenting, from a `--screen` argument: `none`, a
/// [`SourceSpec`], or (no argument) the X
/// display in `DISPLAY` when there is one.
pub fn share_option(arg: Option<&str>) -> Result<Option<ShareOptions>, String> {
    match arg {
        Some("none") => Ok(None),
        Some(spec) => SourceSpec::parse(spec).map(|s| Some(ShareOptions::new(s))),
        None if std::env::var_os("DISPLAY").is_some() => {
            Ok(Some(ShareOptions::new(SourceSpec::X11 {
                display: None,
                monitor: None,
            })))
        }
        None => Ok(None),
    }
}

/// One event as a line of text.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Connected { relay, transport } => format!("connected to relay {relay} over {transport}"),
        Event::SessionOpened { session, kind } => {
            format!("{kind} session {session} is open: give participants this ID")
        }
        Event::Announced {
            licensee,
            moderator,
            kind,
        } => format!("{kind} session of {moderator} ({licensee}), verified"),
        Event::JoinCode { safety_code } => format!(
            "safety code of this join: {safety_code} (a moderator who admits you by hand sees the same)"
        ),
        Event::AdmissionRequested {
            peer,
            name,
            host,
            safety_code,
        } => format!(
            "participant {peer} \"{name}\" on {host} asks to join, safety code {safety_code}: type \"admit {peer}\" or \"deny {peer}\""
        ),
        Event::Admitted {
            peer,
            name,
            host,
            password_verified,
        } => format!(
            "participant {peer} \"{name}\"{} admitted{}",
            if host.is_empty() { String::new() } else { format!(" on {host}") },
            if *password_verified { " (password verified)" } else { "" }
        ),
        Event::JoinFailed { peer, reason } => match peer {
            Some(p) => format!("join of participant {p} failed: {reason}"),
            None => format!("joining failed: {reason}"),
        },
        Event::Left { peer, name, reason } => format!("participant {peer} \"{name}\" is gone ({reason})"),
        Event::Epoch {
            epoch,
            session_code,
            locked,
            members,
        } => {
            let list: Vec<String> = members
                .iter()
                .map(|m| {
                    if m.rights.is_empty() {
                        format!("{} {}", m.peer, m.name)
                    } else {
                        format!("{} {} [{}]", m.peer, m.name, m.rights.join(","))
                    }
                })
                .collect();
            format!(
                "new key (epoch {epoch}), session code {session_code}{}; members: {}",
                if *locked { ", locked" } else { "" },
                list.join("; ")
            )
        }
        Event::Rights { peer, rights } => format!(
            "rights of participant {peer}: {}",
            if rights.is_empty() { "none".to_string() } else { rights.join(", ") }
        ),
        Event::Locked { locked } => {
            if *locked {
                "session locked: nobody else can join".into()
            } else {
                "session unlocked".into()
            }
        }
        Event::Chat { from, name, text } => format!("<{name} ({from})> {text}"),
        Event::PolicyDropped { class, message } => format!("the relay dropped {class} frames: {message}"),
        Event::Refused { message, .. } => format!("refused: {message}"),
        Event::RelayLost { relay, reason } => format!("lost relay {relay} ({reason}); moving to the next relay"),
        Event::Resumed {
            relay,
            transport,
            gap_ms,
        } => format!("the session continues on relay {relay} over {transport} after {gap_ms} ms"),
        Event::Presenter { peer } => match peer {
            Some(1) => "the moderator presents".into(),
            Some(p) => format!("participant {p} presents"),
            None => "nobody presents".into(),
        },
        Event::Sharing { active, source } => {
            if *active {
                format!("sharing {source}: everyone in the session sees it")
            } else {
                "screen sharing stopped".into()
            }
        }
        Event::ScreenStats {
            from,
            fps,
            bytes_per_s,
            latency_ms,
            latency_max_ms,
            width,
            height,
        } => format!(
            "screen of {from} ({width}x{height}): {fps} fps, {:.1} KB/s, latency {latency_ms} ms (max {latency_max_ms} ms)",
            *bytes_per_s as f64 / 1000.0
        ),
        Event::ControlRequested { by, seconds, default } => format!(
            "{by} asks to control this computer: type \"allow\" or \"deny\" within {seconds} s (then: {default}); \"stop\" or F11 ends control at any time"
        ),
        Event::Control { peer, state, reason } => format!("remote control of participant {peer}: {state} ({reason})"),
        Event::Hand { peer, raised } => {
            if *raised {
                format!("participant {peer} raised a hand")
            } else {
                format!("participant {peer} lowered the hand")
            }
        }
        Event::Recording { active, by } => {
            if *active {
                format!("{by} is recording this session")
            } else {
                format!("{by} stopped recording")
            }
        }
        Event::FileOffered { peer, id, name, size } => format!(
            "{peer} offers the file \"{name}\" ({size} bytes): type \"accept {peer} {id}\" or \"decline {peer} {id}\""
        ),
        Event::File { peer, id, direction, state, done, size, detail } => format!(
            "file {id} ({direction}, peer {peer}): {state} {done}/{size} bytes{}",
            if detail.is_empty() { String::new() } else { format!(" — {detail}") }
        ),
        Event::Shared { id, name, size, from, state: "available", .. } => format!(
            "{from} shares \"{name}\" ({size} bytes): type \"fetch {id}\""
        ),
        Event::Shared { id, name, state, done, size, detail, .. } => format!(
            "shared file {id} \"{name}\": {state} {done}/{size} bytes{}",
            if detail.is_empty() { String::new() } else { format!(" — {detail}") }
        ),
        Event::Warning { message } => format!("WARNING: {message}"),
        Event::Error { message } => format!("error: {message}"),
        Event::Ended { reason } => format!("session over: {reason}"),
    }
}

fn print(output: Output, event: &Event) {
    let line = match output {
        Output::Text => describe(event),
        Output::Json => serde_json::to_string(event).unwrap_or_default(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints one line that is not an event (e.g. the password the master drew),
/// as text or as a JSON object with the given `event` name and field.
pub fn print_extra(output: Output, event: &str, field: &str, value: &str, text: &str) {
    let line = match output {
        Output::Text => text.to_string(),
        Output::Json => serde_json::json!({ "event": event, field: value }).to_string(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a session to its end: prints events, passes commands from standard
/// input, and leaves on Ctrl-C or SIGTERM. Returns the exit code: 0 when a
/// session that started ended, [`EXIT_FAILED`] when it never started,
/// [`EXIT_TAMPERED`] when it was aborted for tampering. The caller should
/// exit the process with it at once (standard input is read on a thread
/// that a pending read would keep alive).
pub async fn drive(running: Running, output: Output) -> u8 {
    drive_with(running, output, |_| {}).await
}

/// [`drive`], handing each event to `on_event` too, after printing it (a
/// window's model follows the session this way). `on_event` runs on the
/// runtime: it must not block. To send commands from elsewhere as well,
/// keep a clone of `running.handle` (or a [`CommandSender`] made from it)
/// before calling this.
pub async fn drive_with(
    mut running: Running,
    output: Output,
    mut on_event: impl FnMut(&Event),
) -> u8 {
    let handle = running.handle.clone();
    let stdin = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match parse_command(&line) {
                Ok(command) => {
                    if !handle.send(command).await {
                        break;
                    }
                }
                Err(message) => print(output, &Event::Error { message }),
            }
        }
    });
    let handle = running.handle.clone();
    let signals = tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        handle.send(Command::Leave).await;
    });
    let mut tampered = false;
    let mut started = false;
    let mut code = EXIT_FAILED;
    while let Some(event) = running.events.recv().await {
        print(output, &event);
        on_event(&event);
        match &event {
            Event::Warning { .. } => tampered = true,
            Event::SessionOpened { .. } | Event::Admitted { .. } => started = true,
            Event::Ended { .. } => {
                code = if tampered {
                    EXIT_TAMPERED
                } else if started {
                    0
                } else {
                    EXIT_FAILED
                };
                break;
            }
            _ => {}
        }
    }
    stdin.abort();
    signals.abort();
    code
}

/// Sends commands to a session from a thread outside its runtime (a
/// window's thread, say), waiting until the session takes each one.
#[derive(Debug, Clone)]
pub struct CommandSender {
    handle: SessionHandle,
    runtime: tokio::runtime::Handle,
}

impl CommandSender {
    /// A sender for `handle`'s session. Call it on the session's runtime
    /// (in a task, or inside `Runtime::enter`): it keeps a handle on that
    /// runtime.
    pub fn new(handle: &SessionHandle) -> CommandSender {
        CommandSender {
            handle: handle.clone(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Sends `command`, blocking until the session takes it; `false` once
    /// the session is over. Never call it from a task of the runtime
    /// itself: it would block a worker (tokio refuses, with a panic).
    pub fn send(&self, command: Command) -> bool {
        self.runtime.block_on(self.handle.send(command))
    }
}

/// How long, after its window closed (which leaves the session), an app
/// waits for the session to end before it exits anyway.
pub const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Like [`run_and_exit`], with a window: runs `app` (the session) on the
/// runtime's two worker threads and `window` on the calling thread, then
/// exits with `app`'s code.
///
/// When `window` returns `Ok` the window was closed: it asked the session
/// to end, and the process exits once `app` returns, or after
/// [`LEAVE_GRACE`] with [`EXIT_FAILED`]. When it returns `Err` the window
/// could not be shown: the message is printed and the session goes on
/// without a window, on the command line, until it ends.
pub fn run_with_window(
    app: impl std::future::Future<Output = u8> + Send + 'static,
    window: impl FnOnce() -> Result<(), String>,
) -> ! {
    let runtime = runtime_or_exit();
    let session = runtime.spawn(app);
    let closed = window();
    let code = runtime.block_on(async move {
        let ended = match closed {
            Ok(()) => match tokio::time::timeout(LEAVE_GRACE, session).await {
                Ok(ended) => ended,
                Err(_) => {
                    eprintln!(
                        "the session did not end within {} s of closing the window",
                        LEAVE_GRACE.as_secs()
                    );
                    return EXIT_FAILED;
                }
            },
            Err(message) => {
                eprintln!("{message}; going on without a window (commands on standard input)");
                session.await
            }
        };
        // A panic in the session task: already reported on standard error.
        ended.unwrap_or(EXIT_FAILED)
    });
    std::process::exit(i32::from(code))
}
