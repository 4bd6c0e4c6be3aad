//! The local API: HTTP/1.1 + JSON on a unix socket (mode 0600), for `meshctl` and
//! `mesh-cni`. Types and paths live in `mesh-api`.

use crate::run::Shared;
use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// Binds the API socket. A stale socket file (nobody listening) is replaced; a live one
/// means another meshd runs with the same socket, which is an error.
pub(crate) fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "API socket path {} exists and is not a socket: remove it or pick --api-socket",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "API socket {} is in use: another meshd is running (stop it or pick --api-socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale API socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod API socket {}", path.display()))?;
    Ok(listener)
}

/// Serves the API until the task is aborted.
pub(crate) async fn serve(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    let app = axum::Router::new()
        .route(mesh_api::PATH_STATUS, get(status))
        .fallback(not_found)
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "API server stopped");
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<mesh_api::Status> {
    Json(shared.status())
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(mesh_api::ApiError {
            error: "no such endpoint".into(),
        }),
    )
        .into_response()
}
