//! The cross-service integration suite: one binary, one module per area.
//! Each test starts its own [`lambdaless_testkit::Stack`] of real containers.

mod console;
mod devices;
mod faults;
mod fetch;
mod foundation;
mod graphql;
mod hostile;
mod http;
mod http_auth;
mod mqtt_acl;
mod mqtt_api;
mod mqtt_client;
mod mqtt_shedding;
mod mqtt_v5;
mod poison;
mod scale;
mod schemathesis;
mod stream;
mod tls;
mod users;
