//! A small fault-injecting TCP proxy for the fault tests: it sits between a
//! service container and the emulator, adds latency to every request chunk,
//! and can cut connections at the worst moment — after the emulator has
//! answered (so the call's effect happened) but before the answer reaches
//! the service, which must then retry without duplicating anything.
//!
//! It listens on the test network's gateway address (the host as seen from
//! the containers), never on every interface.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Knobs {
    latency_ms: AtomicU64,
    /// Cut every n-th answer chunk (0: never).
    cut_every: AtomicU64,
    answers: AtomicU64,
    cut: AtomicU64,
    connections: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    knobs: Arc<Knobs>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on `bind_ip` (port picked by the system) and forwards to `upstream`.
    pub async fn start(bind_ip: std::net::IpAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((bind_ip, 0))
            .await
            .expect("fault proxy binds");
        let addr = listener.local_addr().expect("bound address");
        let knobs = Arc::new(Knobs::default());
        let shared = knobs.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let knobs = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, knobs).await;
                    }
                });
            }
        });
        Self { addr, knobs, task }
    }

    /// Delay added before each chunk the service sends.
    pub fn set_latency(&self, latency: Duration) {
        self.knobs
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Cut the connection instead of delivering every n-th answer chunk (0: never).
    pub fn cut_every(&self, n: u64) {
        self.knobs.cut_every.store(n, Ordering::Relaxed);
    }

    /// Answers cut so far.
    pub fn cut(&self) -> u64 {
        self.knobs.cut.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.knobs.connections.load(Ordering::Relaxed)
    }
}

async fn relay(client: TcpStream, server: TcpStream, knobs: Arc<Knobs>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up_knobs = knobs.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_rx.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let delay = up_knobs.latency_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            server_tx.write_all(&buf[..n]).await?;
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = server_rx.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let every = knobs.cut_every.load(Ordering::Relaxed);
            let count = knobs.answers.fetch_add(1, Ordering::Relaxed) + 1;
            if every > 0 && count.is_multiple_of(every) {
                knobs.cut.fetch_add(1, Ordering::Relaxed);
                // Dropping both halves closes the service's side: the answer is lost.
                return Ok(());
            }
            client_tx.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
