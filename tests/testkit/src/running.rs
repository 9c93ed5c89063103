//! [`Running`]: one container of a test's stack, with what testcontainers
//! 0.15 lacks done through the docker CLI (stop, start again, state, logs).

use testcontainers::{Container, GenericImage};

use crate::docker_cli;

/// One running container of the stack.
pub struct Running {
    pub name: String,
    pub(crate) container: Container<'static, GenericImage>,
}

impl Running {
    pub fn id(&self) -> &str {
        self.container.id()
    }

    /// Host port (on 127.0.0.1) mapped to `port` inside the container.
    pub async fn host_port(&self, port: u16) -> u16 {
        self.container.get_host_port_ipv4(port)
    }

    /// Everything the container printed so far.
    pub fn logs(&self) -> String {
        let out = docker_cli(&["logs", self.container.id()]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `docker stop`: SIGTERM, then SIGKILL after `grace_secs`.
    pub fn stop(&self, grace_secs: u32) {
        let out = docker_cli(&["stop", "-t", &grace_secs.to_string(), self.container.id()]);
        assert!(
            out.status.success(),
            "docker stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Host port mapped to `port` as Docker reports it now (it may change
    /// when the container is restarted).
    pub fn current_host_port(&self, port: u16) -> Option<u16> {
        let out = docker_cli(&["port", self.container.id(), &format!("{port}/tcp")]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("0.0.0.0:") || l.starts_with("127.0.0.1:"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
    }

    /// `docker start` again after [`Running::stop`] or a kill.
    pub fn start_again(&self) {
        let out = docker_cli(&["start", self.container.id()]);
        assert!(
            out.status.success(),
            "docker start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The container's state: (running, exit code).
    pub fn state(&self) -> (bool, i64) {
        let out = docker_cli(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.ExitCode}}",
            self.container.id(),
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let running = parts.next() == Some("true");
        let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(-1);
        (running, code)
    }
}
