//! `mesh-cni`: the CNI plugin of mesh (CNI spec 1.1.0; also answers 0.4.0 and 1.0.0).
//!
//! A container runtime runs it with `CNI_COMMAND` and the other `CNI_*` variables and the
//! network configuration on stdin. ADD gets the pod an address from the node's `meshd`
//! (over its API socket), creates a veth pair from the pod's network namespace to meshd's
//! bridge with the address, MTU and route, and prints the result. DEL removes the pair and
//! frees the address; CHECK, STATUS, GC and VERSION are as the spec says. Errors are the
//! spec's error object on stdout with a non-zero exit. See docs/cni.md.
//!
//! Files: [`config`] (configuration and environment parsing), [`error`] (the spec's error
//! codes), [`result`] (results per version, and chaining), [`meshd`] (the client of meshd's
//! API), [`commands`] (ADD, DEL, CHECK, GC, STATUS).
//!
//! It does not choose addresses (meshd does), run a DNS server (meshd does, at the bridge
//! address it hands out as nameserver), or touch iptables (chain `portmap` for that).
#![forbid(unsafe_code)]

mod commands;
mod config;
mod error;
mod meshd;
mod result;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use config::{Command, Env, NetConf};
use error::{CniError, Code};

fn main() -> ExitCode {
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = config::peek_version(&stdin).unwrap_or_else(|| "1.1.0".to_owned());
    let outcome = match read {
        Ok(_) => run(&vars, &stdin),
        Err(e) => Err(CniError::new(
            Code::Decoding,
            "cannot read the network configuration from stdin",
            e.to_string(),
        )),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(json)) => {
            let _ = writeln!(out, "{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            eprintln!("mesh-cni: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    vars: &BTreeMap<String, String>,
    stdin: &[u8],
) -> Result<Option<serde_json::Value>, CniError> {
    if config::command(vars)? == Command::Version {
        return Ok(Some(version_info(stdin)));
    }
    let conf = NetConf::parse(stdin, config::command(vars)?)?;
    let env = Env::parse(vars)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CniError::new(
                Code::InterfaceSetup,
                "cannot start the async runtime",
                e.to_string(),
            )
        })?;
    runtime.block_on(async {
        match env.command {
            Command::Add => commands::add(&conf, &env).await.map(Some),
            Command::Del => commands::del(&conf, &env).await.map(|()| None),
            Command::Check => commands::check(&conf, &env).await.map(|()| None),
            Command::Gc => commands::gc(&conf).await.map(|()| None),
            Command::Status => commands::status(&conf).await.map(|()| None),
            Command::Version => Ok(Some(version_info(stdin))),
        }
    })
}

/// VERSION's answer, in the version the runtime asked with (if it is one we speak).
fn version_info(stdin: &[u8]) -> serde_json::Value {
    let asked = config::peek_version(stdin)
        .filter(|v| config::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_owned());
    serde_json::json!({
        "cniVersion": asked,
        "supportedVersions": config::SUPPORTED,
    })
}
