//! The local API: HTTP/1.1 + JSON on a unix socket (mode 0600), for `meshctl` and
//! `mesh-cni`. Types and paths live in `mesh-api`.

use crate::ipam::IpamError;
use crate::run::Shared;
use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
        .route(mesh_api::PATH_READY, get(ready))
        .route(mesh_api::PATH_IPAM, get(ipam_status))
        .route(mesh_api::PATH_IPAM_ALLOCATE, post(ipam_allocate))
        .route(mesh_api::PATH_IPAM_RELEASE, post(ipam_release))
        .route(mesh_api::PATH_IPAM_GC, post(ipam_gc))
        .fallback(not_found)
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "API server stopped");
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<mesh_api::Status> {
    Json(shared.status())
}

/// The API is served only once the bridge, the TUN device and the address pool are set up,
/// so answering at all means ready.
async fn ready() -> Json<mesh_api::Ready> {
    Json(mesh_api::Ready { ready: true })
}

async fn ipam_status(State(shared): State<Arc<Shared>>) -> Json<mesh_api::IpamStatus> {
    Json(shared.ipam.status())
}

async fn ipam_allocate(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<mesh_api::IpamAllocateRequest>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) => answer(shared.ipam.allocate(req)),
        Err(e) => bad_body(&e),
    }
}

async fn ipam_release(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<mesh_api::IpamReleaseRequest>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) => answer(shared.ipam.release(req)),
        Err(e) => bad_body(&e),
    }
}

async fn ipam_gc(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<mesh_api::IpamGcRequest>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) => answer(shared.ipam.gc(req)),
        Err(e) => bad_body(&e),
    }
}

/// 200 with the value, or the error with the status that says who is to blame: 400 for a
/// bad request, 507 when the address space is exhausted, 503 without any block, 500 when
/// the state directory cannot be written.
fn answer<T: serde::Serialize>(result: Result<T, IpamError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => {
            let code = match &e {
                IpamError::BadRequest(_) => StatusCode::BAD_REQUEST,
                IpamError::Allocate(mesh_ipam::AllocateError::Exhausted { .. }) => {
                    StatusCode::INSUFFICIENT_STORAGE
                }
                IpamError::Allocate(_) => StatusCode::SERVICE_UNAVAILABLE,
                IpamError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if code.is_server_error() {
                tracing::warn!(error = %e, "IPAM request refused");
            }
            error(code, e.to_string())
        }
    }
}

fn bad_body(e: &JsonRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("bad request body: {}", e.body_text()),
    )
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(mesh_api::ApiError { error: message })).into_response()
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
