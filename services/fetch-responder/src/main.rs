//! `fetch-responder` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main(|settings: fetch_responder::Settings, ctx| async move {
        fetch_responder::App::build(settings, ctx)
            .await?
            .run()
            .await
    })
}
