//! `fetch-responder` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main::<fetch_responder::Responder>()
}
