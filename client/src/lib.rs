//! # conclave-client
//!
//! What the master and participant apps share. So far:
//!
//! | module | what it holds |
//! |---|---|
//! | [`build`] | reading and checking the app's own branded build at start (R10), and describing it |
#![forbid(unsafe_code)]

pub mod build;
