//! Plain requests to a `meshd`'s local API (HTTP/1.1 on its unix socket), without `meshctl`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Bound of one request.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET PATH` on the API socket `socket`; the body of a 200 answer, else an error with the
/// status line and body.
pub fn api_get(socket: &Path, path: &str) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("GET {path} on {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(fail)?;
    stream.set_read_timeout(Some(API_TIMEOUT)).map_err(fail)?;
    stream.set_write_timeout(Some(API_TIMEOUT)).map_err(fail)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: meshd\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP answer: {text:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body)
    } else {
        Err(format!("GET {path} answered {status}: {body}"))
    }
}

/// `GET /v1/ipam`, parsed.
pub fn ipam(socket: &Path) -> Result<mesh_api::IpamStatus, String> {
    let body = api_get(socket, mesh_api::PATH_IPAM)?;
    serde_json::from_str(&body).map_err(|e| format!("GET {}: {e}: {body}", mesh_api::PATH_IPAM))
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| format!("bad chunked body: {body:?}"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| format!("short chunk: {rest:?}"))?;
        out.push_str(chunk);
        body = rest.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}
