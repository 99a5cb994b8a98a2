//! Test support shared by the portal's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod pg;
