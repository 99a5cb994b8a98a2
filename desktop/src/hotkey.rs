//! The global stop hotkey (R22): a key grabbed on the X display's root
//! window, so that it reaches this app whichever window has the focus, and
//! ends remote control at once.
//!
//! F11 by default ([`STOP_KEYSYM`]). The grab takes the key with any
//! modifiers. Remote input cannot press it: the input events a master may
//! send name no function keys ([`conclave_protocol::input::NamedKey`]).
//! The watcher thread polls its own connection every
//! [`POLL`] and ends when the [`StopHotkey`] is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, GrabMode, ModMask};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

/// The X keysym of F11.
pub const STOP_KEYSYM: u32 = 0xffc8;
/// How often the watcher looks for the key.
pub const POLL: Duration = Duration::from_millis(10);

/// Why the hotkey could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HotkeyError {
    /// No X display.
    #[error("cannot open the X display for the stop hotkey: {0}")]
    Connect(String),
    /// The keyboard has no key for the keysym.
    #[error("no key on this keyboard produces keysym {0:#x}")]
    NoKey(u32),
    /// Another client holds the key already.
    #[error("the stop hotkey is taken by another program: {0}")]
    Grab(String),
}

fn conn_err(e: impl std::fmt::Display) -> HotkeyError {
    HotkeyError::Connect(e.to_string())
}

/// A grabbed hotkey; released when dropped.
#[derive(Debug)]
pub struct StopHotkey {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StopHotkey {
    /// Grabs `keysym` on `display` (`None`: `DISPLAY`) and calls `pressed`
    /// from a thread of its own each time it is pressed.
    pub fn grab(
        display: Option<&str>,
        keysym: u32,
        mut pressed: impl FnMut() + Send + 'static,
    ) -> Result<StopHotkey, HotkeyError> {
        let (conn, screen) = x11rb::connect(display).map_err(conn_err)?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .map(|s| s.root)
            .ok_or_else(|| HotkeyError::Connect("no such screen".into()))?;
        let keycodes = keycodes_for(&conn, keysym)?;
        for &code in &keycodes {
            conn.grab_key(
                true,
                root,
                ModMask::ANY,
                code,
                GrabMode::ASYNC,
                GrabMode::ASYNC,
            )
            .map_err(conn_err)?
            .check()
            .map_err(|e| HotkeyError::Grab(e.to_string()))?;
        }
        conn.flush().map_err(conn_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("stop-hotkey".into())
            .spawn(move || watch(&conn, &keycodes, &stopping, &mut pressed))
            .map_err(|e| HotkeyError::Connect(e.to_string()))?;
        Ok(StopHotkey {
            stop,
            thread: Some(thread),
        })
    }
}

fn watch(conn: &RustConnection, keycodes: &[u8], stop: &AtomicBool, pressed: &mut dyn FnMut()) {
    while !stop.load(Ordering::Relaxed) {
        match conn.poll_for_event() {
            Ok(Some(Event::KeyPress(e))) if keycodes.contains(&e.detail) => pressed(),
            Ok(Some(_)) => {}
            Ok(None) => std::thread::sleep(POLL),
            Err(_) => return,
        }
    }
}

impl Drop for StopHotkey {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The keycodes whose keysyms include `keysym`.
fn keycodes_for(conn: &RustConnection, keysym: u32) -> Result<Vec<u8>, HotkeyError> {
    let setup = conn.setup();
    let (min, max) = (setup.min_keycode, setup.max_keycode);
    let count = max.saturating_sub(min).saturating_add(1);
    let map = conn
        .get_keyboard_mapping(min, count)
        .map_err(conn_err)?
        .reply()
        .map_err(conn_err)?;
    let per = usize::from(map.keysyms_per_keycode.max(1));
    let codes: Vec<u8> = map
        .keysyms
        .chunks(per)
        .zip(min..=max)
        .filter(|(syms, _)| syms.contains(&keysym))
        .map(|(_, code)| code)
        .collect();
    if codes.is_empty() {
        return Err(HotkeyError::NoKey(keysym));
    }
    Ok(codes)
}
