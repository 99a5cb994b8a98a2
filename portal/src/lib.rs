//! # conclave-portal
//!
//! The portal's engine: portal keys, relay lists, policy profiles, licenses,
//! revocation lists and branded, signed builds, over SQLite or PostgreSQL.
//!
//! | module | what it holds |
//! |---|---|
//! | [`engine`] | the operations: init, unlock, licenses, revocation lists, branded builds, verification |
//! | [`store`] | the database (SQLite by default, PostgreSQL by URL) and its migrations |
//! | [`secret`] | secrets sealed under the admin passphrase (Argon2id, AES-256-GCM) |
//! | [`serve`] | the HTTP endpoint relays poll for the revocation list |
//!
//! The portal is never in a session's data path (R4b): relays keep the last
//! revocation list they fetched, and builds carry everything the apps need.
#![forbid(unsafe_code)]

pub mod engine;
pub mod secret;
pub mod serve;
pub mod store;
