//! Deterministic keys, licenses, builds and session configurations for tests,
//! fuzzing and benchmarks (feature `test-fixtures`). Nothing here is for
//! production: every key comes from a fixed seed.
#![allow(clippy::expect_used)]

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::artefact::{
    Branding, BuildConfig, CountdownDefault, License, LicenseNumber, PasswordRules, PolicyProfile,
    RecordingPolicy, RelayEntry, Role, Version,
};
use crate::bounded::{BoundedString, BoundedVec};
use crate::frame::SessionId;
use crate::sign::{PublicKey, Signed, SigningIdentity};
use crate::stage1::{Hello, SessionKind};
use crate::stage2::MasterConfig;
use crate::time::UnixTime;

/// "Now" in fixtures: 2026-11-25.
pub const NOW: UnixTime = UnixTime(1_795_600_000);
/// The version fixtures' builds carry.
pub const VERSION: Version = Version::new(1, 4, 0);

/// A deterministic RNG.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A deterministic signing key.
pub fn identity(seed: u64) -> SigningIdentity {
    SigningIdentity::generate(&mut rng(seed))
}

/// A bounded string from a literal that fits.
pub fn s<const N: usize>(text: &str) -> BoundedString<N> {
    BoundedString::new(text.chars().take(N).collect::<String>()).unwrap_or_default()
}

/// A support profile.
pub fn profile() -> PolicyProfile {
    PolicyProfile {
        name: s("support"),
        screen_sharing: true,
        presenter_handover: true,
        remote_control: true,
        control_countdown_secs: 10,
        countdown_default: CountdownDefault::Deny,
        file_transfer: true,
        shared_files: true,
        recording: RecordingPolicy::Allowed,
        autolock: true,
        max_participants: 50,
        session_id_digits: 6,
        password_required: false,
        password_rules: PasswordRules {
            min_length: 8,
            letter: true,
            digit: true,
            symbol: false,
        },
        min_client_version: Version::new(1, 0, 0),
        port_mapper: false,
    }
}

/// A license for `master_key`, valid for a year around [`NOW`].
pub fn license(portal: &SigningIdentity, master_key: PublicKey, number: u64) -> Signed<License> {
    license_valid_until(portal, master_key, number, UnixTime(NOW.0 + 365 * 86_400))
}

/// A license for `master_key` that expires at `expires_at`.
pub fn license_valid_until(
    portal: &SigningIdentity,
    master_key: PublicKey,
    number: u64,
    expires_at: UnixTime,
) -> Signed<License> {
    portal.sign(&License {
        number: LicenseNumber::new(number).expect("fixture license numbers have ten digits"),
        licensee: s("Acme Support Ltd"),
        master_key,
        profile: s("support"),
        issued_at: UnixTime(NOW.0 - 86_400),
        expires_at,
    })
}

/// A relay on loopback holding `key`, at the default ports.
pub fn relay_entry(key: &SigningIdentity) -> RelayEntry {
    RelayEntry {
        name: s("local"),
        host: s("127.0.0.1"),
        quic_port: 5000,
        tls_port: 5443,
        websocket_port: 5080,
        public_key: key.public_key(),
        region: s("lab"),
        priority: 0,
    }
}

/// A build config for `role`, signed by `portal`, with one loopback relay.
pub fn build(
    portal: &SigningIdentity,
    role: Role,
    version: Version,
    license: Option<Signed<License>>,
) -> Signed<BuildConfig> {
    portal.sign(&BuildConfig {
        role,
        version,
        binary_sha256: [0x42; 32],
        relays: BoundedVec::new(vec![relay_entry(&identity(77))]).unwrap_or_default(),
        profile: profile(),
        branding: Branding {
            product_name: s("Acme Support"),
            organisation: s("Acme"),
            accent_rgb: [0x20, 0x60, 0xc0],
            support_url: s("https://support.acme.example"),
        },
        portal_key: portal.public_key(),
        license,
        issued_at: NOW,
    })
}

/// A master's Hello with a valid proof over `channel_binding`.
pub fn master_hello(
    portal: &SigningIdentity,
    master: &SigningIdentity,
    channel_binding: &[u8; 32],
) -> Hello {
    let lic = license(portal, master.public_key(), 1_234_567_890);
    Hello {
        role: Role::Master,
        build: build(portal, Role::Master, VERSION, Some(lic)),
        proof: Some(master.sign_raw(crate::stage1::HELLO_PROOF_DOMAIN, channel_binding)),
        os_user: s("agent"),
        host: s("desk-1"),
    }
}

/// A participant's Hello.
pub fn participant_hello(portal: &SigningIdentity) -> Hello {
    Hello {
        role: Role::Participant,
        build: build(portal, Role::Participant, VERSION, None),
        proof: None,
        os_user: s("customer"),
        host: s("laptop"),
    }
}

/// A master configuration for `session`, with the license signed by `portal`.
pub fn master_config(
    portal: &SigningIdentity,
    master_seed: u64,
    session: SessionId,
    kind: SessionKind,
    password: Option<&str>,
) -> MasterConfig {
    let identity = identity(master_seed);
    MasterConfig {
        session,
        kind,
        moderator: s("Alice Agent"),
        license: license(portal, identity.public_key(), 1_234_567_890),
        identity,
        password: password.map(|p| zeroize::Zeroizing::new(p.to_string())),
        autolock: false,
        created_at: NOW,
    }
}

/// A checked build for `role` listing `relays`, signed by the portal
/// `identity(1)`; a master's carries the license of `identity(2)`, which it
/// holds. The profile is [`profile`] with `edit` applied.
pub fn verified_build(
    role: Role,
    relays: Vec<RelayEntry>,
    edit: impl FnOnce(&mut PolicyProfile),
) -> crate::trailer::VerifiedBuild {
    let portal = identity(1);
    let master = identity(2);
    let license =
        (role == Role::Master).then(|| license(&portal, master.public_key(), 1_234_567_890));
    let mut config = build(&portal, role, VERSION, license.clone())
        .verify_with(&portal.public_key())
        .expect("a fixture build verifies");
    config.relays = BoundedVec::new(relays).unwrap_or_default();
    edit(&mut config.profile);
    let signed = portal.sign(&config);
    crate::trailer::VerifiedBuild {
        config,
        signed,
        master: license.map(|l| {
            let l = l
                .verify_with(&portal.public_key())
                .expect("a fixture license verifies");
            (l, master)
        }),
    }
}
