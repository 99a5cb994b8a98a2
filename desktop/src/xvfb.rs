//! A virtual X server (Xvfb) on a display of its own, for tests, benchmarks
//! and headless runs: [`Xvfb::start`] lets the server pick a free display
//! (`-displayfd`), waits until it accepts connections, and kills it when
//! dropped. `-noreset` keeps the screen's contents when the last client
//! leaves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why Xvfb could not be started.
#[derive(Debug, thiserror::Error)]
pub enum XvfbError {
    /// The program could not be run.
    #[error("cannot run Xvfb (install it with `apt-get install xvfb`): {0}")]
    Spawn(std::io::Error),
    /// It did not say which display it took, or never accepted.
    #[error("Xvfb did not start: {0}")]
    NotReady(String),
}

/// A running Xvfb; killed when dropped.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    /// The display name, e.g. `:3`.
    pub display: String,
}

/// How long Xvfb may take to start.
const START: Duration = Duration::from_secs(20);

impl Xvfb {
    /// Starts a `width`×`height` 24-bit screen.
    pub fn start(width: u16, height: u16) -> Result<Xvfb, XvfbError> {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1"])
            .args(["-screen", "0", &format!("{width}x{height}x24")])
            .args(["-noreset", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(XvfbError::Spawn)?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| XvfbError::NotReady(e.to_string()))?;
        }
        let number = line.trim();
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            let _ = child.kill();
            return Err(XvfbError::NotReady(format!("it printed {line:?}")));
        }
        let x = Xvfb {
            child,
            display: format!(":{number}"),
        };
        let until = Instant::now() + START;
        while x11rb::connect(Some(&x.display)).is_err() {
            if Instant::now() > until {
                return Err(XvfbError::NotReady(format!(
                    "{} accepts no connection",
                    x.display
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(x)
    }
}

impl Xvfb {
    /// The server's process ID (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
