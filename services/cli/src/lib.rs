//! The `lambdaless` command line and the client library behind it.
//!
//! [`provision`] creates every queue and table of SPEC §2 idempotently; it is
//! what Compose runs once before the workers start, and what the test suite
//! calls to set up each test's prefixed resources.

pub mod bench;
pub mod device;
pub mod fetch;
pub mod provision;
pub mod seed;
pub mod stream;
