//! Signed artefacts issued by the portal: licenses, build configurations
//! (with the relay list, policy profile and branding baked into a binary) and
//! revocation lists. Each is a [`crate::codec::Message`] with bounded fields
//! and an [`Artefact`] domain label; see [`crate::sign`] for how they are signed.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bounded::{BoundedString, BoundedVec};
use crate::codec::Message;
use crate::sign::{Artefact, PublicKey, Signed};
use crate::time::UnixTime;

/// A client or relay version, `major.minor.patch`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

impl Version {
    /// `major.minor.patch`.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `major.minor.patch`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version of the form 1.4.0")]
pub struct BadVersion(pub String);

impl FromStr for Version {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, BadVersion> {
        let bad = || BadVersion(s.chars().take(32).collect());
        let mut parts = s.trim().splitn(3, '.').map(|p| p.parse::<u16>());
        let mut next = || parts.next().unwrap_or(Ok(0)).map_err(|_| bad());
        Ok(Version::new(next()?, next()?, next()?))
    }
}

/// Which app a build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// The licensed moderator/support app.
    Master,
    /// The customer app.
    Participant,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Participant => "participant",
        })
    }
}

/// A license number: exactly ten decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LicenseNumber(u64);

impl LicenseNumber {
    /// The smallest ten-digit number.
    pub const MIN: u64 = 1_000_000_000;
    /// The largest ten-digit number.
    pub const MAX: u64 = 9_999_999_999;

    /// `n` if it has exactly ten digits.
    pub fn new(n: u64) -> Option<Self> {
        (Self::MIN..=Self::MAX)
            .contains(&n)
            .then_some(LicenseNumber(n))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LicenseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010}", self.0)
    }
}

/// A moderator license, issued and signed by the portal (R8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    /// The license number.
    pub number: LicenseNumber,
    /// Who holds it, shown to participants.
    pub licensee: BoundedString<128>,
    /// The master identity key (IK_M) the license is bound to.
    pub master_key: PublicKey,
    /// The name of the policy profile that applies.
    pub profile: BoundedString<64>,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// When it stops being valid.
    pub expires_at: UnixTime,
}

impl Message for License {
    const NAME: &'static str = "license";
    const MAX_SIZE: usize = 512;
}
impl Artefact for License {
    const DOMAIN: &'static str = "license";
}

impl License {
    /// Whether the license is valid at `now` (issued, not expired).
    pub fn is_current(&self, now: UnixTime) -> bool {
        self.issued_at <= now && now < self.expires_at
    }
}

/// What happens when a remote-control request's countdown runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CountdownDefault {
    /// Control starts unless the customer refuses.
    Accept,
    /// Control starts only if the customer accepts.
    Deny,
}

/// Whether sessions may be, or must be, recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingPolicy {
    /// No recording.
    Forbidden,
    /// Anyone may record; everyone is told.
    Allowed,
    /// Recording starts and stops with the session.
    Forced,
}

/// Complexity rules for session passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordRules {
    /// Minimum length in characters.
    pub min_length: u8,
    /// Needs at least one letter.
    pub letter: bool,
    /// Needs at least one digit.
    pub digit: bool,
    /// Needs at least one character that is neither.
    pub symbol: bool,
}

impl PasswordRules {
    /// Which rule `password` breaks, if any, as a message for the user.
    pub fn check(&self, password: &str) -> Result<(), String> {
        if password.chars().count() < usize::from(self.min_length) {
            return Err(format!(
                "the password must have at least {} characters",
                self.min_length
            ));
        }
        if self.letter && !password.chars().any(char::is_alphabetic) {
            return Err("the password must contain a letter".into());
        }
        if self.digit && !password.chars().any(|c| c.is_ascii_digit()) {
            return Err("the password must contain a digit".into());
        }
        if self.symbol && password.chars().all(char::is_alphanumeric) {
            return Err(
                "the password must contain a character that is neither letter nor digit".into(),
            );
        }
        Ok(())
    }
}

/// A policy profile (R16): what sessions under it may do. Baked into builds
/// and enforced by the relay where it can see it (R13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProfile {
    /// The profile's name.
    pub name: BoundedString<64>,
    /// Screen sharing allowed.
    pub screen_sharing: bool,
    /// The presenter role may be handed to a participant.
    pub presenter_handover: bool,
    /// Remote control allowed.
    pub remote_control: bool,
    /// Seconds of countdown before remote control starts.
    pub control_countdown_secs: u16,
    /// What the countdown does when nobody answers.
    pub countdown_default: CountdownDefault,
    /// File transfer allowed.
    pub file_transfer: bool,
    /// Shared files in meetings allowed.
    pub shared_files: bool,
    /// Recording.
    pub recording: RecordingPolicy,
    /// 1:1 support sessions lock once agent and customer are in.
    pub autolock: bool,
    /// Most participants in one session.
    pub max_participants: u16,
    /// Digits in a session ID (at least 5).
    pub session_id_digits: u8,
    /// A password is required for every session.
    pub password_required: bool,
    /// Rules for session passwords.
    pub password_rules: PasswordRules,
    /// Oldest client version allowed.
    pub min_client_version: Version,
    /// TCP port mapping through sessions allowed (R20).
    pub port_mapper: bool,
}

/// The shortest session ID allowed (R11).
pub const MIN_SESSION_ID_DIGITS: u8 = 5;
/// The longest session ID a `u64` holds.
pub const MAX_SESSION_ID_DIGITS: u8 = 19;

/// One relay in a baked relay list, with the key clients pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayEntry {
    /// A name for logs and notices.
    pub name: BoundedString<64>,
    /// Host name or address.
    pub host: BoundedString<253>,
    /// QUIC (UDP) port, 0 if not offered.
    pub quic_port: u16,
    /// TLS-over-TCP port, 0 if not offered.
    pub tls_port: u16,
    /// WebSocket-over-TLS port, 0 if not offered.
    pub websocket_port: u16,
    /// The relay's Ed25519 key; its TLS certificate must carry exactly this key.
    pub public_key: PublicKey,
    /// Region label.
    pub region: BoundedString<32>,
    /// Lower is preferred.
    pub priority: u8,
}

/// Branding shown by the apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    /// Product name in window titles.
    pub product_name: BoundedString<64>,
    /// Organisation name.
    pub organisation: BoundedString<128>,
    /// Accent colour, RGB.
    pub accent_rgb: [u8; 3],
    /// Where users get help.
    pub support_url: BoundedString<256>,
}

/// Most relays in one list.
pub const MAX_RELAYS: usize = 64;

/// The configuration baked into a branded binary (R4, R10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildConfig {
    /// Which app this is.
    pub role: Role,
    /// The app's version.
    pub version: Version,
    /// SHA-256 of the executable the config is appended to.
    pub binary_sha256: [u8; 32],
    /// Relays, in the portal's order.
    pub relays: BoundedVec<RelayEntry, MAX_RELAYS>,
    /// The policy profile.
    pub profile: PolicyProfile,
    /// Branding.
    pub branding: Branding,
    /// The portal's root public key, which signs licenses and revocation lists.
    pub portal_key: PublicKey,
    /// For a master: its license.
    pub license: Option<Signed<License>>,
    /// When the build was made.
    pub issued_at: UnixTime,
}

impl Message for BuildConfig {
    const NAME: &'static str = "build config";
    const MAX_SIZE: usize = 64 * 1024;
}
impl Artefact for BuildConfig {
    const DOMAIN: &'static str = "build-config";
}

/// Most license numbers in one revocation list.
pub const MAX_REVOKED: usize = 100_000;

/// The portal's list of revoked licenses. Serials only go up: a relay never
/// replaces a list by one with a lower or equal serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// Monotonic serial number.
    pub serial: u64,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// Revoked license numbers, sorted ascending without duplicates.
    pub revoked: BoundedVec<LicenseNumber, MAX_REVOKED>,
}

impl Message for RevocationList {
    const NAME: &'static str = "revocation list";
    const MAX_SIZE: usize = 1 << 20;
}
impl Artefact for RevocationList {
    const DOMAIN: &'static str = "revocation-list";
}

impl RevocationList {
    /// An empty list with serial 0.
    pub fn empty() -> Self {
        RevocationList {
            serial: 0,
            issued_at: UnixTime(0),
            revoked: BoundedVec::default(),
        }
    }

    /// Whether `number` is revoked.
    pub fn is_revoked(&self, number: LicenseNumber) -> bool {
        self.revoked.binary_search(&number).is_ok()
    }

    /// Whether the list is sorted and free of duplicates, as issued by a portal.
    pub fn is_well_formed(&self) -> bool {
        self.revoked
            .windows(2)
            .all(|w| matches!(w, [a, b] if a < b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::profile;
    use crate::sign::SigningIdentity;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn version_parses_what_it_prints(a in any::<u16>(), b in any::<u16>(), c in any::<u16>()) {
            let v = Version::new(a, b, c);
            prop_assert_eq!(v.to_string().parse::<Version>(), Ok(v));
        }

        #[test]
        fn license_round_trips(n in LicenseNumber::MIN..=LicenseNumber::MAX, name in "[a-zA-Z ]{0,128}",
                               key in any::<[u8; 32]>(), from in any::<u64>(), to in any::<u64>()) {
            let l = License {
                number: LicenseNumber::new(n).unwrap(),
                licensee: BoundedString::new(name).unwrap(),
                master_key: PublicKey(key),
                profile: BoundedString::new("support").unwrap(),
                issued_at: UnixTime(from),
                expires_at: UnixTime(to),
            };
            prop_assert_eq!(License::decode(&l.encode()), Ok(l));
        }

        #[test]
        fn revocation_list_round_trips(mut nums in proptest::collection::vec(LicenseNumber::MIN..=LicenseNumber::MAX, 0..100), serial in any::<u64>()) {
            nums.sort_unstable();
            nums.dedup();
            let list = RevocationList {
                serial,
                issued_at: UnixTime(5),
                revoked: BoundedVec::new(nums.iter().map(|&n| LicenseNumber::new(n).unwrap()).collect()).unwrap(),
            };
            prop_assert!(list.is_well_formed());
            for &n in &nums {
                prop_assert!(list.is_revoked(LicenseNumber::new(n).unwrap()));
            }
            prop_assert_eq!(RevocationList::decode(&list.encode()), Ok(list));
        }

        #[test]
        fn artefact_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = License::decode(&bytes);
            let _ = BuildConfig::decode(&bytes);
            let _ = RevocationList::decode(&bytes);
        }
    }

    #[test]
    fn license_numbers_have_ten_digits() {
        assert!(LicenseNumber::new(999_999_999).is_none());
        assert!(LicenseNumber::new(10_000_000_000).is_none());
        assert_eq!(
            LicenseNumber::new(1_000_000_000).unwrap().to_string(),
            "1000000000"
        );
    }

    #[test]
    fn build_config_round_trips_signed() {
        use rand_chacha::rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let portal = SigningIdentity::generate(&mut rng);
        let cfg = BuildConfig {
            role: Role::Participant,
            version: Version::new(1, 2, 3),
            binary_sha256: [3; 32],
            relays: BoundedVec::new(vec![RelayEntry {
                name: BoundedString::new("eu-1").unwrap(),
                host: BoundedString::new("relay.example.org").unwrap(),
                quic_port: 5000,
                tls_port: 443,
                websocket_port: 443,
                public_key: PublicKey([4; 32]),
                region: BoundedString::new("eu").unwrap(),
                priority: 1,
            }])
            .unwrap(),
            profile: profile(),
            branding: Branding {
                product_name: BoundedString::new("Acme Support").unwrap(),
                organisation: BoundedString::new("Acme").unwrap(),
                accent_rgb: [1, 2, 3],
                support_url: BoundedString::new("https://acme.example/help").unwrap(),
            },
            portal_key: portal.public_key(),
            license: None,
            issued_at: UnixTime(1),
        };
        let signed = portal.sign(&cfg);
        let wire = crate::codec::encode(&signed);
        let back: Signed<BuildConfig> = postcard::from_bytes(&wire[1..]).unwrap();
        assert_eq!(back.verify(&[portal.public_key()]).unwrap(), cfg);
    }

    #[test]
    fn password_rules_explain_themselves() {
        let r = profile().password_rules;
        assert!(r.check("short1").unwrap_err().contains("at least 8"));
        assert!(r.check("longenough").unwrap_err().contains("digit"));
        assert!(r.check("longenough1").is_ok());
    }
}
