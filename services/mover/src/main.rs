//! `mover` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main(|settings: mover::Settings, ctx| async move {
        mover::App::build(settings, ctx).await?.run().await
    })
}
