//! What both windows share: their options, the actions they send, their
//! error, and how a window is opened (X11, OpenGL through glow, any thread)
//! and closed.

use std::sync::mpsc::Sender;
use std::sync::OnceLock;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use conclave_protocol::input::InputEvent;
use eframe::egui;

/// How long a window shows why the session ended before it closes.
pub const ENDED_LINGER: Duration = Duration::from_secs(3);

/// The fill of a file's progress bar.
pub const TRANSFER_BLUE: egui::Color32 = egui::Color32::from_rgb(30, 110, 200);

/// Draws a progress bar for each of `transfers` (R23, R24).
pub(crate) fn progress_bars(ui: &mut egui::Ui, transfers: &[crate::model::TransferView]) {
    for t in transfers {
        let text = format!(
            "{}: {} {} / {} KB",
            t.label,
            t.state,
            t.done / 1000,
            t.size / 1000
        );
        ui.add(
            egui::ProgressBar::new(t.fraction())
                .fill(TRANSFER_BLUE)
                .text(text),
        );
    }
}

/// What the user did in a window, for the app to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiAction {
    /// Input for the remote desktop, in its pixels (viewer only; sent only
    /// while [`ControlView::Active`](crate::ControlView::Active)).
    Input(InputEvent),
    /// The master asks for remote control.
    RequestControl,
    /// The master gives remote control back.
    ReleaseControl,
    /// The master switches between controlling and watching only.
    ToggleViewOnly,
    /// The master admits the waiting participant with this number.
    Admit(u32),
    /// The master refuses the waiting participant with this number.
    DenyAdmission(u32),
    /// The participant allows the control asked for in the consent prompt.
    Accept,
    /// The participant refuses it.
    Deny,
    /// The participant ends remote control at once (the banner's Stop).
    Stop,
    /// The window was closed: leave the session. Sent once, as the window
    /// closes, whatever closed it (the user, [`Model::ended`](crate::Model::ended),
    /// [`WindowOptions::close_after`]).
    Leave,
}

/// How the viewer scales the remote screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// Scaled to fit the window, aspect ratio kept.
    #[default]
    Fit,
    /// One remote pixel per screen pixel, with scroll bars when larger.
    OneToOne,
}

/// Where and how a window opens.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOptions {
    /// The window's title.
    pub title: String,
    /// Its inner size in points (the banner keeps it fixed).
    pub size: (f32, f32),
    /// Its top-left corner on the screen, or `None` to let the window
    /// manager place it.
    pub position: Option<(f32, f32)>,
    /// Close by itself after this long (for tests and demonstrations).
    pub close_after: Option<Duration>,
    /// How the viewer scales the remote screen at first (the user can
    /// switch); the banner ignores it.
    pub scale: Scale,
}

impl WindowOptions {
    /// A viewer window of 1280×800 points.
    pub fn viewer(title: impl Into<String>) -> WindowOptions {
        WindowOptions {
            title: title.into(),
            size: (1280.0, 800.0),
            position: None,
            close_after: None,
            scale: Scale::Fit,
        }
    }

    /// A banner of 360×330 points, room for the roster, a consent prompt
    /// and the Stop button.
    pub fn banner(title: impl Into<String>) -> WindowOptions {
        WindowOptions {
            size: (360.0, 330.0),
            ..WindowOptions::viewer(title)
        }
    }
}

/// Why a window could not be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UiError {
    /// The window or its OpenGL context could not be created, or the event
    /// loop failed: usually no X display (set `DISPLAY`) or no OpenGL
    /// driver (install Mesa: libgl1, libegl1, libgl1-mesa-dri).
    #[error(
        "cannot show the window: {0} (is DISPLAY set to an X server, and Mesa's OpenGL installed?)"
    )]
    Window(String),
    /// A window was run on another thread than the process's first window:
    /// the windowing library allows one event loop per process, bound to
    /// the thread that made it. The caller's mistake.
    #[error("windows must all be run on the thread that ran the first one")]
    OtherThread,
}

/// The thread that owns the process's event loop, once a window ran.
static WINDOW_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Opens a window and runs it until it closes, then sends
/// [`UiAction::Leave`].
///
/// eframe keeps the winit event loop in a thread-local and reuses it for
/// each window, and winit refuses a second event loop in a process; so the
/// first thread to run a window is the only one that may, which this
/// checks up front rather than failing inside winit.
pub(crate) fn run<A: eframe::App + 'static>(
    options: &WindowOptions,
    viewport: egui::ViewportBuilder,
    actions: &Sender<UiAction>,
    make_app: impl FnOnce(&egui::Context) -> A,
) -> Result<(), UiError> {
    let me = thread::current().id();
    if *WINDOW_THREAD.get_or_init(|| me) != me {
        return Err(UiError::OtherThread);
    }
    let mut viewport = viewport
        .with_title(options.title.clone())
        .with_inner_size(options.size);
    if let Some(position) = options.position {
        viewport = viewport.with_position(position);
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        // Return when the window closes, so that the app goes on (and may
        // open another window on this thread).
        run_and_return: true,
        event_loop_builder: Some(Box::new(|builder| {
            use winit::platform::x11::EventLoopBuilderExtX11 as _;
            builder.with_x11().with_any_thread(true);
        })),
        // A remote screen is shown as it is: no noise added to its pixels.
        dithering: false,
        // Ctrl+C, Ctrl+V… are meant for the remote desktop, as keys.
        clipboard_shortcuts: false,
        persist_window: false,
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        &options.title,
        native,
        Box::new(|cc| Ok(Box::new(make_app(&cc.egui_ctx)))),
    )
    .map_err(|e| UiError::Window(e.to_string()))?;
    // The app may have gone already; then no one needs to hear it.
    let _ = actions.send(UiAction::Leave);
    Ok(())
}

/// When a window closes by itself: after [`WindowOptions::close_after`], or
/// [`ENDED_LINGER`] after the model says the session ended.
#[derive(Debug)]
pub(crate) struct Closing {
    opened: Instant,
    close_after: Option<Duration>,
    ended_at: Option<Instant>,
}

impl Closing {
    pub(crate) fn new(options: &WindowOptions) -> Closing {
        Closing {
            opened: Instant::now(),
            close_after: options.close_after,
            ended_at: None,
        }
    }

    /// Closes the window when its time has come, else asks to be woken then.
    pub(crate) fn tick(&mut self, ctx: &egui::Context, ended: bool) {
        let now = Instant::now();
        if ended && self.ended_at.is_none() {
            self.ended_at = Some(now);
        }
        let deadline = [
            self.close_after.map(|d| self.opened + d),
            self.ended_at.map(|t| t + ENDED_LINGER),
        ]
        .into_iter()
        .flatten()
        .min();
        match deadline {
            Some(at) if at <= now => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            Some(at) => ctx.request_repaint_after(at - now),
            None => {}
        }
    }
}
