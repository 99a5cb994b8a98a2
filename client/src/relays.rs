//! Which relay carries a session, and where it goes when that relay is lost
//! (R18), from the session ID alone.
//!
//! Every relay in the baked list gets a score `SHA-256(label ‖ session ID ‖
//! relay key)`; the relays in descending score order are the session's order
//! (rendezvous hashing). The first carries the session, the next ones take it
//! over in turn. A participant needs nothing but the ID and its baked list to
//! find the session, and no directory exists that could be down or lie.
//!
//! The master, which measured the relays ([`crate::connect::measure`]), draws
//! session IDs until its chosen relay comes first ([`draw_session_id`]); with
//! `n` relays that takes `n` draws on average, and the ID stays uniformly
//! random among those that map to that relay: `log10(n)` fewer digits of
//! entropy than the ID's length, a cost the ID-length policy and the doubling
//! join delay (R12) are set against.

use conclave_protocol::artefact::{PasswordRules, RelayEntry, MAX_SESSION_ID_DIGITS};
use conclave_protocol::frame::SessionId;
use rand_core::{CryptoRngCore, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Domain label of the relay order hash.
const ORDER_LABEL: &[u8] = b"conclave/v1/relay-order\0";

/// Draws at most this many IDs before giving up on a relay (never reached:
/// with 64 relays the chance of missing is below 10^-600).
const MAX_DRAWS: u32 = 100_000;

/// The session's relays, as indices into `relays`, in the order to use them.
pub fn relay_order(session: SessionId, relays: &[RelayEntry]) -> Vec<usize> {
    let mut scored: Vec<([u8; 32], usize)> = relays
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut h = Sha256::new();
            h.update(ORDER_LABEL);
            h.update(session.0.to_be_bytes());
            h.update(r.public_key.0);
            (h.finalize().into(), i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// A uniformly random number below `bound` (> 0), without modulo bias.
fn below(rng: &mut impl RngCore, bound: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX - bound + 1) % bound;
    loop {
        let v = rng.next_u64();
        if v <= zone {
            return v % bound;
        }
    }
}

/// A random session ID with exactly `digits` digits (clamped to 5–19) whose
/// relay order starts with `relays[first]`; `None` only if `first` is out
/// of range.
pub fn draw_session_id(
    digits: u8,
    relays: &[RelayEntry],
    first: usize,
    rng: &mut impl CryptoRngCore,
) -> Option<SessionId> {
    if first >= relays.len() {
        return None;
    }
    let digits = u32::from(digits.clamp(
        conclave_protocol::artefact::MIN_SESSION_ID_DIGITS,
        MAX_SESSION_ID_DIGITS,
    ));
    let low = 10u64.pow(digits - 1);
    let span = 10u64.pow(digits) - low;
    (0..MAX_DRAWS)
        .map(|_| SessionId(low + below(rng, span)))
        .find(|id| relay_order(*id, relays).first() == Some(&first))
}

/// Letters and digits that cannot be mistaken for one another when read out.
const PASSWORD_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY3469";
/// Symbols used when the rules ask for one.
const PASSWORD_SYMBOLS: &[u8] = b"-+=#%";

/// A random password that meets `rules`: at least 12 characters (about 67
/// bits from the alphabet), readable aloud.
pub fn generate_password(rules: &PasswordRules, rng: &mut impl CryptoRngCore) -> Zeroizing<String> {
    let len = usize::from(rules.min_length).max(12);
    loop {
        let mut p = Zeroizing::new(String::with_capacity(len));
        for i in 0..len {
            let set = if rules.symbol && i == len / 2 {
                PASSWORD_SYMBOLS
            } else {
                PASSWORD_ALPHABET
            };
            let pick = below(rng, set.len() as u64) as usize;
            p.push(char::from(set.get(pick).copied().unwrap_or(b'x')));
        }
        if rules.check(&p).is_ok() {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_protocol::fixtures;
    use rand_chacha::rand_core::SeedableRng;

    fn relays(n: u8) -> Vec<RelayEntry> {
        (0..n)
            .map(|i| {
                let mut r = fixtures::relay_entry(&fixtures::identity(40 + u64::from(i)));
                r.name = fixtures::s(&format!("r{i}"));
                r
            })
            .collect()
    }

    /// R18: the order is a permutation, fixed by the session ID, and spreads
    /// sessions over the relays.
    #[test]
    fn r18_order_is_a_stable_permutation_that_spreads_sessions() {
        let rs = relays(4);
        let mut firsts = [0u32; 4];
        for id in 10_000..12_000u64 {
            let o = relay_order(SessionId(id), &rs);
            let mut sorted = o.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            assert_eq!(o, relay_order(SessionId(id), &rs));
            firsts[o[0]] += 1;
        }
        for f in firsts {
            assert!((350..650).contains(&f), "uneven spread {firsts:?}");
        }
    }

    /// R18: removing one relay from the list moves only its sessions.
    #[test]
    fn r18_losing_a_relay_moves_only_its_sessions_to_their_next_relay() {
        let rs = relays(3);
        let without: Vec<RelayEntry> = rs[..2].to_vec();
        for id in 10_000..11_000u64 {
            let full = relay_order(SessionId(id), &rs);
            let less = relay_order(SessionId(id), &without);
            let expected: Vec<usize> = full.into_iter().filter(|&i| i != 2).collect();
            assert_eq!(less, expected);
        }
    }

    /// R11, R18: drawn IDs have the policy's digits and start at the chosen relay.
    #[test]
    fn r11_r18_drawn_ids_have_the_digits_and_the_chosen_relay() {
        let rs = relays(5);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for digits in [5u8, 9, 19] {
            for first in 0..5 {
                let id = draw_session_id(digits, &rs, first, &mut rng).unwrap();
                assert_eq!(id.0.to_string().len(), usize::from(digits));
                assert_eq!(relay_order(id, &rs)[0], first);
            }
        }
        assert_eq!(
            draw_session_id(3, &rs, 0, &mut rng)
                .unwrap()
                .0
                .to_string()
                .len(),
            5
        );
        assert!(draw_session_id(6, &rs, 5, &mut rng).is_none());
    }

    /// R11: generated passwords meet the policy's rules.
    #[test]
    fn r11_generated_passwords_meet_the_rules() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let rules = PasswordRules {
            min_length: 16,
            letter: true,
            digit: true,
            symbol: true,
        };
        for _ in 0..200 {
            let p = generate_password(&rules, &mut rng);
            assert_eq!(p.chars().count(), 16);
            assert!(rules.check(&p).is_ok());
        }
    }
}
