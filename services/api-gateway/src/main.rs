//! `api-gateway` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    lambdaless_runtime::service::main::<api_gateway::Gateway>()
}
