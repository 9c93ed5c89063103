//! Clients the tests talk through: AWS clients for an emulator endpoint
//! (plain, or HTTPS trusting a test CA), a minimal HTTP GET, and the paho-mqtt
//! scripts run from the venv scripts/install-deps.sh makes.

use std::time::Duration;

use aws_sdk_sqs::config::{Credentials, Region};
use lambdaless_runtime::aws::{self, AwsClients};

/// AWS clients for an endpoint, with the emulator's region and test credentials.
pub async fn aws_clients(endpoint: &str) -> AwsClients {
    clients_from(aws::loader(), endpoint).await
}

/// `loader` pointed at `endpoint` with the emulator's region and test credentials.
async fn clients_from(loader: aws_config::ConfigLoader, endpoint: &str) -> AwsClients {
    let config = loader
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "lambdaless-tests",
        ))
        .load()
        .await;
    aws::clients(&config)
}

/// Like [`aws_clients`], for an HTTPS endpoint whose certificate chains to
/// `ca_pem` alone (not the system trust store): the SDK client the services
/// use (rustls on ring), with its trust store replaced.
pub async fn aws_clients_trusting(endpoint: &str, ca_pem: &[u8]) -> AwsClients {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(ca_pem.to_vec());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context from the test CA");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https();
    clients_from(aws::loader().http_client(http), endpoint).await
}

/// Runs `script` (Python, `-c`) with `args` in the paho-mqtt venv that
/// scripts/install-deps.sh makes, and returns the JSON it prints; fails the
/// test with its stderr if it does not exit 0.
pub async fn paho_script(script: &str, args: Vec<String>) -> serde_json::Value {
    let python = lambdaless_client::paho::python();
    assert!(
        python.exists(),
        "paho-mqtt venv missing at {} (run scripts/install-deps.sh)",
        python.display()
    );
    let mut cmd = std::process::Command::new(python);
    cmd.arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the paho script's thread ends")
        .expect("python runs");
    assert!(
        out.status.success(),
        "paho script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the paho script prints JSON")
}

/// Minimal HTTP GET against 127.0.0.1:port; returns (status, body).
pub async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("read timed out"))??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
