//! Stage 1: the relay's admission checks, one test per refusal reason.
//! Requirements R8 (license), R9 (minimum version), R10 (signed builds).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use conclave_protocol::artefact::{LicenseNumber, RevocationList, Role, Version};
use conclave_protocol::bounded::BoundedVec;
use conclave_protocol::codec::Message;
use conclave_protocol::fixtures::{self, NOW};
use conclave_protocol::stage1::{
    check_hello, AdmissionPolicy, AwaitingWelcome, FromRelay, Refusal, RefusalCode, Stage1Error,
    ToRelay, Welcome,
};
use conclave_protocol::time::UnixTime;

const BINDING: [u8; 32] = [7; 32];

fn policy() -> AdmissionPolicy {
    AdmissionPolicy {
        portal_keys: vec![fixtures::identity(1).public_key()],
        min_version: Version::new(1, 2, 0),
    }
}

fn refused(hello: &conclave_protocol::stage1::Hello, revoked: &RevocationList) -> Refusal {
    check_hello(hello, &policy(), revoked, &BINDING, NOW).expect_err("must be refused")
}

#[test]
fn r10_valid_master_and_participant_are_admitted() {
    let portal = fixtures::identity(1);
    let master = fixtures::identity(2);
    let ok = check_hello(
        &fixtures::master_hello(&portal, &master, &BINDING),
        &policy(),
        &RevocationList::empty(),
        &BINDING,
        NOW,
    )
    .unwrap();
    assert_eq!(ok.role, Role::Master);
    assert_eq!(ok.license.unwrap().master_key, master.public_key());
    let ok = check_hello(
        &fixtures::participant_hello(&portal),
        &policy(),
        &RevocationList::empty(),
        &BINDING,
        NOW,
    )
    .unwrap();
    assert_eq!(ok.role, Role::Participant);
}

#[test]
fn r10_build_from_another_portal_is_refused() {
    let other = fixtures::identity(9);
    let r = refused(
        &fixtures::participant_hello(&other),
        &RevocationList::empty(),
    );
    assert_eq!(r.code, RefusalCode::BuildNotTrusted);
    assert!(r.message.contains("does not trust"));
}

#[test]
fn r10_tampered_build_is_refused() {
    let portal = fixtures::identity(1);
    let hello = fixtures::participant_hello(&portal);
    let mut wire = ToRelay::Hello(hello).encode();
    // Flip one byte inside the signed build config body: the tail of the
    // message is the signature, the body sits before it.
    let n = wire.len();
    wire[n - 200] ^= 0x01;
    match ToRelay::decode(&wire) {
        Ok(ToRelay::Hello(h)) => {
            let r =
                check_hello(&h, &policy(), &RevocationList::empty(), &BINDING, NOW).unwrap_err();
            assert!(
                matches!(
                    r.code,
                    RefusalCode::BuildTampered | RefusalCode::BuildNotTrusted
                ),
                "{r:?}"
            );
        }
        // Some flips break the encoding itself; that is a refusal too.
        Ok(_) => panic!("a Hello decoded as another message"),
        Err(_) => {}
    }
}

#[test]
fn wrong_role_is_refused() {
    let portal = fixtures::identity(1);
    let mut hello = fixtures::participant_hello(&portal);
    hello.role = Role::Master;
    assert_eq!(
        refused(&hello, &RevocationList::empty()).code,
        RefusalCode::WrongRole
    );
}

#[test]
fn r9_old_version_is_refused_with_an_update_message() {
    let portal = fixtures::identity(1);
    let mut hello = fixtures::participant_hello(&portal);
    hello.build = fixtures::build(&portal, Role::Participant, Version::new(1, 1, 9), None);
    let r = refused(&hello, &RevocationList::empty());
    assert_eq!(r.code, RefusalCode::VersionTooOld);
    assert!(r.message.contains("1.2.0 or later"), "{}", r.message);
    assert!(r.message.contains("update"));
}

#[test]
fn r8_master_without_license_is_refused() {
    let portal = fixtures::identity(1);
    let master = fixtures::identity(2);
    let mut hello = fixtures::master_hello(&portal, &master, &BINDING);
    hello.build = fixtures::build(&portal, Role::Master, fixtures::VERSION, None);
    assert_eq!(
        refused(&hello, &RevocationList::empty()).code,
        RefusalCode::LicenseMissing
    );
}

#[test]
fn r8_license_from_another_portal_is_refused() {
    let portal = fixtures::identity(1);
    let other = fixtures::identity(9);
    let master = fixtures::identity(2);
    let mut hello = fixtures::master_hello(&portal, &master, &BINDING);
    let foreign = fixtures::license(&other, master.public_key(), 1_234_567_890);
    hello.build = fixtures::build(&portal, Role::Master, fixtures::VERSION, Some(foreign));
    assert_eq!(
        refused(&hello, &RevocationList::empty()).code,
        RefusalCode::LicenseInvalid
    );
}

#[test]
fn r8_expired_license_is_refused() {
    let portal = fixtures::identity(1);
    let master = fixtures::identity(2);
    let mut hello = fixtures::master_hello(&portal, &master, &BINDING);
    let old = fixtures::license_valid_until(
        &portal,
        master.public_key(),
        1_234_567_890,
        UnixTime(NOW.0 - 1),
    );
    hello.build = fixtures::build(&portal, Role::Master, fixtures::VERSION, Some(old));
    let r = refused(&hello, &RevocationList::empty());
    assert_eq!(r.code, RefusalCode::LicenseExpired);
    assert!(r.message.contains("renew"));
}

#[test]
fn r8_revoked_license_is_refused() {
    let portal = fixtures::identity(1);
    let master = fixtures::identity(2);
    let hello = fixtures::master_hello(&portal, &master, &BINDING);
    let list = RevocationList {
        serial: 3,
        issued_at: NOW,
        revoked: BoundedVec::new(vec![LicenseNumber::new(1_234_567_890).unwrap()]).unwrap(),
    };
    let r = refused(&hello, &list);
    assert_eq!(r.code, RefusalCode::LicenseRevoked);
    assert!(r.message.contains("1234567890"));
}

#[test]
fn r8_copied_license_without_its_key_is_refused() {
    let portal = fixtures::identity(1);
    let master = fixtures::identity(2);
    let thief = fixtures::identity(3);
    let mut hello = fixtures::master_hello(&portal, &master, &BINDING);
    hello.proof = Some(thief.sign_raw(conclave_protocol::stage1::HELLO_PROOF_DOMAIN, &BINDING));
    assert_eq!(
        refused(&hello, &RevocationList::empty()).code,
        RefusalCode::ProofInvalid
    );
    // A proof made for another connection does not transfer.
    let hello = fixtures::master_hello(&portal, &master, &[8; 32]);
    assert_eq!(
        refused(&hello, &RevocationList::empty()).code,
        RefusalCode::ProofInvalid
    );
    let mut hello = fixtures::master_hello(&portal, &master, &BINDING);
    hello.proof = None;
    assert_eq!(
        refused(&hello, &RevocationList::empty()).code,
        RefusalCode::ProofInvalid
    );
}

#[test]
fn client_state_machine_handles_welcome_and_refusal() {
    let portal = fixtures::identity(1);
    let (state, hello) = AwaitingWelcome::start(fixtures::participant_hello(&portal));
    assert!(matches!(
        ToRelay::decode(&hello).unwrap(),
        ToRelay::Hello(_)
    ));
    let welcome = FromRelay::Welcome(Welcome {
        relay_version: Version::new(1, 0, 0),
        relay_name: fixtures::s("eu-1"),
    })
    .encode();
    assert_eq!(
        state.receive(&welcome).unwrap().welcome.relay_name.as_str(),
        "eu-1"
    );

    let (state, _) = AwaitingWelcome::start(fixtures::participant_hello(&portal));
    let refusal = FromRelay::Refused(Refusal::new(
        RefusalCode::VersionTooOld,
        "update to 1.4.0 or later",
    ))
    .encode();
    match state.receive(&refusal) {
        Err(Stage1Error::Refused(r)) => assert_eq!(r.to_string(), "update to 1.4.0 or later"),
        other => panic!("{other:?}"),
    }
    let (state, _) = AwaitingWelcome::start(fixtures::participant_hello(&portal));
    assert!(matches!(
        state.receive(&[1, 99]),
        Err(Stage1Error::Decode(_))
    ));
}

#[test]
fn stage1_messages_round_trip() {
    let portal = fixtures::identity(1);
    let master = fixtures::identity(2);
    for hello in [
        fixtures::participant_hello(&portal),
        fixtures::master_hello(&portal, &master, &BINDING),
    ] {
        let m = ToRelay::Hello(hello);
        assert_eq!(ToRelay::decode(&m.encode()).unwrap(), m);
    }
    let long = "x".repeat(2000);
    let r = Refusal::new(RefusalCode::Malformed, long);
    assert_eq!(r.message.len(), 512);
}
