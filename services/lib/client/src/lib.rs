//! The client library of a lambdaless stack: what the CLI, the gateway's
//! fetch bridge, the benchmarks, the test kit and users' own programs call.
//!
//! - [`provision`] creates every queue and table of SPEC §2 idempotently (what
//!   Compose runs once before the workers start);
//! - [`seed`] loads the demo data sets;
//! - [`fetch`] is seed 1's request/reply over SQS, replies matched by nonce;
//! - [`stream`] reads the streamer's NDJSON over plain HTTP/1.1;
//! - [`device`] is seed 2's MQTT request/response, waiting for each answer;
//! - [`paho`] finds the paho-mqtt Python the benchmarks and tests drive the broker with.
//!
//! Nothing here parses command lines: the `clap` feature only derives
//! arguments for the option structs, for the CLI and the benchmarks.

pub mod device;
pub mod fetch;
pub mod paho;
pub mod provision;
pub mod seed;
pub mod stream;
