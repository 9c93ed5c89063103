//! HTTPS to the AWS endpoints, as against real AWS: the services' SDK client
//! (rustls on the `ring` provider, no aws-lc) verifies the server's
//! certificate chain against the system trust store or `SSL_CERT_FILE`.
//!
//! A moto emulator serves TLS with a certificate signed by a throw-away CA
//! that this test makes with the `openssl` command (a CA and a separate
//! server certificate, as real endpoints have: rustls refuses a self-signed
//! CA certificate presented as the server's own). A `fetch-responder`
//! container trusts the CA through `SSL_CERT_FILE` and completes a fetch
//! round trip over HTTPS; the same binary without it, and a plain-HTTP
//! client, are refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lambdaless_client::fetch::FetchClient;
use lambdaless_client::provision::Provisioner;
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, http_get, unique_id, Stack, ADMIN_PORT, EMULATOR_PORT};
use serde_json::{json, Value};
use testcontainers::{GenericImage, RunnableImage};

const KEY: &str = "tls-emulator";
const USER: &str = "tess";

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh directory with `ca.pem` and, signed by it, `cert.pem`/`key.pem`
/// for `hosts`; readable by the emulator's unprivileged user.
fn certificates(hosts: &[&str]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("lambdaless-tls-{}", unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=lambdaless-test-ca",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca, &dir);
    let mut csr = vec!["req", "-subj", "/CN=lambdaless-test-endpoint"];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "server.csr"]);
    openssl(&csr, &dir);
    let san = hosts
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{h}"),
            Err(_) => format!("DNS:{h}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
        &dir,
    );
    for f in ["key.pem", "cert.pem", "ca.pem"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_an_https_endpoint_they_trust_and_refuse_one_they_do_not() {
    let mut stack = Stack::start().await;
    let inside_name = format!("ll-{KEY}-{}", stack.id);
    let dir = certificates(&["localhost", "127.0.0.1", &inside_name]);
    let certs = dir.to_str().unwrap().to_owned();
    let ca_pem = std::fs::read(dir.join("ca.pem")).unwrap();

    // The project's moto image, serving HTTPS with the certificate.
    let args = [
        "-H",
        "0.0.0.0",
        "-p",
        "4566",
        "--ssl-cert",
        "/certs/cert.pem",
        "--ssl-key",
        "/certs/key.pem",
    ]
    .map(str::to_owned)
    .to_vec();
    let image = GenericImage::new("lambdaless/moto", "latest")
        .with_exposed_port(EMULATOR_PORT)
        .with_wait_for(testcontainers::core::WaitFor::Nothing);
    let tls = stack.start_container(
        KEY,
        RunnableImage::from((image, args)).with_volume((certs.as_str(), "/certs")),
    );
    let port = tls.host_port(EMULATOR_PORT).await;
    let https = format!("https://localhost:{port}");

    let trusted = lambdaless_testkit::aws_clients_trusting(&https, &ca_pem).await;
    eventually(
        Duration::from_secs(60),
        "the TLS emulator to answer",
        || {
            let c = trusted.clone();
            async move { c.sqs.list_queues().send().await.ok().map(|_| ()) }
        },
    )
    .await;

    // Plain HTTP to the TLS port is no substitute, and a client that trusts
    // only another CA (here: none but the system's) refuses the endpoint.
    let plain = lambdaless_testkit::aws_clients(&format!("http://127.0.0.1:{port}")).await;
    assert!(
        plain.sqs.list_queues().send().await.is_err(),
        "plain HTTP answered on the TLS port"
    );
    let other_ca = certificates(&["localhost"]);
    let stranger = lambdaless_testkit::aws_clients_trusting(
        &https,
        &std::fs::read(other_ca.join("ca.pem")).unwrap(),
    )
    .await;
    assert!(
        stranger.sqs.list_queues().send().await.is_err(),
        "a client trusting another CA accepted the endpoint"
    );
    std::fs::remove_dir_all(&other_ca).ok();

    // Provision the TLS emulator and put a document there.
    let tls_names = stack.names.clone();
    Provisioner::new(trusted.clone(), tls_names.clone())
        .provision(&[USER.to_owned()])
        .await
        .expect("provision over HTTPS");
    let doc = json!({"id": "over-tls", "secret": "sealed"});
    let Value::Object(map) = doc.clone() else {
        unreachable!()
    };
    trusted
        .dynamodb
        .put_item()
        .table_name(tls_names.name(names::DOCUMENTS))
        .set_item(Some(lambdaless_runtime::dynamo_json::to_item(&map)))
        .send()
        .await
        .expect("PutItem over HTTPS");

    // fetch-responder, the production binary, trusts the CA through
    // SSL_CERT_FILE, as a deployment with a private CA would.
    let endpoint_inside = format!("https://{inside_name}:{EMULATOR_PORT}");
    stack
        .start_service_with(
            "fetch-responder",
            &[
                ("AWS_ENDPOINT_URL", endpoint_inside.as_str()),
                ("SSL_CERT_FILE", "/certs/ca.pem"),
            ],
            &[(certs.as_str(), "/certs")],
        )
        .await;
    let data = FetchClient::new(trusted.sqs.clone(), tls_names.clone())
        .fetch("over-tls", USER, Duration::from_secs(30))
        .await
        .expect("a fetch round trip over HTTPS");
    assert_eq!(Value::Object(data), doc);

    // The same binary without the CA in its trust store refuses the
    // endpoint: it stays up and its /readyz names SQS and DynamoDB as down.
    let image = stack.service_image(
        "fetch-responder",
        &[("AWS_ENDPOINT_URL", endpoint_inside.as_str())],
    );
    let distrustful =
        stack.start_container("fetch-responder-untrusting", RunnableImage::from(image));
    let admin = distrustful.host_port(ADMIN_PORT).await;
    let (status, body) = eventually(
        Duration::from_secs(60),
        "readyz to report the refused endpoint",
        || async move {
            match http_get(admin, "/readyz").await {
                Ok((503, body)) if body.contains("sqs") => Some((503, body)),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("dynamodb"), "{body}");
    std::fs::remove_dir_all(&dir).ok();
}
