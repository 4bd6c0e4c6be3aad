//! One HTTP/1.1 request to `meshd`'s local API over its unix socket: connect, send, read the
//! whole answer (bounded in size). `meshctl` and `mesh-cni` build on it; each adds its own
//! deadline, decoding and error wording. It knows no endpoint and decodes nothing; the types
//! are in `mesh-api`.
#![forbid(unsafe_code)]

use std::io;
use std::path::Path;

use http_body_util::{BodyExt, Full, Limited};
pub use hyper::body::Bytes;
pub use hyper::{Method, StatusCode};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Largest answer body accepted; a status of thousands of peers stays far below.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The socket could not be connected to (meshd down, wrong path, no rights).
    Connect(io::Error),
    /// The HTTP exchange broke (meshd closed the connection, garbled or oversized answer).
    Protocol(String),
}

/// Sends `method path` (with `body` as JSON when given) to the API socket at `socket` and
/// returns the status and the whole body, whatever the status. No deadline: callers wrap it
/// in their own `tokio::time::timeout`.
pub async fn exchange(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), ExchangeError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(ExchangeError::Connect)?;
    let protocol = |reason: String| ExchangeError::Protocol(reason);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    // The connection task ends once `sender` is dropped or meshd hangs up; its errors
    // surface through `send_request` below.
    let conn = tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "meshd")
        .header(header::ACCEPT, "application/json");
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| protocol(format!("bad request for {path}: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let code = response.status();
    let bytes = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| protocol(format!("reading the answer: {e}")))?
        .to_bytes();
    drop(sender);
    conn.abort();
    Ok((code, bytes))
}
