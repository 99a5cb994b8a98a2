//! # conclave-ui
//!
//! Conclave's windows: the master's **viewer** of a remote screen (R21,
//! R22) and the participant's **banner** (R22), always on top, that shows
//! who is connected and with which rights, asks for consent before remote
//! control starts, and stops it at once.
//!
//! The windows know nothing of networking or sessions. An app talks to a
//! window through three handles, all safe to use from any thread:
//!
//! | handle | direction | what goes through |
//! |---|---|---|
//! | [`SharedModel`] | app → window | the [`Model`]: title, status line, members and rights, control state, consent prompt, notices, why the session ended; [`SharedModel::update`] repaints the window |
//! | [`LatestFrame`] | decoder → viewer | the newest complete [`Frame`](conclave_media::frame::Frame); latest wins, never a queue |
//! | `Sender<`[`UiAction`]`>` | window → app | the user's actions: input for the remote desktop, request/release control, view only, allow/deny, Stop, Leave |
//!
//! [`run_viewer`] and [`run_banner`] show their window on the calling
//! thread until it closes (the user closed it, the model's
//! [`ended`](Model::ended) was set, or [`WindowOptions::close_after`]
//! passed), then send [`UiAction::Leave`] and return.
//!
//! The [`bridge`] is what an app puts between its session and these
//! handles: it reads the session's events (`conclave_client::events`) into
//! the model and turns the window's actions into the session's commands,
//! without touching the network itself.
//!
//! | module | what it holds |
//! |---|---|
//! | [`viewer`] | the master's window |
//! | [`banner`] | the participant's banner |
//! | [`model`] | what the windows show |
//! | [`latest`] | the latest-frame slot between decoder and viewer |
//! | [`replay`] | playing a recording back: verified entries, the screen decoded, chat and notes as a timeline, paced |
//! | [`bridge`] | the app side: session events into the model, window actions into session commands, decoded frames into the slot |
//!
//! ## Threads and the event loop
//!
//! winit, under eframe, allows **one event loop per process**, and eframe
//! keeps it in a thread-local to reuse for each window. So every window of
//! a process runs on one thread — the first that runs a window — one at a
//! time; running one on another thread returns [`UiError::OtherThread`]
//! instead of failing deep inside winit. That thread need not be `main`:
//! the event loop is built with winit's `with_any_thread(true)`, so an app
//! whose main thread runs its async runtime can give the windows a thread
//! of their own, and tests (whose test functions run on worker threads)
//! can show windows at all. X11 is forced (`with_x11()`), since the apps
//! run under X11 or Xvfb, and the renderer is OpenGL through glow.
//!
//! A process that must show windows on two displays, or two windows at
//! once, runs them in separate processes; the window tests do so (each
//! test runs its windows in a child process of its own).
//!
//! ## Why eframe with glow
//!
//! - It renders under Xvfb, with no GPU, on Mesa's llvmpipe (OpenGL
//!   through GLX or EGL), which is where the end-to-end tests and headless
//!   runs happen. At run time it needs libGL/libEGL and Mesa's drivers, and
//!   libX11, libxcursor, libxi, libxkbcommon-x11, all loaded with `dlopen`
//!   (Debian: libgl1 libegl1 libgl1-mesa-dri libx11-xcb1 libxcursor1 libxi6
//!   libxkbcommon-x11-0).
//! - It builds with no system `-dev` package: no pkg-config, no C
//!   compiler, no bindgen — every X11 and OpenGL symbol is loaded at run
//!   time.
//! - One dependency tree: winit, glutin, glow and egui, with no second GUI
//!   stack. The `wgpu` renderer (eframe's default) would add wgpu, naga and
//!   Vulkan loading for nothing llvmpipe's OpenGL cannot do, and the
//!   Wayland, accessibility and clipboard features are off.
//!
//! Build time, measured on this 2-core machine with `-j1`, debug, from
//! scratch: eframe's tree is about 130 crates (160 build units, no build
//! script compiling C); a build of this crate with everything it needs (the
//! protocol's cryptography and the media codec included) took 3 min 33 s,
//! and eframe alone 4 min 22 s while other builds shared the cores. The
//! longest units are egui, vello_cpu (its text rasteriser), x11rb-protocol
//! and winit, 13–29 s each. A rebuild of this crate alone takes seconds.
#![forbid(unsafe_code)]

pub mod banner;
pub mod bridge;
mod input;
pub mod latest;
pub mod model;
pub mod replay;
pub mod viewer;
mod window;

pub use banner::run_banner;
pub use bridge::{drive_with_window, forward_actions, Bridge, ScreenSink, SharedBridge};
pub use latest::LatestFrame;
pub use model::{
    Admission, ConsentPrompt, ControlView, MemberView, Model, SharedModel, TransferView,
};
pub use viewer::run_viewer;
pub use window::{Scale, UiAction, UiError, WindowOptions, ENDED_LINGER, TRANSFER_BLUE};

/// Keeps Mesa from writing its shader cache under the home directory, so
/// that the apps leave no files behind (R14). Call it first in `main`,
/// before any thread starts (it sets an environment variable).
pub fn leave_no_shader_cache() {
    if std::env::var_os("MESA_SHADER_CACHE_DISABLE").is_none() {
        std::env::set_var("MESA_SHADER_CACHE_DISABLE", "true");
    }
}
