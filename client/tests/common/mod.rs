//! What the client's integration tests share: a relay on loopback that
//! trusts the fixtures' portal, its entry in a build's list, who runs the
//! app, and waiting for an event.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use conclave_client::connect::Who;
use conclave_client::events::Event;
use conclave_client::session::Running;
use conclave_protocol::artefact::RelayEntry;
use conclave_protocol::fixtures;
use conclave_relay::config::Settings;
use conclave_relay::Relay;

/// A relay on loopback (QUIC and TLS) trusting the fixtures' portal.
pub(crate) async fn relay() -> Relay {
    relay_with(|_| {}).await
}

/// [`relay`], with its settings changed by `change` first.
pub(crate) async fn relay_with(change: impl FnOnce(&mut Settings)) -> Relay {
    let mut s = Settings {
        quic: Some("127.0.0.1:0".into()),
        tls: Some("127.0.0.1:0".into()),
        websocket: Some("off".into()),
        admin: Some("off".into()),
        portal_keys: Some(vec![hex::encode(fixtures::identity(1).public_key().0)]),
        ..Settings::default()
    };
    change(&mut s);
    Relay::start(s.resolve(true).unwrap()).await.unwrap()
}

/// `relay` as a build's list names it.
pub(crate) fn entry(name: &str, relay: &Relay, priority: u8) -> RelayEntry {
    let mut e = fixtures::relay_entry(&fixtures::identity(0));
    e.name = fixtures::s(name);
    e.public_key = relay.public_key;
    e.quic_port = relay.quic.unwrap().port();
    e.tls_port = relay.tls.unwrap().port();
    e.websocket_port = 0;
    e.priority = priority;
    e
}

/// `user` on the host "lab".
pub(crate) fn who(user: &str) -> Who {
    Who {
        os_user: fixtures::s(user),
        host: fixtures::s("lab"),
    }
}

/// The next event that `pick` accepts, within 20 seconds.
pub(crate) async fn next(r: &mut Running, pick: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = r.events.recv().await.expect("events ended");
            if pick(&e) {
                return e;
            }
        }
    })
    .await
    .expect("no such event in time")
}
