//! The admin's whole path with the real command-line programs: init, add a
//! relay, make a profile and a brand, issue a license, build branded master
//! and participant executables, and run them against a relay — on SQLite and
//! on a real PostgreSQL server. Requirements R4, R8, R10, R14, R16.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use conclave_protocol::artefact::Role;
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::stage1::{Hello, RefusalCode, HELLO_PROOF_DOMAIN};
use conclave_protocol::trailer;

const PASSPHRASE: &str = "correct horse battery staple";

/// A generic app executable from this workspace, built on first use: the
/// apps are other packages, whose programs cargo does not build for this
/// package's tests.
fn app(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    // This test runs from <target>/debug/deps; the programs sit in <target>/debug.
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let profile_dir = deps.parent().unwrap().to_path_buf();
    BUILT.call_once(|| {
        let target = profile_dir.parent().unwrap();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-p",
                "conclave-master",
                "-p",
                "conclave-participant",
            ])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "could not build the apps");
    });
    let p = profile_dir.join(name);
    assert!(p.exists(), "{} is missing after building it", p.display());
    p
}

struct Admin {
    db: String,
    dir: tempfile::TempDir,
}

impl Admin {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_conclave-portal"))
            .arg("--db")
            .arg(&self.db)
            .args(args)
            .env("CONCLAVE_PORTAL_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn hello_for(file: &Path, role: Role, binding: &[u8; 32]) -> Hello {
    let bytes = std::fs::read(file).unwrap();
    let v = trailer::verify(&bytes, role, conclave_portal::engine::now()).unwrap();
    Hello {
        role,
        build: v.signed,
        proof: v
            .master
            .as_ref()
            .map(|(_, id)| id.sign_raw(HELLO_PROOF_DOMAIN, binding)),
        os_user: BoundedString::new("admin").unwrap(),
        host: BoundedString::new("desk").unwrap(),
    }
}

async fn relay_trusting(portal_key: &str, revocations: Option<String>) -> conclave_relay::Relay {
    let s = conclave_relay::config::Settings {
        quic: Some("off".into()),
        tls: Some("127.0.0.1:0".into()),
        websocket: Some("off".into()),
        admin: Some("off".into()),
        portal_keys: Some(vec![portal_key.to_string()]),
        revocations,
        revocation_refresh_secs: Some(1),
        ..Default::default()
    };
    conclave_relay::Relay::start(s.resolve(true).unwrap())
        .await
        .unwrap()
}

/// Connects to the relay with a branded app's Hello; Ok on Welcome.
async fn try_hello(
    relay: &conclave_relay::Relay,
    file: &Path,
    role: Role,
) -> Result<(), conclave_protocol::stage1::Refusal> {
    use conclave_protocol::codec::Message;
    use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
    use conclave_protocol::stage1::{FromRelay, ToRelay};
    let mut c = conclave_transport::conn::connect_tls(relay.tls.unwrap(), relay.public_key)
        .await
        .unwrap();
    let h = hello_for(file, role, &c.channel_binding);
    let f = plain_frame(
        FrameClass::Relay,
        SessionId(0),
        PeerId::RELAY,
        PeerId::RELAY,
        &ToRelay::Hello(h).encode(),
    )
    .unwrap();
    c.outgoing.send(f.into()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), c.incoming.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match FromRelay::decode(FrameRef::parse(&reply).unwrap().payload).unwrap() {
        FromRelay::Welcome(_) => Ok(()),
        FromRelay::Refused(r) => Err(r),
        other => panic!("{other:?}"),
    }
}

async fn admin_path(db: String) {
    let admin = Admin {
        db,
        dir: tempfile::tempdir().unwrap(),
    };
    let portal_key = admin.ok(&["init"]).trim().to_string();
    assert_eq!(portal_key.len(), 64);
    assert!(
        !admin.run(&["init"]).status.success(),
        "init twice must refuse"
    );

    let relay = relay_trusting(&portal_key, None).await;
    let tls_port = relay.tls.unwrap().port().to_string();
    let relay_key = hex::encode(relay.public_key.0);
    admin.ok(&[
        "relay",
        "add",
        "lab-1",
        "--host",
        "127.0.0.1",
        "--key",
        &relay_key,
        "--tls",
        &tls_port,
        "--region",
        "lab",
        "--priority",
        "1",
    ]);
    admin.ok(&[
        "profile",
        "set",
        "support",
        "--set",
        "remote_control=true",
        "--set",
        "file_transfer=true",
        "--set",
        "max_participants=5",
    ]);
    assert!(admin
        .ok(&["profile", "show", "support"])
        .contains("\"max_participants\": 5"));
    assert!(!admin
        .run(&["profile", "set", "bad", "--set", "session_id_digits=4"])
        .status
        .success());
    admin.ok(&[
        "brand",
        "set",
        "acme",
        "--product",
        "Acme Support",
        "--organisation",
        "Acme Ltd",
        "--support-url",
        "https://help.acme.example",
    ]);
    let license = admin
        .ok(&[
            "license",
            "issue",
            "--licensee",
            "Acme Ltd",
            "--profile",
            "support",
        ])
        .trim()
        .to_string();
    assert_eq!(license.len(), 10);

    let participant = admin.path("acme-participant");
    let master = admin.path("acme-master");
    let p_bin = app("conclave-participant");
    let m_bin = app("conclave-master");
    admin.ok(&[
        "build",
        "participant",
        "--profile",
        "support",
        "--brand",
        "acme",
        "--binary",
        p_bin.to_str().unwrap(),
        "--out",
        participant.to_str().unwrap(),
    ]);
    admin.ok(&[
        "build",
        "master",
        "--profile",
        "support",
        "--brand",
        "acme",
        "--license",
        &license,
        "--binary",
        m_bin.to_str().unwrap(),
        "--out",
        master.to_str().unwrap(),
    ]);
    assert!(admin
        .ok(&["verify", participant.to_str().unwrap()])
        .starts_with("ok: participant build"));

    // R10: the branded participant starts and shows what is baked in.
    let out = Command::new(&participant)
        .arg("--show-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Acme Support",
        "Acme Ltd",
        "lab-1",
        &relay_key,
        "profile: support",
        "max participants 5",
        &portal_key,
    ] {
        assert!(shown.contains(want), "{want:?} missing from:\n{shown}");
    }
    let out = Command::new(&master).arg("--show-config").output().unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains(&format!("license: {license} for Acme Ltd")));
    // The generic executable refuses: it carries no configuration.
    let generic = Command::new(&p_bin).output().unwrap();
    assert_eq!(generic.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&generic.stderr).contains("generic build"));

    // R10: a flipped byte anywhere (executable or trailer) and it refuses to start.
    let bytes = std::fs::read(&participant).unwrap();
    let exe_len = trailer::split(&bytes).unwrap().0.len();
    let mut positions: Vec<usize> = (0..6).map(|i| i * (exe_len / 6) + 7).collect();
    positions.extend((exe_len..bytes.len()).step_by(401));
    positions.push(bytes.len() - 1);
    for (n, pos) in positions.iter().enumerate() {
        let mut b = bytes.clone();
        b[*pos] ^= 0x20;
        let f = admin.path(&format!("flipped-{n}"));
        std::fs::write(&f, &b).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = Command::new(&f).arg("--show-config").output();
        // A flip inside the ELF headers may stop the loader itself; either way it must not run.
        if let Ok(out) = out {
            assert!(
                !out.status.success(),
                "byte {pos} of {} flipped and the app still ran",
                bytes.len()
            );
        }
    }

    // Both builds are accepted by a relay trusting this portal.
    try_hello(&relay, &participant, Role::Participant)
        .await
        .unwrap();
    try_hello(&relay, &master, Role::Master).await.unwrap();
    // R10: a relay trusting another portal refuses them.
    let other = relay_trusting(
        &hex::encode(conclave_protocol::fixtures::identity(9).public_key().0),
        None,
    )
    .await;
    assert_eq!(
        try_hello(&other, &participant, Role::Participant)
            .await
            .unwrap_err()
            .code,
        RefusalCode::BuildNotTrusted
    );

    // R8: revocation reaches a running relay through the portal's HTTP endpoint.
    let list = admin.path("revocations.bin");
    admin.ok(&["revocations", "publish", "--out", list.to_str().unwrap()]);
    let mut server = Command::new(env!("CARGO_BIN_EXE_conclave-portal"))
        .args([
            "--db",
            &admin.db,
            "revocations",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--file",
        ])
        .arg(&list)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().strip_prefix("serving ").unwrap().to_string()
    };
    let watched = relay_trusting(&portal_key, Some(url)).await;
    try_hello(&watched, &master, Role::Master).await.unwrap();
    admin.ok(&["license", "revoke", &license]);
    admin.ok(&["revocations", "publish", "--out", list.to_str().unwrap()]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match try_hello(&watched, &master, Role::Master).await {
            Err(r) => {
                assert_eq!(r.code, RefusalCode::LicenseRevoked);
                break;
            }
            Ok(()) => assert!(
                tokio::time::Instant::now() < deadline,
                "revocation not picked up within the refresh interval"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = server.kill();
    let _ = server.wait();

    // R8: an expired license is refused.
    let short = admin
        .ok(&[
            "license",
            "issue",
            "--licensee",
            "Acme Ltd",
            "--profile",
            "support",
            "--days",
            "0",
        ])
        .trim()
        .to_string();
    let expired_master = admin.path("expired-master");
    admin.ok(&[
        "build",
        "master",
        "--profile",
        "support",
        "--brand",
        "acme",
        "--license",
        &short,
        "--binary",
        m_bin.to_str().unwrap(),
        "--out",
        expired_master.to_str().unwrap(),
    ]);
    assert_eq!(
        try_hello(&relay, &expired_master, Role::Master)
            .await
            .unwrap_err()
            .code,
        RefusalCode::LicenseExpired
    );

    // A wrong passphrase opens nothing.
    let wrong = Command::new(env!("CARGO_BIN_EXE_conclave-portal"))
        .args([
            "--db",
            &admin.db,
            "license",
            "issue",
            "--licensee",
            "X",
            "--profile",
            "support",
        ])
        .env("CONCLAVE_PORTAL_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("passphrase"));
}

#[tokio::test]
async fn r4_admin_path_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    admin_path(dir.path().join("portal.db").display().to_string()).await;
}

#[tokio::test]
async fn r4_admin_path_on_postgresql() {
    let pg = common::pg::TempPostgres::start();
    admin_path(pg.url().to_string()).await;
}
