//! `api-gateway` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main(|settings: api_gateway::Settings, ctx| async move {
        api_gateway::App::build(settings, ctx).await?.run().await
    })
}
