//! Sessions end to end with the real programs: relays on loopback, apps
//! built and branded through the portal's command line, driven through their
//! JSON events and standard input. Requirements R2, R3, R6, R8, R9, R11,
//! R12, R14, R18, R19, R26, R27.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use conclave_tests::{memory_contains, text, App, Lab, LabOptions, Sandbox, Value};
use serde_json::json;

fn lab(profile: &[&str]) -> Lab {
    Lab::new(LabOptions {
        relays: 1,
        profile,
        ..LabOptions::default()
    })
}

/// Starts a master and returns it with its session ID and password.
fn open(
    lab: &Lab,
    sandbox: &Sandbox,
    args: &[&str],
    env: &[(&str, &str)],
) -> (App, String, String) {
    let mut m = lab.master(sandbox, args, env);
    let password = text(&m.expect("password"), "password");
    let session = text(&m.expect("session_opened"), "session");
    (m, session, password)
}

fn members(v: &Value) -> Vec<String> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| text(m, "name"))
        .collect()
}

fn epoch_with(app: &mut App, names: &[&str]) -> Value {
    let want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    app.expect_where(&format!("epoch with members {names:?}"), |v| {
        v["event"] == "epoch" && members(v) == want
    })
}

fn chat(app: &mut App, said: &str) -> Value {
    app.expect_where(&format!("chat {said:?}"), |v| {
        v["event"] == "chat" && v["text"] == said
    })
}

/// R2, R3, R6, R14, R19, R26, R27: a support session. The master opens it
/// with a drawn password, the customer joins with it over QUIC, both show the
/// same session code, the session locks itself, chat flows both ways, the
/// customer leaves and the agent ends; neither app leaves a file behind in
/// its home, temporary or working directory.
#[test]
fn r2_r3_r14_support_session_chats_and_leaves_nothing_behind() {
    let lab = lab(&["autolock=true", "password_required=true"]);
    let (ms, ps) = (Sandbox::new(), Sandbox::new());
    let (mut m, session, password) = open(&lab, &ms, &["--support", "--name", "Agent"], &[]);
    assert_eq!(password.len(), 12);
    assert_eq!(text(&m.seen[1], "transport"), "QUIC");
    let mut p = lab.participant(&ps, "Carol", &session, &["--password", &password]);
    assert_eq!(text(&p.expect("connected"), "transport"), "QUIC");
    let a = p.expect("announced");
    assert_eq!(
        (text(&a, "licensee"), text(&a, "moderator")),
        ("Acme Ltd".into(), "Agent".into())
    );
    let admitted = m.expect("admitted");
    assert_eq!(admitted["password_verified"], true);
    assert_eq!(text(&admitted, "name"), "Carol");
    let pe = epoch_with(&mut p, &["Agent", "Carol"]);
    let me = epoch_with(&mut m, &["Agent", "Carol"]);
    assert_eq!(pe["session_code"], me["session_code"]);
    assert_eq!(pe["locked"], true, "support sessions lock themselves (R26)");

    m.send("chat Hello Carol, I can see the problem");
    chat(&mut p, "Hello Carol, I can see the problem");
    p.send("chat Thank you");
    assert_eq!(text(&chat(&mut m, "Thank you"), "name"), "Carol");

    p.send("leave");
    assert!(p.wait().success());
    assert_eq!(text(&m.expect("left"), "reason"), "left");
    m.send("end");
    assert!(m.wait().success());
    assert_eq!(ms.residue(), Vec::<std::path::PathBuf>::new());
    assert_eq!(ps.residue(), Vec::<std::path::PathBuf>::new());
}

/// R2, R6, R26, R27: a meeting with three participants: everyone sees the
/// list and the chat; rights are granted and taken back; a removal changes the key and ends the removed one's
/// session; a locked meeting refuses a newcomer, an unlocked one admits it.
#[test]
fn r2_r26_r27_meeting_with_removal_and_lock() {
    let lab = lab(&["password_required=true", "autolock=false"]);
    let s = Sandbox::new();
    let (mut m, session, password) = open(&lab, &s, &["--meeting", "--name", "Host"], &[]);
    let pw = ["--password", password.as_str()];
    let mut a = lab.participant(&s, "Ann", &session, &pw);
    epoch_with(&mut a, &["Host", "Ann"]);
    let mut b = lab.participant(&s, "Ben", &session, &pw);
    epoch_with(&mut b, &["Host", "Ann", "Ben"]);
    let mut c = lab.participant(&s, "Cid", &session, &pw);
    let before = epoch_with(&mut c, &["Host", "Ann", "Ben", "Cid"]);
    epoch_with(&mut m, &["Host", "Ann", "Ben", "Cid"]);
    for p in [&mut a, &mut b] {
        let e = epoch_with(p, &["Host", "Ann", "Ben", "Cid"]);
        assert_eq!(e["session_code"], before["session_code"]);
    }

    // Rights, granted and taken back by the master, reach the participant.
    let ann = before["members"][1]["peer"].as_u64().unwrap();
    m.send(&format!("grant {ann} presenter,control"));
    let got = a.expect("rights");
    assert_eq!(got["rights"], json!(["presenter", "control"]));
    m.send(&format!("grant {ann} none"));
    assert_eq!(a.expect("rights")["rights"], json!([]));
    c.send("grant 2 presenter");
    assert!(text(&c.expect("error"), "message").contains("only the moderator"));

    b.send("chat Hi all");
    for p in [&mut m, &mut a, &mut c] {
        assert_eq!(text(&chat(p, "Hi all"), "name"), "Ben");
    }

    // Removal: a new key at once; Ben's session ends.
    let ben = before["members"][2]["peer"].as_u64().unwrap();
    m.send(&format!("remove {ben}"));
    let left = m.expect("left");
    assert_eq!(text(&left, "reason"), "removed");
    let after = epoch_with(&mut a, &["Host", "Ann", "Cid"]);
    assert!(after["epoch"].as_u64() > before["epoch"].as_u64());
    b.expect_where("the end of Ben's session", |v| {
        v["event"] == "ended" && text(v, "reason").contains("removed")
    });
    m.send("chat Ben is gone");
    chat(&mut c, "Ben is gone");

    // Lock: a newcomer is refused; unlocked, it gets in.
    m.send("lock");
    m.expect("locked");
    let mut d = lab.participant(&s, "Dee", &session, &pw);
    let refused = d.expect("refused");
    assert_eq!(text(&refused, "code"), "SessionLocked");
    assert!(text(&refused, "message").contains("locked"));
    assert!(!d.wait().success());
    m.send("unlock");
    m.expect("locked");
    let mut d = lab.participant(&s, "Dee", &session, &pw);
    epoch_with(&mut d, &["Host", "Ann", "Cid", "Dee"]);
    m.send("end");
    for p in [&mut a, &mut c, &mut d] {
        p.expect("ended");
    }
}

/// R6: without a password, the master sees each newcomer's name, host and
/// safety code, the newcomer shows the same code, and nobody gets keys until
/// the master admits; a denied participant gets nothing.
#[test]
fn r6_without_password_admission_is_explicit_and_codes_match() {
    let lab = lab(&["password_required=false"]);
    let s = Sandbox::new();
    let (mut m, session, password) = open(&lab, &s, &["--meeting", "--name", "Host"], &[]);
    assert_eq!(password, "");
    let mut p = lab.participant(&s, "Eve", &session, &[]);
    let code = text(&p.expect("join_code"), "safety_code");
    let asked = m.expect("admission_requested");
    assert_eq!(text(&asked, "safety_code"), code);
    assert_eq!(text(&asked, "name"), "Eve");
    assert!(!text(&asked, "host").is_empty());
    assert!(!p.seen.iter().any(|v| v["event"] == "admitted"));
    m.send(&format!("admit {}", asked["peer"]));
    p.expect("admitted");
    let pe = epoch_with(&mut p, &["Host", "Eve"]);
    let me = epoch_with(&mut m, &["Host", "Eve"]);
    assert_eq!(pe["session_code"], me["session_code"]);

    let mut q = lab.participant(&s, "Fay", &session, &[]);
    q.expect("join_code");
    let asked = m.expect("admission_requested");
    m.send(&format!("deny {}", asked["peer"]));
    q.expect("join_failed");
    assert!(!q.wait().success());
    assert!(!q.seen.iter().any(|v| v["event"] == "epoch"));
}

/// R6, R12: a wrong password fails the join, the relay then makes the same
/// source wait, and the wait grows with the next failure; the relay's memory
/// never held either password (its memory does hold the joiner's name, which
/// shows the search works).
#[test]
fn r6_r12_wrong_password_waits_longer_each_time_and_the_relay_never_sees_it() {
    // Waits of 2 s, then 4 s: longer than starting a participant takes.
    let lab = Lab::new(LabOptions {
        relays: 1,
        profile: &["password_required=true"],
        relay_flags: &["--join-delay-base-ms", "2000"],
        ..LabOptions::default()
    });
    let s = Sandbox::new();
    let (mut m, session, _) = open(
        &lab,
        &s,
        &["--meeting"],
        &[("CONCLAVE_PASSWORD", "Correct-Horse-4711")],
    );
    let mut waits = Vec::new();
    for round in 0..2 {
        let mut p = lab.participant(
            &s,
            "Mallory-7f3a",
            &session,
            &["--password", "Wrong-Horse-0815"],
        );
        p.expect("join_failed");
        assert!(!p.wait().success());
        m.expect("join_failed");
        // Straight away again: the relay refuses and says how long to wait.
        let mut q = lab.participant(&s, "Mallory-7f3a", &session, &["--password", "x"]);
        let refused = q.expect("refused");
        assert_eq!(text(&refused, "code"), "RetryLater", "round {round}");
        let wait = refused["retry_after_ms"].as_u64().unwrap();
        q.wait();
        waits.push(wait);
        std::thread::sleep(std::time::Duration::from_millis(wait + 50));
    }
    assert!(waits[1] > waits[0], "the wait grows: {waits:?}");
    let relay = lab.relays[0].pid();
    assert!(memory_contains(relay, b"Mallory-7f3a").unwrap());
    assert!(!memory_contains(relay, b"Correct-Horse-4711").unwrap());
    assert!(!memory_contains(relay, b"Wrong-Horse-0815").unwrap());
}

/// R18: two relays; the one carrying the session is killed; master and
/// participant move to the other, the session goes on with a fresh key and
/// chat, and both report the gap.
#[test]
fn r18_relay_killed_mid_session_fails_over_to_the_next() {
    let mut lab = Lab::new(LabOptions {
        relays: 2,
        profile: &["password_required=true"],
        ..LabOptions::default()
    });
    let s = Sandbox::new();
    let (mut m, session, password) = open(&lab, &s, &["--meeting", "--name", "Host"], &[]);
    let first = text(&m.seen[1], "relay");
    let mut p = lab.participant(&s, "Gil", &session, &["--password", &password]);
    assert_eq!(
        text(&p.expect("connected"), "relay"),
        first,
        "the ID names the relay"
    );
    let before = epoch_with(&mut p, &["Host", "Gil"]);
    epoch_with(&mut m, &["Host", "Gil"]);

    lab.relay(&first).unwrap().kill();
    for app in [&mut m, &mut p] {
        assert_eq!(text(&app.expect("relay_lost"), "relay"), first);
        let resumed = app.expect("resumed");
        assert_ne!(text(&resumed, "relay"), first);
        assert!(resumed["gap_ms"].as_u64().is_some());
    }
    let after = epoch_with(&mut p, &["Host", "Gil"]);
    assert!(after["epoch"].as_u64() > before["epoch"].as_u64());
    assert_eq!(
        after["session_code"],
        epoch_with(&mut m, &["Host", "Gil"])["session_code"]
    );
    m.send("chat still with you");
    chat(&mut p, "still with you");
    p.send("chat me too");
    chat(&mut m, "me too");
}

/// R19: with UDP blocked (the QUIC port swallows everything), both apps
/// fall back to TLS over TCP and the session works.
#[test]
fn r19_blocked_udp_falls_back_to_tls() {
    let lab = Lab::new(LabOptions {
        relays: 1,
        profile: &["password_required=true"],
        block_udp: true,
        ..LabOptions::default()
    });
    let s = Sandbox::new();
    let (mut m, session, password) = open(&lab, &s, &["--support"], &[]);
    assert_eq!(text(&m.seen[1], "transport"), "TLS/TCP");
    let mut p = lab.participant(&s, "Hugo", &session, &["--password", &password]);
    assert_eq!(text(&p.expect("connected"), "transport"), "TLS/TCP");
    p.expect("admitted");
    m.send("chat over TCP");
    chat(&mut p, "over TCP");
}

/// R8, R9: a revoked license cannot open a session, and a client older than
/// the relay's minimum version is told to update; both apps say why and
/// exit with an error.
#[test]
fn r8_r9_revoked_license_and_old_version_are_refused_with_the_reason() {
    let mut lab = lab(&["password_required=false"]);
    let list = lab.portal.path("revocations.bin");
    lab.portal.ok(&["license", "revoke", &lab.license]);
    lab.portal.ok(&[
        "revocations",
        "publish",
        "--out",
        &list.display().to_string(),
    ]);
    let spec = lab.relays[0].spec.clone();
    let list_s = list.display().to_string();
    let restart = |lab: &mut Lab, flags: &[&str]| {
        lab.relays[0].kill();
        lab.relays[0] = conclave_tests::Relay::start(&spec, &lab.portal.key, flags);
    };
    restart(&mut lab, &["--revocations", &list_s]);
    let s = Sandbox::new();
    let mut m = lab.master(&s, &["--meeting"], &[]);
    assert!(!m.wait().success());
    let err = m.stderr_text();
    assert!(err.contains("revoked"), "{err}");

    restart(&mut lab, &["--min-version", "9.0.0"]);
    let mut p = lab.participant(&s, "Ida", "123456", &[]);
    assert!(!p.wait().success());
    let err = p.stderr_text();
    assert!(err.contains("9.0.0"), "{err}");
}

/// R6, R7: a relay that turns hostile (tampers with, replays or injects
/// frames) is noticed by the participant at once: a clear warning, the
/// session aborted (exit code 4), and nothing of the attack accepted — a
/// tampered chat line never shows, a replayed one shows once.
#[test]
fn r6_hostile_relay_tampering_replay_and_injection_abort_the_session() {
    for mode in ["tamper", "replay", "inject"] {
        let lab = Lab::new(LabOptions {
            relays: 1,
            profile: &["password_required=true"],
            hostile: Some(mode),
            ..LabOptions::default()
        });
        let s = Sandbox::new();
        let (mut m, session, password) = open(&lab, &s, &["--meeting", "--name", "Host"], &[]);
        let mut p = lab.participant(&s, "Jo", &session, &["--password", &password]);
        epoch_with(&mut p, &["Host", "Jo"]);
        m.send("chat the first line");
        let warning = p.expect("warning");
        assert!(
            text(&warning, "message").contains("altered, replayed or forged"),
            "{mode}: {warning}"
        );
        let ended = p.expect("ended");
        assert!(
            text(&ended, "reason").contains("tampered"),
            "{mode}: {ended}"
        );
        assert_eq!(p.wait().code(), Some(4), "{mode}");
        let shown = p
            .seen
            .iter()
            .filter(|v| v["event"] == "chat" && v["text"] == "the first line")
            .count();
        let expected = usize::from(mode != "tamper");
        assert_eq!(shown, expected, "{mode}: the chat line shown {shown} times");
    }
}
