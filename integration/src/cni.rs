//! Running `mesh-cni` the way a container runtime does: `CNI_*` environment, the network
//! configuration on stdin, inside a host's namespace, against that host's `meshd`. Used by
//! the CNI tests and by `mesh-demo`, whose pods are made this way.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Host, Proc, Topology};

/// Bound of one plugin run.
pub const CNI_TIMEOUT: Duration = Duration::from_secs(60);

/// What one plugin run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The plugin exited 0.
    pub ok: bool,
    /// Its stdout as JSON (`Null` when empty).
    pub stdout: Value,
    /// Its stderr, or why it could not be run.
    pub stderr: String,
}

impl Run {
    /// The CNI error code of a failed run, if its output has one.
    pub fn error_code(&self) -> Option<u64> {
        self.stdout["code"].as_u64()
    }

    /// The output of a successful run, or a one-line description of the failure.
    pub fn into_result(self, what: &str) -> Result<Value, String> {
        if self.ok {
            Ok(self.stdout)
        } else {
            Err(format!(
                "{what} failed: {} (stderr: {})",
                self.stdout,
                self.stderr.trim()
            ))
        }
    }
}

/// One CNI invocation on a host.
#[derive(Debug, Clone)]
pub struct Cni<'a> {
    host: &'a Host,
    command: &'a str,
    container_id: &'a str,
    netns: Option<String>,
    ifname: &'a str,
    args: String,
    /// Variables left out on purpose.
    without: Vec<&'a str>,
}

impl<'a> Cni<'a> {
    /// `command` (ADD, DEL, …) for `container_id` whose namespace is `netns` (a name under
    /// /var/run/netns), interface `eth0`, pod `default/web` in `CNI_ARGS`.
    pub fn new(
        host: &'a Host,
        command: &'a str,
        container_id: &'a str,
        netns: Option<&str>,
    ) -> Self {
        Self {
            host,
            command,
            container_id,
            netns: netns.map(|n| format!("/var/run/netns/{n}")),
            ifname: "eth0",
            args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web".to_owned(),
            without: Vec::new(),
        }
    }

    /// Another `CNI_IFNAME`.
    pub fn ifname(mut self, ifname: &'a str) -> Self {
        self.ifname = ifname;
        self
    }

    /// Another pod name in `CNI_ARGS` (namespace `default`).
    pub fn pod_name(mut self, name: &str) -> Self {
        self.args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}");
        self
    }

    /// Leaves environment variable `var` out.
    pub fn without(mut self, var: &'a str) -> Self {
        self.without.push(var);
        self
    }

    /// Runs `plugin` (a path) with `stdin`, inside the host's namespace.
    pub fn run_plugin(&self, plugin: &Path, stdin: &[u8]) -> Run {
        let mut vars = vec![
            ("CNI_COMMAND", self.command.to_owned()),
            ("CNI_CONTAINERID", self.container_id.to_owned()),
            ("CNI_IFNAME", self.ifname.to_owned()),
            (
                "CNI_PATH",
                plugin
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            ("CNI_ARGS", self.args.clone()),
        ];
        if let Some(n) = &self.netns {
            vars.push(("CNI_NETNS", n.clone()));
        }
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.host.netns])
            .arg(plugin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CNI_") {
                command.env_remove(&k);
            }
        }
        for (k, v) in vars {
            if !self.without.contains(&k) {
                command.env(k, v);
            }
        }
        let failed = |why: String| Run {
            ok: false,
            stdout: Value::Null,
            stderr: why,
        };
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => return failed(format!("cannot start {}: {e}", plugin.display())),
        };
        let fed = child
            .stdin
            .take()
            .map(|mut s| s.write_all(stdin))
            .transpose();
        let out = match Proc::spawn_adopted("mesh-cni", child).wait_output(CNI_TIMEOUT) {
            Ok(out) => out,
            Err(e) => return failed(format!("{} did not finish: {e}", plugin.display())),
        };
        if let Err(e) = fed {
            return failed(format!("cannot feed {}: {e}", plugin.display()));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => return failed(format!("stdout {text:?} is not JSON: {e}; {stderr}")),
            }
        };
        Run {
            ok: out.status.success(),
            stdout,
            stderr,
        }
    }

    /// Runs the topology's `mesh-cni` with `conf`.
    pub fn run(&self, topo: &Topology, conf: &Value) -> Run {
        self.run_plugin(
            &topo.bin_dir().join("mesh-cni"),
            conf.to_string().as_bytes(),
        )
    }
}

/// The network configuration (CNI 1.1.0) for `host`'s meshd.
pub fn network_conf(host: &Host) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "mesh",
        "type": "mesh-cni",
        "socket": host.api_socket(),
    })
}
