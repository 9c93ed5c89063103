//! `bench broker`: our broker against Mosquitto (Debian's package) on this
//! machine, with the same clients. The benchmark starts both brokers itself
//! as processes on free loopback ports, each with one login (`local`), so
//! neither pays for Docker's port forwarding, and measures on each in turn:
//!
//! - request/response round trip: a requester publishes QoS 1 on
//!   `bench/req`, a responder answers on `bench/resp`, sequentially;
//! - throughput: one publisher sends QoS 1 messages as fast as its window
//!   allows, one subscriber counts them; messages per second end to end;
//! - the same with paho-mqtt (Python), a client the project did not write,
//!   at QoS 0 and QoS 1 (`paho/paho_bench.py`, run from the venv that
//!   `scripts/install-deps.sh` makes): paho leaves Nagle's algorithm on, as
//!   most device SDKs do, which our own rumqttc clients never show.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use super::quantile;
use super::report::{Measure, Row, Section};
use lambdaless_client::device::{MqttArgs, Session};

pub(crate) struct Options {
    /// Our `broker` binary (default: next to this executable).
    pub(crate) broker_bin: Option<PathBuf>,
    pub(crate) mosquitto_bin: String,
    pub(crate) round_trips: usize,
    pub(crate) messages: usize,
    /// Also measure an already running broker on this loopback port (user
    /// `local`/`local`), e.g. the Compose stack's.
    pub(crate) also_port: Option<u16>,
    /// The Python with paho-mqtt (default: [`lambdaless_client::paho::python`]); the paho
    /// rows are left out, with a note, when it is missing.
    pub(crate) paho_python: Option<PathBuf>,
}

/// The paho measurement script, written to a temporary file at run time.
const PAHO_SCRIPT: &str = include_str!("../paho/paho_bench.py");

/// A broker process that is killed when dropped.
struct Running {
    name: &'static str,
    child: Child,
    port: u16,
    /// MQTT over WebSocket, where the broker has it.
    ws_port: Option<u16>,
    _dir: Option<TempDir>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ours(bin: &Path) -> anyhow::Result<Running> {
    let (port, ws) = (free_port()?, free_port()?);
    let child = Command::new(bin)
        .env_clear()
        .env("LAMBDALESS_MQTT_LISTEN", format!("127.0.0.1:{port}"))
        .env("LAMBDALESS_WS_LISTEN", format!("127.0.0.1:{ws}"))
        .env("LAMBDALESS_ADMIN_PORT", "0")
        // A `service` user: the benchmark's topics are outside what a
        // device may use.
        .env("LAMBDALESS_USERS__LOCAL__PASSWORD", "local")
        .env("LAMBDALESS_USERS__LOCAL__ROLE", "service")
        .env("LAMBDALESS_LOG__FILTER", "warn,rumqttd=off")
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Running {
        name: "lambdaless broker",
        child,
        port,
        ws_port: Some(ws),
        _dir: None,
    })
}

fn mosquitto(bin: &str) -> anyhow::Result<Running> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("lambdaless-mosquitto-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let dir = TempDir(dir);
    let passwd = dir.0.join("passwd");
    let passwd_bin = Path::new(bin)
        .parent()
        .map(|p| p.join("mosquitto_passwd"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto_passwd"));
    let status = Command::new(&passwd_bin)
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["local", "local"])
        .stdout(Stdio::null())
        .status()
        .with_context(|| {
            format!(
                "running {} (apt-get install mosquitto)",
                passwd_bin.display()
            )
        })?;
    anyhow::ensure!(status.success(), "mosquitto_passwd failed");
    let conf = dir.0.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\n\
             log_dest none\nset_tcp_nodelay true\nmax_inflight_messages 100\nmax_queued_messages 100000\n",
            passwd.display()
        ),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin} (apt-get install mosquitto)"))?;
    Ok(Running {
        name: "Mosquitto",
        child,
        port,
        ws_port: None,
        _dir: Some(dir),
    })
}

fn args(port: u16) -> MqttArgs {
    MqttArgs {
        host: "127.0.0.1".to_owned(),
        port,
        user: "local".to_owned(),
        password: "local".to_owned(),
    }
}

/// Connects, retrying while the broker starts.
async fn session(args: &MqttArgs, topics: &[&str]) -> anyhow::Result<Session> {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match Session::connect(args, &topics).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Where a measured broker listens.
struct Target {
    name: String,
    port: u16,
}

impl Running {
    fn target(&self) -> Target {
        Target {
            name: self.name.to_owned(),
            port: self.port,
        }
    }
}

struct Figures {
    round_trips: Vec<Duration>,
    per_second: f64,
}

/// Sequential request → response round trips through the broker at `args`:
/// a responder in this process echoes `bench/req` to `bench/resp`.
pub(crate) async fn echo_round_trips(args: &MqttArgs, n: usize) -> anyhow::Result<Vec<Duration>> {
    let broker = format!("{}:{}", args.host, args.port);
    let mut responder = session(args, &["bench/req"]).await?;
    let echo = tokio::spawn(async move {
        while let Some(p) = responder.next(Duration::from_secs(3600)).await {
            let body: serde_json::Value =
                serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
            if responder.publish("bench/resp", &body).await.is_err() {
                break;
            }
        }
    });
    let mut requester = session(args, &["bench/resp"]).await?;
    let mut round_trips = Vec::with_capacity(n);
    let warm_up = 20;
    for seq in 0..n + warm_up {
        let t = Instant::now();
        requester
            .publish("bench/req", &json!({ "seq": seq }))
            .await?;
        loop {
            let Some(p) = requester.next(Duration::from_secs(10)).await else {
                echo.abort();
                bail!("{broker}: no response to request {seq} within 10 s");
            };
            let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
            if v["seq"] == seq {
                break;
            }
        }
        if seq >= warm_up {
            round_trips.push(t.elapsed());
        }
    }
    echo.abort();
    Ok(round_trips)
}

async fn measure(broker: &Target, opts: &Options) -> anyhow::Result<Figures> {
    let round_trips = echo_round_trips(&args(broker.port), opts.round_trips).await?;

    // Throughput: publisher → subscriber, QoS 1 both ways.
    let mut subscriber = session(&args(broker.port), &["bench/flood"]).await?;
    let publisher = session(&args(broker.port), &[]).await?;
    let total = opts.messages;
    let started = Instant::now();
    let publishing = tokio::spawn(async move {
        for seq in 0..total {
            publisher
                .publish(
                    "bench/flood",
                    &json!({ "seq": seq, "pad": "0123456789abcdef0123456789abcdef" }),
                )
                .await?;
        }
        anyhow::Ok(publisher)
    });
    let mut received = 0;
    while received < total {
        if subscriber.next(Duration::from_secs(30)).await.is_none() {
            bail!(
                "{}: only {received} of {total} messages arrived (30 s without one)",
                broker.name
            );
        }
        received += 1;
    }
    let elapsed = started.elapsed();
    let _publisher = publishing.await??;
    Ok(Figures {
        round_trips,
        per_second: total as f64 / elapsed.as_secs_f64(),
    })
}

/// What one paho run measured.
struct PahoFigures {
    round_trips: Vec<Duration>,
    per_second: f64,
}

/// Runs the paho script against `port` at `qos`.
fn paho(
    python: &Path,
    script: &Path,
    port: u16,
    qos: u8,
    transport: &str,
    opts: &Options,
) -> anyhow::Result<PahoFigures> {
    let out = Command::new(python)
        .arg(script)
        .args([
            "--port",
            &port.to_string(),
            "--user",
            "local",
            "--password",
            "local",
        ])
        .args(["--qos", &qos.to_string(), "--transport", transport])
        .args(["--round-trips", &opts.round_trips.to_string()])
        .args(["--messages", &opts.messages.to_string()])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "paho script failed on port {port}, QoS {qos}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("paho script output")?;
    let round_trips = v["round_trips_ms"]
        .as_array()
        .context("no round_trips_ms")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .map(|ms| Duration::from_secs_f64(ms / 1e3))
        .collect();
    Ok(PahoFigures {
        round_trips,
        per_second: v["per_second"].as_f64().unwrap_or_default(),
    })
}

/// Runs both brokers in turn and returns the comparison.
pub(crate) async fn run(opts: Options) -> anyhow::Result<Section> {
    let bin = match &opts.broker_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory for this executable")?
            .join("broker"),
    };
    anyhow::ensure!(
        bin.exists(),
        "our broker binary is not at {} (build it, or pass --broker-bin)",
        bin.display()
    );
    let python = opts
        .paho_python
        .clone()
        .unwrap_or_else(lambdaless_client::paho::python);
    let script = std::env::temp_dir().join(format!("lambdaless-paho-{}.py", std::process::id()));
    let script = if python.exists() {
        std::fs::write(&script, PAHO_SCRIPT)?;
        Some(TempFile(script))
    } else {
        None
    };
    // [QoS 0, QoS 1] with paho, when it is installed.
    let with_paho = |port: u16| -> anyhow::Result<Option<[PahoFigures; 2]>> {
        let Some(script) = &script else {
            return Ok(None);
        };
        Ok(Some([
            paho(&python, &script.0, port, 0, "tcp", &opts)?,
            paho(&python, &script.0, port, 1, "tcp", &opts)?,
        ]))
    };
    let (theirs, theirs_paho) = {
        let m = mosquitto(&opts.mosquitto_bin)?;
        let f = measure(&m.target(), &opts).await?;
        let p = with_paho(m.port)?;
        drop(m);
        (f, p)
    };
    let (mine, mine_paho, mine_ws) = {
        let b = ours(&bin)?;
        let f = measure(&b.target(), &opts).await?;
        let p = with_paho(b.port)?;
        // Debian's Mosquitto has no WebSocket listener: ours alone.
        let ws = match (&script, b.ws_port) {
            (Some(script), Some(ws)) => Some(paho(&python, &script.0, ws, 1, "websockets", &opts)?),
            _ => None,
        };
        drop(b);
        (f, p, ws)
    };
    let also = match opts.also_port {
        Some(port) => Some(
            measure(
                &Target {
                    name: format!("127.0.0.1:{port}"),
                    port,
                },
                &opts,
            )
            .await?,
        ),
        None => None,
    };
    let p = |f: &Figures| Measure::Latency {
        p50: quantile(&f.round_trips, 0.5),
        p99: quantile(&f.round_trips, 0.99),
    };
    let mut rows = vec![
        Row::new(
            format!(
                "request → response round trip, QoS 1 ({} sequential)",
                opts.round_trips
            ),
            p(&mine),
            Some(p(&theirs)),
            "p50 ≤ 1.0× (at least as fast)",
        ),
        Row::new(
            format!("publisher → subscriber, QoS 1 ({} messages)", opts.messages),
            Measure::Rate(mine.per_second),
            Some(Measure::Rate(theirs.per_second)),
            "≥ 1.0×",
        ),
    ];
    let mut notes = Vec::new();
    match (mine_paho, theirs_paho) {
        (Some(mine), Some(theirs)) => {
            for (qos, (m, t)) in mine.iter().zip(theirs.iter()).enumerate() {
                let latency = |f: &PahoFigures| Measure::Latency {
                    p50: quantile(&f.round_trips, 0.5),
                    p99: quantile(&f.round_trips, 0.99),
                };
                rows.push(Row::new(
                    format!("paho-mqtt, QoS {qos}: publish → own subscription round trip ({} sequential)", opts.round_trips),
                    latency(m),
                    Some(latency(t)),
                    if qos == 1 { "p50 ≤ 1.5×" } else { "p50 ≤ 1.5× (no goal set)" },
                ));
                rows.push(Row::new(
                    format!("paho-mqtt, QoS {qos}: publisher → subscriber ({} messages)", opts.messages),
                    Measure::Rate(m.per_second),
                    Some(Measure::Rate(t.per_second)),
                    "≥ 1.0×",
                ));
            }
        }
        _ => notes.push(format!(
            "paho-mqtt rows left out: no Python with paho-mqtt at {} (scripts/install-deps.sh makes it; \
             or pass --paho-python).",
            python.display()
        )),
    }
    if let Some(ws) = mine_ws {
        rows.push(Row::new(
            format!(
                "paho-mqtt over WebSocket, QoS 1: round trip ({} sequential)",
                opts.round_trips
            ),
            Measure::Latency {
                p50: quantile(&ws.round_trips, 0.5),
                p99: quantile(&ws.round_trips, 0.99),
            },
            None,
            "no stall (no baseline: Debian's Mosquitto has no WebSocket listener)",
        ));
        rows.push(Row::new(
            format!(
                "paho-mqtt over WebSocket, QoS 1: publisher → subscriber ({} messages)",
                opts.messages
            ),
            Measure::Rate(ws.per_second),
            None,
            "no baseline",
        ));
    }
    Ok(Section {
        key: "broker",
        title: "Broker vs Mosquitto".to_owned(),
        command: format!(
            "lambdaless bench broker --round-trips {} --messages {}",
            opts.round_trips, opts.messages
        ),
        baseline: "Mosquitto (Debian package), same clients, same machine".to_owned(),
        rows,
        notes: also
            .map(|f| {
                format!(
                    "The broker at 127.0.0.1:{}: round trip p50 {:.2} / p99 {:.2} ms, {:.0} messages/s.",
                    opts.also_port.unwrap_or_default(),
                    quantile(&f.round_trips, 0.5).as_secs_f64() * 1e3,
                    quantile(&f.round_trips, 0.99).as_secs_f64() * 1e3,
                    f.per_second
                )
            })
            .into_iter()
            .chain(notes)
            .chain([
            "Both brokers run as host processes on loopback, with one login, no persistence; \
             our broker's front end (login, ACL) hands packets to rumqttd's router thread in process,              without a second socket."
                .to_owned(),
            ])
            .collect(),
    })
}
