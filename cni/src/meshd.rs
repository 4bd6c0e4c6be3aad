//! The plugin's client of meshd's local API: one HTTP/1.1 request per connection over the
//! unix socket, bounded by a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_api_client::{Bytes, ExchangeError, Method, StatusCode};

/// Deadline on one request: connect, send, read the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MeshdError {
    /// No connection, no answer in time, or a broken exchange.
    #[error("cannot reach meshd at {}: {reason}", socket.display())]
    Unreachable { socket: PathBuf, reason: String },
    /// meshd answered non-2xx; `message` is its `ApiError.error`.
    #[error("meshd answered {}: {message}", code.as_u16())]
    Api { code: StatusCode, message: String },
    /// A 2xx answer this plugin cannot read.
    #[error(
        "meshd's answer to {path} cannot be read: {reason} (are meshd and mesh-cni the same version?)"
    )]
    Decode { path: String, reason: String },
}

/// A client of one socket.
#[derive(Debug, Clone)]
pub(crate) struct Meshd {
    socket: PathBuf,
}

impl Meshd {
    pub(crate) fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    pub(crate) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, MeshdError> {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, MeshdError> {
        let bytes = serde_json::to_vec(body).map_err(|e| MeshdError::Decode {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.call(Method::POST, path, Some(bytes)).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, MeshdError> {
        let unreachable = |reason: String| MeshdError::Unreachable {
            socket: self.socket.clone(),
            reason,
        };
        let exchange = self.exchange(method, path, body);
        let (code, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(unreachable)?;
        if !code.is_success() {
            let message = serde_json::from_slice::<mesh_api::ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
            return Err(MeshdError::Api { code, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| MeshdError::Decode {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), String> {
        mesh_api_client::exchange(&self.socket, method, path, body)
            .await
            .map_err(|e| match e {
                ExchangeError::Connect(e) => {
                    let hint = match e.kind() {
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                            " (is meshd running on this node? is \"socket\" in the CNI config right?)"
                        }
                        std::io::ErrorKind::PermissionDenied => " (the API socket is root-only)",
                        _ => "",
                    };
                    format!("{e}{hint}")
                }
                ExchangeError::Protocol(reason) => reason,
            })
    }
}
