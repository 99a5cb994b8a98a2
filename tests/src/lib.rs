//! # conclave-tests
//!
//! Support for end-to-end tests that run Conclave as its users do: real
//! relay processes on loopback, the portal's command line to make keys,
//! licenses and branded builds, and the branded master and participant apps
//! driven through their JSON-lines output and their standard input.
//!
//! | item | what it is |
//! |---|---|
//! | [`programs`] | the four programs, built once per test run |
//! | [`Portal`] | a portal on a fresh SQLite file: relays, profiles, licenses, builds |
//! | [`Relay`] | a relay process with its own key and loopback ports, or the hostile relay (`src/bin/hostile-relay.rs`); killed on drop |
//! | [`App`] | a running app: its events, its input, its exit |
//! | [`Sandbox`] | empty home, temporary and working directories, checked for residue (R14) |
//! | [`memory_contains`] | searches a live process's memory (the relay never saw the password) |
//!
//! The programs are other packages of the workspace, which cargo does not
//! build for this one's tests, so [`programs`] runs `cargo build` for them
//! into the same target directory on first use.
//!
//! Everything here serves tests, where a failure is a panic with a message
//! that says what was expected and what happened; the lints against
//! panicking are off for this crate alone.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// The longest any single wait in these tests may take before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Paths of the programs under test.
#[derive(Debug)]
pub struct Programs {
    /// `conclave-relay`.
    pub relay: PathBuf,
    /// `conclave-portal`.
    pub portal: PathBuf,
    /// `hostile-relay`, this package's relay gone bad.
    pub hostile_relay: PathBuf,
}

/// Builds the programs once (debug profile, this test's target directory)
/// and returns where they are. Panics with cargo's verdict if the build fails.
pub fn programs() -> &'static Programs {
    static BUILT: OnceLock<Programs> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Tests run from <target>/debug/deps; programs sit in <target>/debug.
        let exe = std::env::current_exe().unwrap_or_default();
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let target = profile_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--bins"])
            .args(["-p", "conclave-relay", "-p", "conclave-portal"])
            .args(["-p", "conclave-master", "-p", "conclave-participant"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "could not build the programs under test"
        );
        Programs {
            relay: profile_dir.join("conclave-relay"),
            portal: profile_dir.join("conclave-portal"),
            hostile_relay: profile_dir.join("hostile-relay"),
        }
    })
}

/// A port on 127.0.0.1 that nothing listens on (TCP).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A port on 127.0.0.1 that nothing listens on (UDP).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The admin passphrase of test portals.
const PASSPHRASE: &str = "a long admin passphrase for tests";

/// A portal on a fresh SQLite database, through its command line.
#[derive(Debug)]
pub struct Portal {
    dir: tempfile::TempDir,
    /// The portal's public key (hex), for relays.
    pub key: String,
}

impl Portal {
    /// Makes the portal's root key and the brand `acme`.
    pub fn new() -> Portal {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut p = Portal {
            dir,
            key: String::new(),
        };
        p.key = p.ok(&["init"]).trim().to_string();
        p.ok(&[
            "brand",
            "set",
            "acme",
            "--product",
            "Acme Support",
            "--organisation",
            "Acme Ltd",
        ]);
        p
    }

    /// Runs `conclave-portal ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&programs().portal)
            .arg("--db")
            .arg(self.dir.path().join("portal.db"))
            .args(args)
            .env("CONCLAVE_PORTAL_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap_or_else(|e| panic!("conclave-portal {args:?}: {e}"))
    }

    /// Runs `conclave-portal ARGS`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "conclave-portal {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file in the portal's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Adds `relay` to the relay list, with its real ports unless `quic`
    /// overrides the QUIC port (to point it at a black hole).
    pub fn add_relay(&self, relay: &RelaySpec, quic: Option<u16>) {
        let quic = quic.unwrap_or(relay.quic).to_string();
        let (tls, ws) = (relay.tls.to_string(), relay.websocket.to_string());
        self.ok(&[
            "relay",
            "add",
            &relay.name,
            "--host",
            "127.0.0.1",
            "--key",
            &relay.public_key,
            "--quic",
            &quic,
            "--tls",
            &tls,
            "--websocket",
            &ws,
        ]);
    }

    /// Sets profile `name` with `field=value` settings.
    pub fn profile(&self, name: &str, sets: &[&str]) {
        let mut args = vec!["profile", "set", name];
        for s in sets {
            args.push("--set");
            args.push(s);
        }
        self.ok(&args);
    }

    /// Issues a license under `profile`; its number.
    pub fn license(&self, profile: &str) -> String {
        self.ok(&[
            "license",
            "issue",
            "--licensee",
            "Acme Ltd",
            "--profile",
            profile,
        ])
        .trim()
        .to_string()
    }

    /// Builds a branded app (`master` with `license`, or `participant`); its path.
    pub fn build(&self, role: &str, profile: &str, license: Option<&str>) -> PathBuf {
        let out = self.path(&format!("{role}-{profile}-{}", license.unwrap_or("any")));
        let out_s = out.display().to_string();
        let mut args = vec![
            "build",
            role,
            "--profile",
            profile,
            "--brand",
            "acme",
            "--out",
            &out_s,
        ];
        if let Some(l) = license {
            args.push("--license");
            args.push(l);
        }
        self.ok(&args);
        out
    }
}

impl Default for Portal {
    fn default() -> Self {
        Portal::new()
    }
}

/// A relay's identity and ports.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    /// Its name.
    pub name: String,
    /// Where its key file is.
    pub key_file: PathBuf,
    /// Its public key (hex).
    pub public_key: String,
    /// QUIC port.
    pub quic: u16,
    /// TLS port.
    pub tls: u16,
    /// WebSocket port.
    pub websocket: u16,
    /// Admin port.
    pub admin: u16,
}

impl RelaySpec {
    /// Makes a key in `dir` and picks free loopback ports.
    pub fn new(name: &str, dir: &Path) -> RelaySpec {
        let key_file = dir.join(format!("{name}.key"));
        let out = Command::new(&programs().relay)
            .args(["keygen", "--out"])
            .arg(&key_file)
            .output()
            .unwrap_or_else(|e| panic!("conclave-relay keygen: {e}"));
        assert!(out.status.success(), "keygen failed");
        RelaySpec {
            name: name.into(),
            key_file,
            public_key: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            quic: free_udp_port(),
            tls: free_tcp_port(),
            websocket: free_tcp_port(),
            admin: free_tcp_port(),
        }
    }
}

/// A relay process; killed when dropped.
#[derive(Debug)]
pub struct Relay {
    /// What it is.
    pub spec: RelaySpec,
    child: Child,
}

impl Relay {
    /// Starts `spec` trusting `portal_key`, with `extra` flags (the join
    /// delay starts at 300 ms unless they say otherwise); returns once its
    /// TLS port accepts connections.
    pub fn start(spec: &RelaySpec, portal_key: &str, extra: &[&str]) -> Relay {
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let child = Command::new(&programs().relay)
            .arg("--name")
            .arg(&spec.name)
            .arg("--key-file")
            .arg(&spec.key_file)
            .args(["--portal-key", portal_key])
            .args(["--quic", &addr(spec.quic)])
            .args(["--tls", &addr(spec.tls)])
            .args(["--websocket", &addr(spec.websocket)])
            .args(["--admin", &addr(spec.admin)])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .args(if extra.contains(&"--join-delay-base-ms") {
                &[][..]
            } else {
                &["--join-delay-base-ms", "300"][..]
            })
            .spawn()
            .unwrap_or_else(|e| panic!("starting conclave-relay: {e}"));
        let relay = Relay {
            spec: spec.clone(),
            child,
        };
        relay.wait_listening();
        relay
    }

    /// Starts the hostile relay (TLS only) with `spec`'s key and TLS port, in
    /// `mode` (`tamper`, `replay` or `inject`).
    pub fn start_hostile(spec: &RelaySpec, mode: &str) -> Relay {
        let child = Command::new(&programs().hostile_relay)
            .arg("--key-file")
            .arg(&spec.key_file)
            .args(["--tls", &format!("127.0.0.1:{}", spec.tls)])
            .args(["--mode", mode])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting hostile-relay: {e}"));
        let relay = Relay {
            spec: spec.clone(),
            child,
        };
        relay.wait_listening();
        relay
    }

    fn wait_listening(&self) {
        let until = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.spec.tls)).is_err() {
            assert!(
                Instant::now() < until,
                "relay {} did not start",
                self.spec.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the relay at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Empty directories an app runs in: home, temporary files, working
/// directory. [`Sandbox::residue`] lists whatever appeared in them (R14).
#[derive(Debug)]
pub struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    /// Three empty directories.
    pub fn new() -> Sandbox {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        for d in ["home", "tmp", "work"] {
            std::fs::create_dir(root.path().join(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
        Sandbox { root }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Every file or directory inside the three directories.
    pub fn residue(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, out);
                }
                out.push(p);
            }
        }
        let mut out = Vec::new();
        for d in ["home", "tmp", "work"] {
            walk(&self.dir(d), &mut out);
        }
        out
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// A running app with `--json`: its events, its standard input, its exit.
#[derive(Debug)]
pub struct App {
    /// A name for failure messages.
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// Every event seen so far, in order.
    pub seen: Vec<Value>,
    stderr: Receiver<String>,
}

impl App {
    /// Starts `program ARGS --json` in `sandbox` (HOME, TMPDIR and working
    /// directory inside it), with `env` added.
    pub fn start(
        label: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        sandbox: &Sandbox,
    ) -> App {
        let mut child = Command::new(program)
            .args(args)
            .arg("--json")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", sandbox.dir("home"))
            .env("TMPDIR", sandbox.dir("tmp"))
            .env("USER", label)
            .envs(env.iter().copied())
            .current_dir(sandbox.dir("work"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let (tx, events) = channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let v = serde_json::from_str(&line)
                        .unwrap_or_else(|_| serde_json::json!({ "event": "text", "line": line }));
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            });
        }
        let (etx, stderr) = channel();
        if let Some(mut err) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = err.read_to_string(&mut s);
                let _ = etx.send(s);
            });
        }
        App {
            label: label.into(),
            stdin: child.stdin.take(),
            child,
            events,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next event that satisfies `pred`, waiting at most [`WAIT`];
    /// panics with everything seen if none comes.
    pub fn expect_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "{}: no {what}; saw {:#?}; stderr: {}",
                    self.label,
                    self.seen,
                    self.stderr_text()
                ),
            }
        }
    }

    /// The next event named `event`.
    pub fn expect(&mut self, event: &str) -> Value {
        self.expect_where(event, |v| v["event"] == event)
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Waits for the app to exit; its status (panics after [`WAIT`]).
    pub fn wait(&mut self) -> ExitStatus {
        let until = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Collect what it printed last.
                while let Ok(v) = self.events.recv_timeout(Duration::from_millis(50)) {
                    self.seen.push(v);
                }
                return status;
            }
            assert!(
                Instant::now() < until,
                "{} did not exit; saw {:#?}",
                self.label,
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the app wrote to standard error (after it exited).
    pub fn stderr_text(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_millis(500))
            .unwrap_or_default()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the memory of process `pid` holds `needle` anywhere it can be
/// read (needs the right to trace the process: root, or its parent).
pub fn memory_contains(pid: u32, needle: &[u8]) -> std::io::Result<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        buf.resize(usize::try_from(end - start).unwrap_or(0), 0);
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A portal, relays trusting it, and branded master and participant builds.
#[derive(Debug)]
pub struct Lab {
    /// The portal.
    pub portal: Portal,
    /// The relays, in the order they were added to the list.
    pub relays: Vec<Relay>,
    /// The branded master.
    pub master: PathBuf,
    /// The branded participant.
    pub participant: PathBuf,
    /// The license the master carries.
    pub license: String,
    /// A UDP socket that never answers, when the list points QUIC at it.
    pub black_hole: Option<UdpSocket>,
}

/// How to set up a [`Lab`].
#[derive(Debug, Default, Clone, Copy)]
pub struct LabOptions<'a> {
    /// How many relays (at least one).
    pub relays: usize,
    /// Settings of the profile the apps are built with (`field=value`).
    pub profile: &'a [&'a str],
    /// Extra flags for every relay.
    pub relay_flags: &'a [&'a str],
    /// Point every relay's QUIC port in the list at a socket that drops
    /// everything, as a network that blocks UDP does.
    pub block_udp: bool,
    /// Run the hostile relay in this mode instead of real relays (one, TLS only).
    pub hostile: Option<&'a str>,
}

impl Lab {
    /// Sets up the portal, starts the relays and builds both apps.
    pub fn new(o: LabOptions<'_>) -> Lab {
        let portal = Portal::new();
        let black_hole = o
            .block_udp
            .then(|| UdpSocket::bind("127.0.0.1:0"))
            .and_then(Result::ok);
        let hole_port = black_hole
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port());
        let mut relays = Vec::new();
        for i in 0..o.relays.max(1) {
            let spec = RelaySpec::new(&format!("relay-{}", i + 1), &portal.path(""));
            if let Some(mode) = o.hostile {
                portal.add_relay(&spec, Some(0));
                relays.push(Relay::start_hostile(&spec, mode));
                break;
            }
            portal.add_relay(&spec, hole_port);
            relays.push(Relay::start(&spec, &portal.key, o.relay_flags));
        }
        portal.profile("lab", o.profile);
        let license = portal.license("lab");
        Lab {
            master: portal.build("master", "lab", Some(&license)),
            participant: portal.build("participant", "lab", None),
            portal,
            relays,
            license,
            black_hole,
        }
    }

    /// Starts `conclave-master start ARGS` in `sandbox`.
    pub fn master(&self, sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> App {
        let mut all = vec!["start"];
        all.extend_from_slice(args);
        App::start("agent", &self.master, &all, env, sandbox)
    }

    /// Starts `conclave-participant join SESSION ARGS` as `name` in `sandbox`.
    pub fn participant(&self, sandbox: &Sandbox, name: &str, session: &str, args: &[&str]) -> App {
        let mut all = vec!["join", session, "--name", name];
        all.extend_from_slice(args);
        App::start(name, &self.participant, &all, &[], sandbox)
    }

    /// The relay named `name`.
    pub fn relay(&mut self, name: &str) -> Option<&mut Relay> {
        self.relays.iter_mut().find(|r| r.spec.name == name)
    }
}

/// A string field of an event ("" if absent).
pub fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}
