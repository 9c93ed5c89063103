//! The cross-service integration suite: one binary, one module per area.
//! Each test starts its own [`lambdaless_tests::Stack`] of real containers.

mod foundation;
mod graphql;
mod http;
mod mqtt_client;
mod users;
