//! The app's own build: read the running executable, check its trailer
//! (`conclave_protocol::trailer`), and refuse to run when it fails (R10).

use std::fmt::Write;
use std::io::Read;
use std::path::Path;

use conclave_protocol::artefact::Role;
use conclave_protocol::time::UnixTime;
use conclave_protocol::trailer::{verify, BuildError, VerifiedBuild};

/// The largest executable read.
pub const MAX_EXECUTABLE: u64 = 512 * 1024 * 1024;

/// Why the app's own build could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OwnBuildError {
    /// The executable could not be read.
    #[error("cannot read the app's own executable {path}: {source}")]
    Read {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The executable is larger than any Conclave build.
    #[error("the executable is larger than {MAX_EXECUTABLE} bytes; this is not a Conclave build")]
    TooLarge,
    /// The build failed its check.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Reads and checks the build at `path` for an app of `role`.
pub fn load_build(path: &Path, role: Role, now: UnixTime) -> Result<VerifiedBuild, OwnBuildError> {
    let read = |source| OwnBuildError::Read {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    if file.metadata().map_err(read)?.len() > MAX_EXECUTABLE {
        return Err(OwnBuildError::TooLarge);
    }
    let mut bytes = Vec::new();
    file.take(MAX_EXECUTABLE)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    Ok(verify(&bytes, role, now)?)
}

/// Reads and checks the running executable.
pub fn load_own_build(role: Role, now: UnixTime) -> Result<VerifiedBuild, OwnBuildError> {
    let path = std::env::current_exe().map_err(|source| OwnBuildError::Read {
        path: "(current executable)".into(),
        source,
    })?;
    load_build(&path, role, now)
}

/// A human-readable account of what a build carries.
pub fn describe(build: &VerifiedBuild) -> String {
    let c = &build.config;
    let p = &c.profile;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({})",
        c.branding.product_name, c.version, c.role
    );
    let _ = writeln!(out, "organisation: {}", c.branding.organisation);
    let _ = writeln!(out, "support: {}", c.branding.support_url);
    let _ = writeln!(
        out,
        "portal key: {} ({})",
        hex::encode(c.portal_key.0),
        c.portal_key.fingerprint()
    );
    let _ = writeln!(out, "executable sha256: {}", hex::encode(c.binary_sha256));
    let _ = writeln!(out, "relays:");
    for r in c.relays.iter() {
        let _ = writeln!(
            out,
            "  {} {} quic:{} tls:{} websocket:{} region:{} priority:{} key:{}",
            r.name,
            r.host,
            r.quic_port,
            r.tls_port,
            r.websocket_port,
            r.region,
            r.priority,
            hex::encode(r.public_key.0)
        );
    }
    let _ = writeln!(out, "profile: {}", p.name);
    let _ = writeln!(
        out,
        "  screen sharing {}, presenter handover {}, remote control {} (countdown {} s, default {:?}), file transfer {}, shared files {}, recording {:?}, autolock {}, port mapper {}",
        p.screen_sharing,
        p.presenter_handover,
        p.remote_control,
        p.control_countdown_secs,
        p.countdown_default,
        p.file_transfer,
        p.shared_files,
        p.recording,
        p.autolock,
        p.port_mapper
    );
    let _ = writeln!(
        out,
        "  max participants {}, session ID digits {}, password required {}, password min length {}, min client version {}",
        p.max_participants, p.session_id_digits, p.password_required, p.password_rules.min_length, p.min_client_version
    );
    if let Some((license, identity)) = &build.master {
        let _ = writeln!(
            out,
            "license: {} for {} (profile {}, expires at {} Unix time), identity key {}",
            license.number,
            license.licensee,
            license.profile,
            license.expires_at.0,
            identity.public_key().fingerprint()
        );
    }
    out
}

/// Exit code of an app whose own build fails its check.
pub const EXIT_BAD_BUILD: u8 = 3;

/// What both apps do at start: check their own build, exiting with
/// [`EXIT_BAD_BUILD`] when it fails (R10), and with `show_config` print
/// what it carries.
pub fn start(app: &str, role: Role, show_config: bool) -> VerifiedBuild {
    let build = match load_own_build(role, UnixTime::from_system(std::time::SystemTime::now())) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{app}: refusing to run: {e}");
            std::process::exit(i32::from(EXIT_BAD_BUILD));
        }
    };
    if show_config {
        print!("{}", describe(&build));
    }
    build
}

/// When an app is run without a command: fine after `--show-config`
/// (exit 0), else say what to run (exit 2).
pub fn nothing_to_do(app: &str, usage: &str, showed_config: bool) -> ! {
    if showed_config {
        std::process::exit(0);
    }
    eprintln!("{app}: nothing to do; run `{usage}`");
    std::process::exit(2)
}
