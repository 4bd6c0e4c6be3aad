//! `fake-apiserver --listen IP:PORT --control SOCKET`: the fake Kubernetes API server of
//! `mesh_integration::fake_apiserver`, for `meshd --kube` tests. Run it inside a test's
//! network namespace only; the control socket is a Unix socket in the test's directory.

use mesh_integration::fake_apiserver::Fake;
use std::net::SocketAddr;
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: fake-apiserver --listen IP:PORT --control SOCKET");
    std::process::exit(2)
}

fn main() {
    let mut listen: Option<SocketAddr> = None;
    let mut control: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--control" => control = args.next().map(PathBuf::from),
            _ => usage(),
        }
    }
    let (Some(listen), Some(control)) = (listen, control) else {
        usage()
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake-apiserver: {e}");
            std::process::exit(1)
        }
    };
    let res: Result<(), String> = rt.block_on(async move {
        let fake = Fake::new();
        let _ = std::fs::remove_file(&control);
        let ctl = tokio::net::UnixListener::bind(&control)
            .map_err(|e| format!("cannot bind {}: {e}", control.display()))?;
        let api = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot bind {listen}: {e}"))?;
        eprintln!(
            "fake-apiserver: API on http://{listen}, control on {}",
            control.display()
        );
        let (a, c) = (fake.api_router(), fake.control_router());
        tokio::select! {
            r = async move { axum::serve(api, a).await } => r.map_err(|e| e.to_string()),
            r = async move { axum::serve(ctl, c).await } => r.map_err(|e| e.to_string()),
        }
    });
    if let Err(e) = res {
        eprintln!("fake-apiserver: {e}");
        std::process::exit(1);
    }
}
