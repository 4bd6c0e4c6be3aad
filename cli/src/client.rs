//! Client of meshd's local API: one HTTP/1.1 request per connection over the
//! unix socket, with a deadline on the whole exchange. It decodes answers into
//! `mesh_api` types and says who is to blame when it cannot; it renders nothing.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use mesh_api_client::{Bytes, ExchangeError, Method, StatusCode};

/// Deadline on a whole request: connect, send, and read the full answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to meshd failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The socket could not be connected to (meshd down, wrong path, no rights).
    #[error("cannot reach meshd at {}: {}{}", socket.display(), io_reason(source), connect_hint(source))]
    Connect { socket: PathBuf, source: io::Error },
    /// meshd accepted the connection but did not answer in time.
    #[error("meshd at {} did not answer within {}s", socket.display(), timeout.as_secs_f32())]
    Timeout { socket: PathBuf, timeout: Duration },
    /// The HTTP exchange broke (meshd closed the connection, garbled answer).
    #[error("talking to meshd at {} failed: {reason}", socket.display())]
    Protocol { socket: PathBuf, reason: String },
    /// meshd answered with a non-2xx status; `message` is its `ApiError.error`.
    #[error("meshd answered {}: {message}", code.as_u16())]
    Api { code: StatusCode, message: String },
    /// A 2xx answer whose body is not what this meshctl expects.
    #[error(
        "meshd answered {path} with a body this meshctl cannot read: {source} (are meshd and meshctl the same version?)"
    )]
    Decode {
        path: String,
        source: serde_json::Error,
    },
}

/// The OS reason without Rust's ` (os error N)` suffix.
fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::PermissionDenied => " (the API socket is root-only: run as root)",
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            " (is meshd running? use --socket or MESH_API_SOCKET)"
        }
        _ => "",
    }
}

/// A client of one meshd API socket.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub(crate) fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// `GET /v1/status`, decoded.
    pub(crate) async fn status(&self) -> Result<mesh_api::Status, ClientError> {
        self.get_json(mesh_api::PATH_STATUS).await
    }

    /// `GET path`, the 2xx body decoded as `T`.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// `POST path` with `body` as JSON, the 2xx answer decoded as `T`.
    pub(crate) async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Protocol {
            socket: self.socket.clone(),
            reason: format!("cannot encode the request for {path}: {e}"),
        })?;
        let answer = self.request(Method::POST, path, Some(bytes)).await?;
        serde_json::from_slice(&answer).map_err(|source| ClientError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// `GET path`: the body of a 2xx answer, or the error of any other.
    pub(crate) async fn get(&self, path: &str) -> Result<Bytes, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// One request with an optional JSON body, under the deadline.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(ClientError::Timeout {
                socket: self.socket.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let (code, body) = mesh_api_client::exchange(&self.socket, method, path, body)
            .await
            .map_err(|e| match e {
                ExchangeError::Connect(source) => ClientError::Connect {
                    socket: self.socket.clone(),
                    source,
                },
                ExchangeError::Protocol(reason) => ClientError::Protocol {
                    socket: self.socket.clone(),
                    reason,
                },
            })?;
        if code.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Api {
                code,
                message: error_message(code, &body),
            })
        }
    }
}

/// The `ApiError.error` of a non-2xx body; failing that, the body's first line,
/// or the status' reason phrase when the body is empty.
fn error_message(code: StatusCode, body: &[u8]) -> String {
    if let Ok(err) = serde_json::from_slice::<mesh_api::ApiError>(body) {
        return err.error;
    }
    let text = String::from_utf8_lossy(body);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) => line.chars().take(200).collect(),
        None => code
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("meshctl-client-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Serves one connection on `socket`: reads the request head, answers
    /// `response` verbatim and hangs up. Returns the request head it read.
    fn serve_once(socket: &Path, response: String) -> tokio::task::JoinHandle<String> {
        let listener = UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "client hung up before finishing its request");
                head.extend_from_slice(&buf[..n]);
            }
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            String::from_utf8(head).unwrap()
        })
    }

    fn http_response(status_line: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn ok_answer_is_decoded_into_status() {
        let dir = TempDir::new("ok");
        let socket = dir.0.join("meshd.sock");
        let want = crate::render::tests::sample_status();
        let server = serve_once(
            &socket,
            http_response("200 OK", &serde_json::to_string(&want).unwrap()),
        );

        let got = Client::new(&socket, REQUEST_TIMEOUT)
            .status()
            .await
            .unwrap();
        assert_eq!(got, want);

        let head = server.await.unwrap();
        assert!(
            head.starts_with("GET /v1/status HTTP/1.1\r\n"),
            "request head: {head:?}"
        );
        assert!(head.to_ascii_lowercase().contains("host: meshd\r\n"));
    }

    #[tokio::test]
    async fn post_sends_json_and_decodes_the_answer() {
        let dir = TempDir::new("post");
        let socket = dir.0.join("meshd.sock");
        let server = serve_once(
            &socket,
            http_response(
                "200 OK",
                r#"{"records":[{"name":"web.mesh.local.","address":"10.32.1.50","owner":"Zm9vYmFy","served":true}]}"#,
            ),
        );
        let req = mesh_api::DnsAddRequest {
            name: "web".into(),
            address: "10.32.1.50".into(),
        };
        let got: mesh_api::DnsChanged = Client::new(&socket, REQUEST_TIMEOUT)
            .post_json(mesh_api::PATH_DNS_ADD, &req)
            .await
            .unwrap();
        assert_eq!(got.records[0].name, "web.mesh.local.");
        let head = server.await.unwrap();
        assert!(
            head.starts_with("POST /v1/dns/add HTTP/1.1\r\n"),
            "request head: {head:?}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json\r\n"),
            "{head:?}"
        );
    }

    #[tokio::test]
    async fn error_answer_carries_the_api_error() {
        let dir = TempDir::new("err");
        let socket = dir.0.join("meshd.sock");
        let server = serve_once(
            &socket,
            http_response(
                "500 Internal Server Error",
                r#"{"error":"peer table is locked"}"#,
            ),
        );

        let err = Client::new(&socket, REQUEST_TIMEOUT)
            .status()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Api { code, message }
                if *code == StatusCode::INTERNAL_SERVER_ERROR && message == "peer table is locked"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "meshd answered 500: peer table is locked");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn error_answer_without_api_error_body_uses_its_text() {
        let dir = TempDir::new("err-text");
        let socket = dir.0.join("meshd.sock");
        let server = serve_once(&socket, http_response("404 Not Found", "no such path\n"));
        let err = Client::new(&socket, REQUEST_TIMEOUT)
            .get("/v1/nope")
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "meshd answered 404: no such path");
        server.await.unwrap();

        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b""), "Bad Gateway");
    }

    #[tokio::test]
    async fn missing_socket_says_how_to_fix_it() {
        let dir = TempDir::new("missing");
        let socket = dir.0.join("meshd.sock");
        let err = Client::new(&socket, REQUEST_TIMEOUT)
            .status()
            .await
            .unwrap_err();
        assert!(matches!(&err, ClientError::Connect { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot reach meshd at {}: No such file or directory (is meshd running? use --socket or MESH_API_SOCKET)",
                socket.display()
            )
        );
    }

    #[test]
    fn permission_denied_says_run_as_root() {
        let err = ClientError::Connect {
            socket: PathBuf::from("/run/mesh/meshd.sock"),
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(
            err.to_string(),
            "cannot reach meshd at /run/mesh/meshd.sock: Permission denied (the API socket is root-only: run as root)"
        );
    }

    #[tokio::test]
    async fn mismatched_body_is_a_decode_error() {
        let dir = TempDir::new("decode");
        let socket = dir.0.join("meshd.sock");
        let server = serve_once(&socket, http_response("200 OK", r#"{"node":{}}"#));
        let err = Client::new(&socket, REQUEST_TIMEOUT)
            .status()
            .await
            .unwrap_err();
        assert!(matches!(&err, ClientError::Decode { .. }), "{err:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let dir = TempDir::new("silent");
        let socket = dir.0.join("meshd.sock");
        // Accepts (via the backlog) and never answers.
        let _listener = UnixListener::bind(&socket).unwrap();
        let err = Client::new(&socket, Duration::from_millis(50))
            .status()
            .await
            .unwrap_err();
        assert!(matches!(&err, ClientError::Timeout { .. }), "{err:?}");
    }
}
