//! A keep-alive HTTP/1.1 connection for the benchmarks: the AWS SDK reuses
//! its connections, so the HTTP side must too, or every sample would pay a
//! TCP handshake the raw side does not. Responses must carry Content-Length
//! (api-gateway's JSON answers do).

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub(crate) struct Connection {
    authority: String,
    prefix: String,
    stream: BufReader<TcpStream>,
    headers: Vec<(String, String)>,
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Connection {
    /// Connects to `base` (`http://host:port`); `headers` go with every request.
    pub(crate) async fn open(base: &str, headers: &[(&str, &str)]) -> io::Result<Self> {
        let (authority, prefix) = lambdaless_client::stream::split_base(base)?;
        let stream = TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            authority,
            prefix: prefix.trim_end_matches('/').to_owned(),
            stream: BufReader::new(stream),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    }

    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> io::Result<Reply> {
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.prefix,
            self.authority,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.stream.get_mut().write_all(&out).await?;

        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(invalid("connection closed before a response"));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("not an HTTP response: {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(invalid("connection closed in the response head"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or_else(|| invalid("response without Content-Length"))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Reply { status, body })
    }
}
