//! Wire contracts shared by every lambdaless service, the CLI and the test suite.
//!
//! Everything a user, a script or another service relies on by name lives here:
//! queue and table names (with the optional account-sharing prefix), table key
//! schemas, MQTT topics and the JSON message shapes of SPEC §2–§7. Services
//! depend on this crate instead of spelling names themselves, so a rename is
//! one change and a typo is a compile error.

pub mod api;
pub mod device;
pub mod dlq;
pub mod fetch;
pub mod limits;
pub mod names;
pub mod schema;
pub mod topics;
pub mod user;

pub use names::Names;
