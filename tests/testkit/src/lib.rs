//! Harness of the cross-service integration suite.
//!
//! Every test gets its own [`Stack`]: a private Docker network, the AWS
//! emulator, and whichever of the broker and our service images it asks for,
//! all started from locally built images through testcontainers and removed
//! when the stack is dropped. Names carry a random id and every queue and
//! table a unique prefix, so tests run in parallel without seeing each other.
//!
//! Images are built beforehand by `scripts/images.sh` (the README's test
//! command does it), tagged `LAMBDALESS_IMAGE_TAG` (default `latest`). `LAMBDALESS_TEST_EMULATOR_IMAGE` picks the emulator
//! (default `lambdaless/moto:latest`; `localstack/localstack:4.14.0` works too).

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lambdaless_contracts::Names;
use lambdaless_runtime::aws::AwsClients;
use testcontainers::clients::Cli;
use testcontainers::core::WaitFor;
use testcontainers::{GenericImage, RunnableImage};

mod clients;
pub mod emulator;
pub mod fault_proxy;
mod running;
pub mod webdriver;

pub use clients::{aws_clients, aws_clients_trusting, http_get, paho_script};
pub use emulator::{Depth, Received};
pub use running::Running;

/// The MQTT users every test stack defines, one per broker role, as in
/// Compose: `local` is a `device` (the default role), `service` is what our
/// services connect as, `observer` reads answers and notifications.
pub const MQTT_USER: &str = "local";
pub const MQTT_PASSWORD: &str = "local";
pub const MQTT_SERVICE_USER: &str = "service";
pub const MQTT_SERVICE_PASSWORD: &str = "local-service";
pub const MQTT_OBSERVER_USER: &str = "observer";
pub const MQTT_OBSERVER_PASSWORD: &str = "local-observer";
/// The API key every test stack defines.
pub const API_KEY: &str = "local-dev-key";

/// Port inside the containers of each kind.
pub const EMULATOR_PORT: u16 = 4566;
pub const MQTT_PORT: u16 = 1883;
pub const WS_PORT: u16 = 8083;
pub const ADMIN_PORT: u16 = 9090;

/// The services of SPEC §1 that run as long-lived containers.
pub const SERVICES: [&str; 5] = [
    "api-gateway",
    "mover",
    "mqtt-api",
    "fetch-responder",
    "streamer",
];

/// testcontainers' CLI client: it drives the `docker` command, which speaks
/// whatever API version the local engine offers.
fn docker() -> &'static Cli {
    static CLIENT: OnceLock<Cli> = OnceLock::new();
    CLIENT.get_or_init(Cli::default)
}

pub fn emulator_image() -> (String, String) {
    let image = std::env::var("LAMBDALESS_TEST_EMULATOR_IMAGE")
        .unwrap_or_else(|_| "lambdaless/moto:latest".to_owned());
    split_image(&image)
}

fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (image.to_owned(), "latest".to_owned()),
    }
}

/// A short random id for container and network names.
pub fn unique_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the docker CLI (for what testcontainers 0.15 lacks: kill, pause, logs).
pub fn docker_cli(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs")
}

/// A private set of containers for one test.
pub struct Stack {
    pub id: String,
    pub network: String,
    /// Prefix of every queue and table of this stack.
    pub prefix: String,
    pub names: Names,
    /// Clients pointed at the emulator's host port.
    pub aws: AwsClients,
    pub emulator_endpoint: String,
    emulator: Option<Running>,
    broker: Option<Running>,
    services: HashMap<String, Running>,
}

impl Stack {
    /// Starts the network and the emulator, and waits until it answers.
    pub async fn start() -> Self {
        let id = unique_id();
        let network = format!("lambdaless-test-{id}");
        let prefix = format!("t{id}-");
        let (name, tag) = emulator_image();
        let emulator_name = format!("ll-emulator-{id}");
        let image = GenericImage::new(name, tag)
            .with_exposed_port(EMULATOR_PORT)
            .with_env_var("SERVICES", "sqs,dynamodb")
            .with_wait_for(WaitFor::Nothing);
        let container = docker().run(
            RunnableImage::from(image)
                .with_network(network.clone())
                .with_container_name(emulator_name.clone()),
        );
        let emulator = Running {
            name: emulator_name,
            container,
        };
        let port = emulator.host_port(EMULATOR_PORT).await;
        let emulator_endpoint = format!("http://127.0.0.1:{port}");
        let aws = aws_clients(&emulator_endpoint).await;
        let probe = aws.clone();
        eventually(Duration::from_secs(60), "the emulator to answer", || {
            let probe = probe.clone();
            async move { probe.sqs.list_queues().send().await.ok().map(|_| ()) }
        })
        .await;
        Self {
            names: Names::new(prefix.clone()).expect("test prefix is valid"),
            id,
            network,
            prefix,
            aws,
            emulator_endpoint,
            emulator: Some(emulator),
            broker: None,
            services: HashMap::new(),
        }
    }

    /// Creates this stack's queues and tables (in process, through the CLI library).
    pub async fn provision(&self) -> lambdaless_client::provision::Report {
        let provisioner =
            lambdaless_client::provision::Provisioner::new(self.aws.clone(), self.names.clone());
        provisioner
            .provision(&[])
            .await
            .expect("provision succeeds")
    }

    /// The host's address on this stack's network (the network's gateway):
    /// where containers reach a server the test runs itself.
    pub fn host_ip_inside(&self) -> std::net::IpAddr {
        let out = docker_cli(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            &self.network,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|ip| ip.parse().ok())
            .unwrap_or_else(|| panic!("no gateway address for network {}: {text}", self.network))
    }

    /// The emulator's address as seen from inside the network.
    pub fn emulator_url_inside(&self) -> String {
        format!("http://{}:{EMULATOR_PORT}", self.emulator().name)
    }

    pub fn emulator(&self) -> &Running {
        self.emulator
            .as_ref()
            .expect("the emulator runs until drop")
    }

    /// Starts our broker with the test users and waits until it is ready.
    pub async fn start_broker(&mut self) -> &Running {
        let name = format!("ll-broker-{}", self.id);
        let image = our_image("broker")
            .with_env_var("LAMBDALESS_USERS__LOCAL", MQTT_PASSWORD)
            .with_env_var("LAMBDALESS_USERS__SERVICE__PASSWORD", MQTT_SERVICE_PASSWORD)
            .with_env_var("LAMBDALESS_USERS__SERVICE__ROLE", "service")
            .with_env_var(
                "LAMBDALESS_USERS__OBSERVER__PASSWORD",
                MQTT_OBSERVER_PASSWORD,
            )
            .with_env_var("LAMBDALESS_USERS__OBSERVER__ROLE", "observer")
            .with_exposed_port(MQTT_PORT)
            .with_exposed_port(WS_PORT)
            .with_exposed_port(ADMIN_PORT);
        let running = self.run(&name, image).await;
        wait_ready(&running, ADMIN_PORT).await;
        self.broker.insert(running)
    }

    pub fn broker(&self) -> &Running {
        self.broker.as_ref().expect("start_broker() first")
    }

    /// Host address of the broker's MQTT port.
    pub async fn broker_mqtt_port(&self) -> u16 {
        self.broker().host_port(MQTT_PORT).await
    }

    /// The environment every service of this stack gets.
    pub fn service_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_owned(), self.emulator_url_inside()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
            ("LAMBDALESS_PREFIX".to_owned(), self.prefix.clone()),
            ("LAMBDALESS_LOG__FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        if let Some(broker) = &self.broker {
            env.extend([
                ("LAMBDALESS_MQTT__HOST".to_owned(), broker.name.clone()),
                (
                    "LAMBDALESS_MQTT__USERNAME".to_owned(),
                    MQTT_SERVICE_USER.to_owned(),
                ),
                (
                    "LAMBDALESS_MQTT__PASSWORD".to_owned(),
                    MQTT_SERVICE_PASSWORD.to_owned(),
                ),
            ]);
        }
        env
    }

    /// Starts one of our services with the stack's environment plus `extra`,
    /// without waiting for it.
    pub async fn start_service_unchecked(
        &mut self,
        service: &str,
        extra: &[(&str, &str)],
    ) -> &Running {
        let name = format!("ll-{service}-{}", self.id);
        self.start_named(service, service, &name, extra).await
    }

    /// Starts replica `n` of a service (a second container of the same image,
    /// named `ll-{service}-{n}-{id}`), waits until it is ready, and keeps it
    /// under the key `{service}#{n}` (see [`Stack::service`]).
    pub async fn start_replica(
        &mut self,
        service: &str,
        n: usize,
        extra: &[(&str, &str)],
    ) -> &Running {
        let key = format!("{service}#{n}");
        let name = format!("ll-{service}-{n}-{}", self.id);
        self.start_named(&key, service, &name, extra).await;
        let running = &self.services[&key];
        wait_ready(running, service_port(service)).await;
        running
    }

    async fn start_named(
        &mut self,
        key: &str,
        service: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> &Running {
        let image = self.service_image(service, extra);
        let running = self.run(name, image).await;
        self.services.insert(key.to_owned(), running);
        &self.services[key]
    }

    /// The image of one of our services with this stack's environment plus `extra`.
    pub fn service_image(&self, service: &str, extra: &[(&str, &str)]) -> GenericImage {
        let mut image = our_image(service).with_exposed_port(service_port(service));
        let uses_mqtt = matches!(service, "mover" | "mqtt-api");
        for (k, v) in self.service_env() {
            if k.starts_with("LAMBDALESS_MQTT__") && !uses_mqtt {
                continue;
            }
            image = image.with_env_var(k, v);
        }
        if matches!(service, "api-gateway" | "streamer") {
            image = image.with_env_var("LAMBDALESS_AUTH__API_KEYS", format!("{API_KEY}=*@local"));
        }
        for (k, v) in extra {
            image = image.with_env_var(*k, *v);
        }
        image
    }

    /// Starts one of our services and waits until its `/readyz` answers 200.
    pub async fn start_service(&mut self, service: &str) -> &Running {
        self.start_service_unchecked(service, &[]).await;
        let running = &self.services[service];
        wait_ready(running, service_port(service)).await;
        running
    }

    pub fn service(&self, service: &str) -> &Running {
        &self.services[service]
    }

    /// Runs a one-shot container of one of our images with `args` and the
    /// stack's environment; returns (exit code, output).
    pub async fn run_once(
        &self,
        image: &str,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> (i64, String) {
        let name = format!("ll-{image}-once-{}-{}", self.id, unique_id());
        let mut cmd: Vec<String> = vec![
            "run".into(),
            "--name".into(),
            name.clone(),
            "--network".into(),
            self.network.clone(),
        ];
        for (k, v) in self.service_env().into_iter().chain(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        ) {
            if k.starts_with("LAMBDALESS_MQTT__") {
                continue;
            }
            cmd.push("-e".into());
            cmd.push(format!("{k}={v}"));
        }
        cmd.push(format!("lambdaless/{image}:{}", image_tag()));
        cmd.extend(args.iter().map(|a| a.to_string()));
        let out = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
            docker_cli(&refs)
        })
        .await
        .expect("docker run joins");
        let _ = docker_cli(&["rm", "-f", &name]);
        let code = out.status.code().map(i64::from).unwrap_or(-1);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (code, text)
    }

    async fn run(&self, name: &str, image: GenericImage) -> Running {
        self.run_runnable(name, RunnableImage::from(image))
    }

    fn run_runnable(&self, name: &str, image: RunnableImage<GenericImage>) -> Running {
        let container = docker().run(
            image
                .with_network(self.network.clone())
                .with_container_name(name.to_owned()),
        );
        Running {
            name: name.to_owned(),
            container,
        }
    }

    /// Starts any container on this stack's network, named `ll-{key}-{id}`
    /// and removed with the stack; `image` carries its arguments, volumes and
    /// environment. Reach it as `stack.service(key)`.
    pub fn start_container(&mut self, key: &str, image: RunnableImage<GenericImage>) -> &Running {
        let name = format!("ll-{key}-{}", self.id);
        let running = self.run_runnable(&name, image);
        self.services.insert(key.to_owned(), running);
        &self.services[key]
    }

    /// Starts one of our services like [`Stack::start_service`] (and waits
    /// until it is ready), with `extra` environment and host `volumes`
    /// (`(host path, container path)`) mounted.
    pub async fn start_service_with(
        &mut self,
        service: &str,
        extra: &[(&str, &str)],
        volumes: &[(&str, &str)],
    ) -> &Running {
        let name = format!("ll-{service}-{}", self.id);
        let mut image = RunnableImage::from(self.service_image(service, extra));
        for (host, inside) in volumes {
            image = image.with_volume((*host, *inside));
        }
        let running = self.run_runnable(&name, image);
        wait_ready(&running, service_port(service)).await;
        self.services.insert(service.to_owned(), running);
        &self.services[service]
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Containers first (testcontainers removes each on drop), then the
        // network, which the shared client would otherwise keep until exit.
        self.services.clear();
        self.broker = None;
        self.emulator = None;
        let _ = docker_cli(&["network", "rm", &self.network]);
    }
}

/// The port serving `/readyz` for each of our services.
pub fn service_port(service: &str) -> u16 {
    match service {
        "api-gateway" => 8080,
        "streamer" => 8081,
        _ => ADMIN_PORT,
    }
}

/// Tag of our images: `LAMBDALESS_IMAGE_TAG` (as for scripts/images.sh), or `latest`.
pub fn image_tag() -> String {
    std::env::var("LAMBDALESS_IMAGE_TAG").unwrap_or_else(|_| "latest".to_owned())
}

fn our_image(bin: &str) -> GenericImage {
    GenericImage::new(format!("lambdaless/{bin}"), image_tag()).with_wait_for(WaitFor::Nothing)
}

/// Waits until the container's `/readyz` answers 200; on timeout fails with its logs.
pub async fn wait_ready(running: &Running, port: u16) {
    let host_port = running.host_port(port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = match http_get(host_port, "/readyz").await {
            Ok((200, _)) => return,
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            panic!(
                "{} not ready after 60 s (last answer: {last})\n--- logs ---\n{}",
                running.name,
                running.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
