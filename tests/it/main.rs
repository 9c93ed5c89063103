//! The cross-service integration suite: one binary, one module per area.
//! Each test starts its own [`lambdaless_tests::Stack`] of real containers.

mod devices;
mod fetch;
mod foundation;
mod graphql;
mod http;
mod mqtt_api;
mod mqtt_client;
mod stream;
mod users;
