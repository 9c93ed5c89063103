//! A real browser for tests: Debian's `chromium` driven through
//! `chromedriver` with a minimal W3C WebDriver client (JSON over HTTP/1.1 on
//! loopback, nothing beyond tokio and serde_json).
//!
//! The browser is headless and cannot leave the machine: every request to a
//! host other than loopback goes to a dead proxy (`127.0.0.1:9`) and host
//! names other than `localhost` do not resolve, so a page that reaches for a
//! CDN fails to load it, and the test sees that in the page's resource list.
//! `chromedriver` runs in its own process group, which [`Browser`] kills on
//! drop (the browser with it).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The key W3C WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where Debian puts them (`scripts/install-deps.sh` installs both).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One headless Chromium session.
pub struct Browser {
    port: u16,
    session: String,
    driver: Child,
}

/// A WebDriver error or an unexpected answer.
pub type WdResult<T> = Result<T, String>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether `raw` holds a whole response (by `Content-Length`, or the last chunk).
fn complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return raw.ends_with(b"0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    length.is_some_and(|len| raw.len() >= split + 4 + len)
}

/// Splits an HTTP/1.1 response into (status, body), undoing chunked framing.
fn parse_response(raw: &[u8]) -> WdResult<(u16, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the response head")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head}"))?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("bad chunk")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .map_err(|e| e.to_string())?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Ok((status, body))
}

fn request_bytes(port: u16, method: &str, path: &str, body: Option<&Value>) -> Vec<u8> {
    let body = body.map(Value::to_string).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One WebDriver command; returns its `value`.
async fn command(port: u16, method: &str, path: &str, body: Option<Value>) -> WdResult<Value> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("chromedriver on {port}: {e}"))?;
    stream
        .write_all(&request_bytes(port, method, path, body.as_ref()))
        .await
        .map_err(|e| e.to_string())?;
    // chromedriver answers `Connection: close` but leaves the socket open:
    // read until the framing says the body is complete.
    let mut raw = Vec::new();
    let read = async {
        let mut buf = [0u8; 64 * 1024];
        while !complete(&raw) {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .map_err(|_| format!("{method} {path}: no answer in 120 s"))?
        .map_err(|e| e.to_string())?;
    let (status, body) = parse_response(&raw)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{method} {path}: {status}, not JSON ({e})"))?;
    if status != 200 {
        return Err(format!("{method} {path}: {status} {}", value["value"]));
    }
    Ok(value["value"].clone())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Fails with a
    /// message naming `scripts/install-deps.sh` when either is missing.
    pub async fn start(width: u32, height: u32) -> WdResult<Self> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !std::path::Path::new(bin).exists() {
                return Err(format!(
                    "{bin} not found: run scripts/install-deps.sh (it installs Debian's chromium and chromium-driver)"
                ));
            }
        }
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd
            .spawn()
            .map_err(|e| format!("cannot start {CHROMEDRIVER}: {e}"))?;
        let mut browser = Self {
            port,
            session: String::new(),
            driver,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while command(port, "GET", "/status", None).await.is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not answer within 20 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            // Nothing but loopback: other hosts go to a dead proxy and do not resolve.
            "--proxy-server=http://127.0.0.1:9".to_owned(),
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
                .to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-default-apps".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let session = command(port, "POST", "/session", Some(caps)).await?;
        browser.session = session["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {session}"))?
            .to_owned();
        Ok(browser)
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> WdResult<Value> {
        let path = format!("/session/{}{path}", self.session);
        command(self.port, method, &path, body).await
    }

    pub async fn goto(&self, url: &str) -> WdResult<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    /// The element matching a CSS selector.
    pub async fn find(&self, css: &str) -> WdResult<String> {
        let found = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{css}: no element in {found}"))
    }

    pub async fn click(&self, css: &str) -> WdResult<()> {
        let el = self.find(css).await?;
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})))
            .await
            .map(|_| ())
    }

    /// Clears a field and types `text` into it, as a person would.
    pub async fn type_into(&self, css: &str, text: &str) -> WdResult<()> {
        let el = self.find(css).await?;
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})))
            .await?;
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn exec(&self, script: &str, args: Value) -> WdResult<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// `textContent` of the element with this id ("" when absent).
    pub async fn text_of(&self, id: &str) -> WdResult<String> {
        let v = self
            .exec(
                "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
                json!([id]),
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> WdResult<Vec<u8>> {
        let v = self.cmd("GET", "/screenshot", None).await?;
        decode_base64(v.as_str().ok_or("screenshot is not a string")?)
    }

    /// Ends the session (the browser exits) and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.cmd("DELETE", "", None).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Best effort, blocking: a failed test still closes its browser.
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let path = format!("/session/{}", self.session);
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = s.write_all(&request_bytes(self.port, "DELETE", &path, None));
                let (mut raw, mut buf) = (Vec::new(), [0u8; 4096]);
                while !complete(&raw) {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
            }
        }
        // chromedriver leads its own process group: end it and anything left in it.
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.driver.id()))
            .status();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (WebDriver screenshots).
pub fn decode_base64(text: &str) -> WdResult<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("not base64: {:?}", c as char)),
        };
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_chunked_answers_decode() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("iVBORw0KGgo=").unwrap()[..4], *b"\x89PNG");
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert!(complete(raw));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length:5\r\n\r\n{}"));
        let (status, body) = parse_response(raw).unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"{\"a\":1}"[..]));
    }
}
