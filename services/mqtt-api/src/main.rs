//! `mqtt-api` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main(|settings: mqtt_api::Settings, ctx| async move {
        mqtt_api::App::build(settings, ctx).await?.run().await
    })
}
