//! `hostile-relay`: a relay that has gone bad, for the end-to-end tests. It
//! holds a genuine relay key (clients pin it and connect), admits everyone
//! without checks, routes one session honestly, and then attacks the first
//! chat frame the master sends, in one of three ways:
//!
//! - `tamper`: flips a bit of the frame's ciphertext;
//! - `replay`: delivers the frame, then delivers it again;
//! - `inject`: delivers the frame, then sends each participant a key change
//!   it made up (a new epoch with a key wrap of random bytes), as if from
//!   the master.
//!
//! `hostile-relay --key-file FILE --tls ADDR --mode tamper|replay|inject`
//! (TLS over TCP only). Everything it does is what a compromised relay can
//! do; the tests check that the apps notice, accept nothing and abort.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use conclave_protocol::artefact::Version;
use conclave_protocol::bounded::{BoundedBytes, BoundedString, BoundedVec};
use conclave_protocol::codec::Message;
use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
use conclave_protocol::sign::Signed;
use conclave_protocol::stage1::{FromRelay, ToRelay, Welcome};
use conclave_protocol::stage2::group::KeyWrap;
use conclave_protocol::stage2::{Announce, Rekey};
use conclave_transport::conn::{spawn_stream, Drained};
use conclave_transport::tls::RelayIdentity;
use tokio::sync::mpsc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tamper,
    Replay,
    Inject,
}

#[derive(Default)]
struct State {
    session: Option<(SessionId, Signed<Announce>)>,
    peers: HashMap<PeerId, mpsc::Sender<Bytes>>,
    next_peer: u32,
    attacked: bool,
}

type Shared = Arc<Mutex<State>>;

fn arg(name: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| panic!("hostile-relay: {name} is required"))
}

fn relay_says(session: SessionId, to: PeerId, msg: &FromRelay) -> Bytes {
    Bytes::from(plain_frame(FrameClass::Relay, session, PeerId::RELAY, to, &msg.encode()).unwrap())
}

async fn send(state: &Shared, to: PeerId, frame: Bytes) {
    let tx = state.lock().unwrap().peers.get(&to).cloned();
    if let Some(tx) = tx {
        let _ = tx.send(frame).await;
    }
}

/// What the relay does with a frame between members: route it, and attack
/// the first chat frame from the master.
async fn route(state: &Shared, mode: Mode, frame: Bytes) {
    let Ok(f) = FrameRef::parse(&frame) else {
        return;
    };
    let (header, session) = (f.header, f.header.session);
    let targets: Vec<PeerId> = {
        let st = state.lock().unwrap();
        st.peers
            .keys()
            .copied()
            .filter(|p| *p != header.sender)
            .filter(|p| header.destination == PeerId::BROADCAST || *p == header.destination)
            .collect()
    };
    let attack = header.class == FrameClass::Chat && header.sender == PeerId::MASTER && {
        let mut st = state.lock().unwrap();
        !std::mem::replace(&mut st.attacked, true)
    };
    for to in targets {
        if !attack {
            send(state, to, frame.clone()).await;
            continue;
        }
        match mode {
            Mode::Tamper => {
                let mut bad = frame.to_vec();
                if let Some(last) = bad.last_mut() {
                    *last ^= 0x01;
                }
                send(state, to, Bytes::from(bad)).await;
            }
            Mode::Replay => {
                send(state, to, frame.clone()).await;
                send(state, to, frame.clone()).await;
            }
            Mode::Inject => {
                send(state, to, frame.clone()).await;
                let forged = Rekey {
                    epoch: 1_000,
                    wraps: BoundedVec::new(vec![KeyWrap {
                        peer: to,
                        sealed: BoundedBytes::new(vec![0x5a; 48]).unwrap(),
                    }])
                    .unwrap(),
                    roster: BoundedBytes::new(vec![0xa5; 256]).unwrap(),
                };
                let f = plain_frame(
                    FrameClass::Roster,
                    session,
                    PeerId::MASTER,
                    to,
                    &forged.encode(),
                )
                .unwrap();
                send(state, to, Bytes::from(f)).await;
            }
        }
    }
}

async fn serve(
    state: Shared,
    mode: Mode,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let (r, w) = tokio::io::split(tls);
    let (tx, rx) = mpsc::channel(256);
    let mut incoming = spawn_stream(
        r,
        w,
        rx,
        conclave_protocol::frame::MAX_PAYLOAD,
        Drained::default(),
    );
    let mut me: Option<PeerId> = None;
    while let Some(Ok(frame)) = incoming.recv().await {
        let Ok(f) = FrameRef::parse(&frame) else {
            return;
        };
        if f.header.class != FrameClass::Relay {
            route(&state, mode, frame.clone()).await;
            continue;
        }
        let Ok(msg) = ToRelay::decode(f.payload) else {
            return;
        };
        let session = f.header.session;
        match msg {
            ToRelay::Hello(_) => {
                let welcome = FromRelay::Welcome(Welcome {
                    relay_version: Version::new(0, 1, 0),
                    relay_name: BoundedString::new("hostile").unwrap(),
                });
                let _ = tx.send(relay_says(session, PeerId::RELAY, &welcome)).await;
            }
            ToRelay::Ping { nonce } => {
                let pong = FromRelay::Pong {
                    nonce,
                    load_permille: 0,
                };
                let _ = tx.send(relay_says(session, PeerId::RELAY, &pong)).await;
            }
            ToRelay::CreateSession {
                session, announce, ..
            } => {
                {
                    let mut st = state.lock().unwrap();
                    st.session = Some((session, announce));
                    st.peers.insert(PeerId::MASTER, tx.clone());
                    st.next_peer = PeerId::FIRST_PARTICIPANT.0;
                }
                me = Some(PeerId::MASTER);
                let created = FromRelay::SessionCreated { session };
                let _ = tx.send(relay_says(session, PeerId::MASTER, &created)).await;
            }
            ToRelay::Join { session: asked } => {
                let joined = {
                    let mut st = state.lock().unwrap();
                    match st.session.clone() {
                        Some((id, announce)) if id == asked => {
                            let peer = PeerId(st.next_peer);
                            st.next_peer += 1;
                            st.peers.insert(peer, tx.clone());
                            Some((peer, announce))
                        }
                        _ => None,
                    }
                };
                let Some((peer, announce)) = joined else {
                    return;
                };
                me = Some(peer);
                let msg = FromRelay::Joined {
                    session: asked,
                    peer,
                    announce,
                };
                let _ = tx.send(relay_says(asked, peer, &msg)).await;
                let note = relay_says(asked, PeerId::MASTER, &FromRelay::PeerJoined { peer });
                send(&state, PeerId::MASTER, note).await;
            }
            ToRelay::Remove { peer } => {
                state.lock().unwrap().peers.remove(&peer);
            }
            ToRelay::Leave => break,
            _ => {}
        }
    }
    if let Some(p) = me {
        state.lock().unwrap().peers.remove(&p);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let key = conclave_relay::config::read_key(std::path::Path::new(&arg("--key-file"))).unwrap();
    let addr: SocketAddr = arg("--tls").parse().unwrap();
    let mode = match arg("--mode").as_str() {
        "tamper" => Mode::Tamper,
        "replay" => Mode::Replay,
        "inject" => Mode::Inject,
        other => panic!("hostile-relay: unknown mode {other}"),
    };
    let identity = RelayIdentity::new(&key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(identity.server_config().unwrap()));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let state: Shared = Arc::default();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve(state.clone(), mode, acceptor.clone(), tcp));
    }
}
