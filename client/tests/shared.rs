//! Shared files in a meeting end to end (R24): a real relay on loopback,
//! the master and participants' runtimes. A shared file reaches every
//! participant byte for byte, also one admitted later; a participant shares
//! only with the files right and under the name the master admitted it by;
//! the relay keeps only sealed bytes, within its bounds, and none after the
//! session ends.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{entry, next, relay, relay_with, who};
use conclave_client::collab::MediaOptions;
use conclave_client::connect::Attempts;
use conclave_client::events::{Command, Event};
use conclave_client::session::{join, start_master, JoinOptions, MasterOptions, Running};
use conclave_protocol::artefact::{PolicyProfile, Role};
use conclave_protocol::fixtures;
use conclave_protocol::frame::PeerId;
use conclave_protocol::shared::{BlobId, TAG};
use conclave_protocol::stage1::SessionKind;
use conclave_protocol::stage2::Rights;
use conclave_relay::Relay;
use zeroize::Zeroizing;

const PASSWORD: &str = "shared-otter-42";

fn meeting(p: &mut PolicyProfile) {
    p.autolock = false;
}

async fn host(relay: &Relay, policy: fn(&mut PolicyProfile), downloads: &Path) -> Running {
    let mut m = start_master(
        fixtures::verified_build(Role::Master, vec![entry("r", relay, 0)], policy),
        MasterOptions {
            kind: SessionKind::Meeting,
            moderator: "Host".into(),
            password: Some(Zeroizing::new(PASSWORD.into())),
            who: who("host"),
            attempts: Attempts::default(),
            media: MediaOptions {
                downloads: Some(downloads.to_path_buf()),
                ..MediaOptions::default()
            },
        },
    )
    .await
    .unwrap();
    next(&mut m, |e| matches!(e, Event::SessionOpened { .. })).await;
    m
}

/// `name` joins and is admitted; its downloads go to `dir/name`.
async fn guest(
    relay: &Relay,
    m: &mut Running,
    name: &str,
    dir: &Path,
    policy: fn(&mut PolicyProfile),
) -> (PeerId, Running, PathBuf) {
    let inbox = dir.join(name);
    std::fs::create_dir_all(&inbox).unwrap();
    let p = join(
        fixtures::verified_build(Role::Participant, vec![entry("r", relay, 0)], policy),
        JoinOptions {
            session: m.handle.session,
            password: Some(Zeroizing::new(PASSWORD.into())),
            name: name.into(),
            who: who(name),
            attempts: Attempts::default(),
            media: MediaOptions {
                downloads: Some(inbox.clone()),
                ..MediaOptions::default()
            },
        },
    )
    .await
    .unwrap();
    let Event::Admitted { peer, .. } = next(m, |e| matches!(e, Event::Admitted { .. })).await
    else {
        unreachable!()
    };
    (PeerId(peer), p, inbox)
}

fn shared<'a>(state: &'a str, name: &'a str) -> impl Fn(&Event) -> bool + 'a {
    move |e| matches!(e, Event::Shared { state: s, name: n, .. } if *s == state && n == name)
}

/// The file's ID as `available` announced it, and who shared it.
async fn available(r: &mut Running, name: &str) -> (BlobId, String) {
    let Event::Shared { id, from, .. } = next(r, shared("available", name)).await else {
        unreachable!()
    };
    (id.parse().unwrap(), from)
}

/// Fetches a file and returns what was saved.
async fn fetch(r: &mut Running, id: BlobId, name: &str) -> Vec<u8> {
    r.handle.send(Command::Fetch(id)).await;
    let Event::Shared { detail, .. } = next(r, shared("fetched", name)).await else {
        unreachable!()
    };
    std::fs::read(detail).unwrap()
}

fn body(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

async fn shared_bytes_become(relay: &Relay, want: u64) {
    let gauge = &relay.hub().metrics.shared_bytes;
    tokio::time::timeout(Duration::from_secs(10), async {
        while gauge.load(Ordering::Relaxed) != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the relay keeps {} shared bytes, not {want}",
            gauge.load(Ordering::Relaxed)
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_shared_files_reach_everyone_sealed_and_are_gone_when_the_meeting_ends() {
    let relay = relay().await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = host(&relay, meeting, &dir.path().join("host")).await;
    std::fs::create_dir_all(dir.path().join("host")).unwrap();
    let (_ann, mut ann, ann_inbox) = guest(&relay, &mut m, "Ann", dir.path(), meeting).await;

    // Three parts: 128 KiB, 128 KiB and the rest.
    let slides = body(300_000, 1);
    let path = dir.path().join("slides.pdf");
    std::fs::write(&path, &slides).unwrap();
    m.handle.send(Command::Share(path)).await;
    let (id, from) = available(&mut m, "slides.pdf").await;
    assert_eq!(from, "Host");
    // What the relay keeps is the sealed file: its size and a tag per part.
    shared_bytes_become(&relay, 300_000 + 3 * TAG as u64).await;
    let (id_seen, from) = available(&mut ann, "slides.pdf").await;
    assert_eq!((id_seen, from.as_str()), (id, "Host"));
    assert_eq!(fetch(&mut ann, id, "slides.pdf").await, slides);
    assert!(std::fs::read_dir(&ann_inbox).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("conclave-part")));

    // Bob, admitted later, is told of the file and fetches it too.
    let (bob, mut bob_app, _) = guest(&relay, &mut m, "Bob", dir.path(), meeting).await;
    let (id_seen, _) = available(&mut bob_app, "slides.pdf").await;
    assert_eq!(id_seen, id);
    assert_eq!(fetch(&mut bob_app, id, "slides.pdf").await, slides);

    // Bob shares only once he holds the files right; the others see his
    // file under the name the host admitted him by.
    let notes = body(1000, 2);
    let notes_path = dir.path().join("notes.txt");
    std::fs::write(&notes_path, &notes).unwrap();
    bob_app
        .handle
        .send(Command::Share(notes_path.clone()))
        .await;
    next(
        &mut bob_app,
        |e| matches!(e, Event::Error { message } if message.contains("files right")),
    )
    .await;
    m.handle
        .send(Command::Grant(bob, Rights::FILE_TRANSFER))
        .await;
    next(
        &mut bob_app,
        |e| matches!(e, Event::Rights { rights, .. } if rights.contains(&"files")),
    )
    .await;
    bob_app.handle.send(Command::Share(notes_path)).await;
    let (notes_id, from) = available(&mut ann, "notes.txt").await;
    assert_eq!(from, "Bob");
    assert_eq!(
        available(&mut m, "notes.txt").await,
        (notes_id, "Bob".into())
    );
    assert_eq!(fetch(&mut ann, notes_id, "notes.txt").await, notes);

    // The host removes the slides: everyone is told, and they are gone.
    m.handle.send(Command::Unshare(id)).await;
    next(&mut ann, shared("removed", "slides.pdf")).await;
    next(&mut bob_app, shared("removed", "slides.pdf")).await;
    shared_bytes_become(&relay, 1000 + TAG as u64).await;
    ann.handle.send(Command::Fetch(id)).await;
    next(&mut ann, |e| matches!(e, Event::Error { .. })).await;

    // The meeting ends: the relay keeps nothing.
    m.handle.send(Command::Leave).await;
    next(&mut ann, |e| matches!(e, Event::Ended { .. })).await;
    shared_bytes_become(&relay, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_the_relay_bounds_shared_files_and_policy_can_forbid_them() {
    let relay = relay_with(|s| s.shared_session_mib = Some(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = host(&relay, meeting, dir.path()).await;
    let (_ann, mut ann, _) = guest(&relay, &mut m, "Ann", dir.path(), meeting).await;
    // 1.5 MiB does not fit the session's 1 MiB: refused, nothing kept, and
    // nobody is told of it.
    let big = dir.path().join("big.iso");
    std::fs::write(&big, body(1_500_000, 3)).unwrap();
    m.handle.send(Command::Share(big)).await;
    let Event::Shared { detail, .. } = next(&mut m, shared("failed", "big.iso")).await else {
        unreachable!()
    };
    assert!(detail.contains("size limit"), "{detail}");
    shared_bytes_become(&relay, 0).await;
    // A small one fits.
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"agenda").unwrap();
    m.handle.send(Command::Share(small)).await;
    let seen = until(&mut ann, shared("available", "small.txt")).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Shared { name, .. } if name == "big.iso")),
        "Ann was told of the refused file: {seen:?}"
    );
    let Some(Event::Shared { id, .. }) = seen.last() else {
        unreachable!()
    };
    let id = id.parse().unwrap();
    assert_eq!(fetch(&mut ann, id, "small.txt").await, b"agenda");

    // A profile without shared files: the app refuses before anything is sent.
    let relay = relay_with(|_| {}).await;
    let no_sharing = |p: &mut PolicyProfile| {
        p.autolock = false;
        p.shared_files = false;
    };
    let mut m = host(&relay, no_sharing, dir.path()).await;
    let small = dir.path().join("small.txt");
    m.handle.send(Command::Share(small)).await;
    let seen = until(
        &mut m,
        |e| matches!(e, Event::Error { message } if message.contains("disabled by this session's policy")),
    )
    .await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Shared { .. })),
        "an upload began: {seen:?}"
    );
}

/// Every event up to and including the first that `pick` accepts, within
/// 20 seconds.
async fn until(r: &mut Running, pick: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = r.events.recv().await.expect("events ended");
            let done = pick(&e);
            seen.push(e);
            if done {
                return;
            }
        }
    })
    .await
    .expect("no such event in time");
    seen
}
