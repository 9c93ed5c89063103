//! `streamer` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main(|settings: streamer::Settings, ctx| async move {
        streamer::App::build(settings, ctx).await?.run().await
    })
}
