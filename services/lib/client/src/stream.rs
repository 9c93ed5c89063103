//! A small streaming HTTP/1.1 client for the `streamer`'s NDJSON responses:
//! it yields the body line by line as it arrives (chunked or not), so the CLI,
//! the benchmarks and the tests see each page when the server flushes it.
//! Plain `http://` only: the streamer sits behind TLS termination in production.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An open response whose body is read incrementally.
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    framing: Framing,
    pending: Vec<u8>,
    done: bool,
}

enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Splits `http://host:port[/base]` into (`host:port`, base path).
pub fn split_base(base: &str) -> io::Result<(String, String)> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| invalid(format!("{base:?}: only http:// URLs are supported")))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((
        authority,
        format!("/{}", path.trim_end_matches('/')).replace("//", "/"),
    ))
}

/// Sends `method path` with extra `headers` to `base` (`http://host:port`)
/// and reads the response head.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let (authority, prefix) = split_base(base)?;
    let mut stream = TcpStream::connect(&authority).await?;
    stream.set_nodelay(true)?;
    let full = format!("{}{}", prefix.trim_end_matches('/'), path);
    let mut head =
        format!("{method} {full} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("not an HTTP response: {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(invalid("connection closed in the response head"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let framing = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        Framing::Chunked
    } else if let Some(len) = header("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(len)
    } else {
        Framing::UntilClose
    };
    Ok(Response {
        status,
        headers,
        reader,
        framing,
        pending: Vec::new(),
        done: false,
    })
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of the body as it arrives; `None` at its end.
    async fn next_bytes(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        match &mut self.framing {
            Framing::Chunked => {
                let mut line = String::new();
                self.reader.read_line(&mut line).await?;
                let size_text = line.trim().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    self.done = true;
                    return Ok(None);
                }
                let mut data = vec![0; size];
                self.reader.read_exact(&mut data).await?;
                let mut crlf = [0; 2];
                self.reader.read_exact(&mut crlf).await?;
                Ok(Some(data))
            }
            Framing::Length(left) => {
                if *left == 0 {
                    self.done = true;
                    return Ok(None);
                }
                let mut data = vec![0; (*left).min(64 * 1024) as usize];
                let n = self.reader.read(&mut data).await?;
                if n == 0 {
                    return Err(invalid("connection closed before the body ended"));
                }
                *left -= n as u64;
                data.truncate(n);
                Ok(Some(data))
            }
            Framing::UntilClose => {
                let mut data = vec![0; 64 * 1024];
                let n = self.reader.read(&mut data).await?;
                if n == 0 {
                    self.done = true;
                    return Ok(None);
                }
                data.truncate(n);
                Ok(Some(data))
            }
        }
    }

    /// The next line of the body (without its newline); `None` at the end.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let rest = self.pending.split_off(pos + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| invalid("body is not UTF-8"));
            }
            match self.next_bytes().await? {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None if self.pending.is_empty() => return Ok(None),
                None => {
                    let line = std::mem::take(&mut self.pending);
                    return String::from_utf8(line)
                        .map(Some)
                        .map_err(|_| invalid("body is not UTF-8"));
                }
            }
        }
    }

    /// The whole remaining body.
    pub async fn text(mut self) -> io::Result<String> {
        let mut all = std::mem::take(&mut self.pending);
        while let Some(bytes) = self.next_bytes().await? {
            all.extend_from_slice(&bytes);
        }
        String::from_utf8(all).map_err(|_| invalid("body is not UTF-8"))
    }
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_split_into_authority_and_path() {
        assert_eq!(
            split_base("http://127.0.0.1:8081").unwrap(),
            ("127.0.0.1:8081".into(), "/".into())
        );
        assert_eq!(
            split_base("http://h/api/").unwrap(),
            ("h:80".into(), "/api".into())
        );
        assert!(split_base("https://h").is_err());
    }
}
