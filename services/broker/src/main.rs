//! `broker` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main(|settings: broker::Settings, ctx| async move {
        broker::App::build(settings, ctx).await?.run().await
    })
}
