//! What the runtime hands the plugin: the network configuration on stdin and the `CNI_*`
//! environment. Parsed once, into types; every refusal carries the spec's error code.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Code};

/// Default search domain handed to pods (the DNS zone of meshd).
pub(crate) const DEFAULT_DOMAIN: &str = "mesh.local";
/// The interface name that is the primary one unless `"primary"` says otherwise.
pub(crate) const PRIMARY_IFNAME: &str = "eth0";

/// The CNI versions this plugin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CniVersion {
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// Every supported version, oldest first, as VERSION reports them.
pub(crate) const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

impl CniVersion {
    pub(crate) fn parse(s: &str) -> Result<Self, CniError> {
        match s {
            "0.4.0" => Ok(Self::V0_4_0),
            "1.0.0" => Ok(Self::V1_0_0),
            "1.1.0" => Ok(Self::V1_1_0),
            other => Err(CniError::new(
                Code::IncompatibleVersion,
                format!("cniVersion {other:?} is not supported"),
                format!("mesh-cni speaks cniVersion {}", SUPPORTED.join(", ")),
            )),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }
}

/// The CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Result<Self, CniError> {
        match s {
            "ADD" => Ok(Self::Add),
            "DEL" => Ok(Self::Del),
            "CHECK" => Ok(Self::Check),
            "STATUS" => Ok(Self::Status),
            "GC" => Ok(Self::Gc),
            "VERSION" => Ok(Self::Version),
            other => Err(CniError::new(
                Code::InvalidEnv,
                format!("CNI_COMMAND {other:?} is not a CNI command"),
                "expected one of ADD, DEL, CHECK, STATUS, GC, VERSION",
            )),
        }
    }

    /// The oldest version that has this command.
    fn since(self) -> CniVersion {
        match self {
            Self::Status | Self::Gc => CniVersion::V1_1_0,
            _ => CniVersion::V0_4_0,
        }
    }
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub(crate) container_id: String,
    pub(crate) ifname: String,
}

/// The network configuration (one conflist entry, as the runtime passes it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetConf {
    pub(crate) cni_version: CniVersion,
    /// The network name (scopes GC in meshd).
    pub(crate) name: String,
    /// meshd's API socket.
    pub(crate) socket: PathBuf,
    /// Hairpin mode on the pod's bridge port.
    pub(crate) hairpin: bool,
    /// `Some(_)` when the config says whether this interface is the pod's primary one.
    pub(crate) primary: Option<bool>,
    /// DNS search domain handed to the pod.
    pub(crate) domain: String,
    /// The previous plugin's result, passed through and extended.
    pub(crate) prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub(crate) valid_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Deserialize)]
struct RawConf {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    socket: Option<PathBuf>,
    hairpin: Option<bool>,
    primary: Option<bool>,
    domain: Option<String>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
    ipam: Option<Value>,
}

/// The `cniVersion` of `stdin`, if it is JSON with one (for the version of an error answer).
pub(crate) fn peek_version(stdin: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "cniVersion")]
        cni_version: Option<String>,
    }
    serde_json::from_slice::<Peek>(stdin).ok()?.cni_version
}

impl NetConf {
    /// Parses stdin for `command`.
    pub(crate) fn parse(stdin: &[u8], command: Command) -> Result<Self, CniError> {
        let raw: RawConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                Code::Decoding,
                "cannot decode the network configuration",
                e.to_string(),
            )
        })?;
        let version = raw.cni_version.ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                "the network configuration has no cniVersion",
                "add \"cniVersion\": \"1.1.0\"",
            )
        })?;
        let cni_version = CniVersion::parse(&version)?;
        if cni_version < command.since() {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "{command:?} needs cniVersion {} or later",
                    command.since().as_str()
                ),
                format!("the configuration says {version}"),
            ));
        }
        let name = raw.name.unwrap_or_default();
        if !valid_network_name(&name) {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("network name {name:?} is invalid"),
                "\"name\" must start with a letter or digit and contain only letters, digits, \
                 '_', '.' and '-'",
            ));
        }
        if raw.kind.as_deref().is_none_or(str::is_empty) {
            return Err(CniError::new(
                Code::InvalidConfig,
                "the network configuration has no type",
                "add \"type\": \"mesh-cni\"",
            ));
        }
        if raw.ipam.is_some() {
            return Err(CniError::new(
                Code::UnsupportedField,
                "mesh-cni does not take an \"ipam\" section",
                "addresses come from meshd's pool: remove \"ipam\"",
            ));
        }
        let socket = raw
            .socket
            .unwrap_or_else(|| PathBuf::from(mesh_api::DEFAULT_SOCKET));
        if !socket.is_absolute() {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("\"socket\" {} is not an absolute path", socket.display()),
                "name meshd's API socket by its full path, e.g. /run/mesh/meshd.sock",
            ));
        }
        let domain = raw.domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_owned());
        let domain = domain.trim_end_matches('.').to_owned();
        if domain.is_empty() {
            return Err(CniError::new(
                Code::InvalidConfig,
                "\"domain\" is empty",
                format!("leave it out for {DEFAULT_DOMAIN}"),
            ));
        }
        if let Some(prev) = &raw.prev_result
            && !prev.is_object()
        {
            return Err(CniError::new(
                Code::InvalidConfig,
                "\"prevResult\" is not an object",
                prev.to_string(),
            ));
        }
        Ok(Self {
            cni_version,
            name,
            socket,
            hairpin: raw.hairpin.unwrap_or(false),
            primary: raw.primary,
            domain,
            prev_result: raw.prev_result,
            valid_attachments: raw.valid_attachments,
        })
    }

    /// Whether `ifname` gets the default route (`"primary"`, else: it is `eth0`).
    pub(crate) fn is_primary(&self, ifname: &str) -> bool {
        self.primary.unwrap_or(ifname == PRIMARY_IFNAME)
    }
}

fn valid_network_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The `CNI_*` environment, checked for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Env {
    pub(crate) command: Command,
    /// `CNI_CONTAINERID` and `CNI_IFNAME`, checked together.
    pub(crate) key: Option<mesh_ipam::AttachmentKey>,
    /// `CNI_NETNS`; `None` when empty (allowed for DEL).
    pub(crate) netns: Option<PathBuf>,
    pub(crate) args: CniArgs,
}

/// What this plugin uses of `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CniArgs {
    pub(crate) pod_name: Option<String>,
    pub(crate) pod_namespace: Option<String>,
}

/// `CNI_ARGS` keys this plugin knows (it reads the first two; the others are what kubelet
/// and podman pass along).
const KNOWN_ARGS: [&str; 5] = [
    "K8S_POD_NAME",
    "K8S_POD_NAMESPACE",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
    "IgnoreUnknown",
];

/// Only `CNI_COMMAND`, for reading the command before stdin.
pub(crate) fn command(vars: &BTreeMap<String, String>) -> Result<Command, CniError> {
    let cmd = vars.get("CNI_COMMAND").map(String::as_str).unwrap_or("");
    if cmd.is_empty() {
        return Err(missing("CNI_COMMAND"));
    }
    Command::parse(cmd)
}

fn missing(var: &str) -> CniError {
    CniError::new(
        Code::InvalidEnv,
        format!("{var} is not set"),
        "mesh-cni is a CNI plugin: a container runtime runs it with the CNI_* environment \
         (see docs/cni.md)",
    )
}

impl Env {
    /// Reads and checks the variables `command` needs.
    pub(crate) fn parse(vars: &BTreeMap<String, String>) -> Result<Self, CniError> {
        let command = command(vars)?;
        let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let key = if needs_attachment {
            let id = get("CNI_CONTAINERID").ok_or_else(|| missing("CNI_CONTAINERID"))?;
            let ifname = get("CNI_IFNAME").ok_or_else(|| missing("CNI_IFNAME"))?;
            if get("CNI_PATH").is_none() {
                return Err(missing("CNI_PATH"));
            }
            Some(mesh_ipam::AttachmentKey::new(id, ifname).map_err(|e| {
                CniError::new(Code::InvalidEnv, "invalid CNI environment", e.to_string())
            })?)
        } else {
            None
        };
        let netns = get("CNI_NETNS").map(PathBuf::from);
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(missing("CNI_NETNS"));
        }
        let args = parse_args(get("CNI_ARGS").unwrap_or(""))?;
        Ok(Self {
            command,
            key,
            netns,
            args,
        })
    }
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`. Unknown keys are refused unless
/// `IgnoreUnknown` is `1` or `true`, as the spec's conventions say.
pub(crate) fn parse_args(text: &str) -> Result<CniArgs, CniError> {
    let mut pairs = Vec::new();
    for part in text.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            CniError::new(
                Code::InvalidEnv,
                format!("CNI_ARGS entry {part:?} is not KEY=VALUE"),
                "CNI_ARGS is a ;-separated list of KEY=VALUE pairs",
            )
        })?;
        pairs.push((k, v));
    }
    let ignore_unknown = pairs.iter().any(|(k, v)| {
        *k == "IgnoreUnknown" && matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
    });
    let mut args = CniArgs::default();
    for (k, v) in pairs {
        match k {
            "K8S_POD_NAME" => args.pod_name = Some(v.to_owned()).filter(|v| !v.is_empty()),
            "K8S_POD_NAMESPACE" => {
                args.pod_namespace = Some(v.to_owned()).filter(|v| !v.is_empty());
            }
            k if KNOWN_ARGS.contains(&k) || ignore_unknown => {}
            k => {
                return Err(CniError::new(
                    Code::UnsupportedField,
                    format!("CNI_ARGS key {k:?} is not supported"),
                    "add IgnoreUnknown=1 to CNI_ARGS to pass keys mesh-cni does not use",
                ));
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const ADD_ENV: [(&str, &str); 6] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;FOO=bar",
        ),
    ];

    #[test]
    fn add_env_is_parsed() {
        let env = Env::parse(&vars(&ADD_ENV)).unwrap();
        assert_eq!(env.command, Command::Add);
        let key = env.key.unwrap();
        assert_eq!((key.container_id(), key.ifname()), ("abc123", "eth0"));
        assert_eq!(env.netns, Some(PathBuf::from("/var/run/netns/x")));
        assert_eq!(env.args.pod_name.as_deref(), Some("web-0"));
        assert_eq!(env.args.pod_namespace.as_deref(), Some("default"));
    }

    #[test]
    fn missing_or_bad_env_is_code_4() {
        for drop in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_IFNAME",
            "CNI_NETNS",
            "CNI_PATH",
        ] {
            let v: Vec<_> = ADD_ENV
                .iter()
                .copied()
                .filter(|(k, _)| *k != drop)
                .collect();
            let err = Env::parse(&vars(&v)).unwrap_err();
            assert_eq!(err.code, Code::InvalidEnv, "{drop}");
            assert!(err.msg.contains(drop), "{err}");
        }
        let mut v = ADD_ENV.to_vec();
        v[0] = ("CNI_COMMAND", "FROB");
        assert_eq!(Env::parse(&vars(&v)).unwrap_err().code, Code::InvalidEnv);
        let mut v = ADD_ENV.to_vec();
        v[3] = ("CNI_IFNAME", "way-too-long-ifname");
        assert_eq!(Env::parse(&vars(&v)).unwrap_err().code, Code::InvalidEnv);
    }

    #[test]
    fn del_needs_no_netns_and_status_needs_nothing_else() {
        let v: Vec<_> = ADD_ENV
            .iter()
            .map(|&(k, v)| {
                if k == "CNI_COMMAND" {
                    (k, "DEL")
                } else {
                    (k, v)
                }
            })
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        let env = Env::parse(&vars(&v)).unwrap();
        assert_eq!(env.netns, None);
        let env = Env::parse(&vars(&[("CNI_COMMAND", "STATUS")])).unwrap();
        assert_eq!((env.command, env.key), (Command::Status, None));
    }

    #[test]
    fn cni_args_unknown_keys_need_ignore_unknown() {
        assert_eq!(parse_args("").unwrap(), CniArgs::default());
        assert_eq!(
            parse_args("FOO=1").unwrap_err().code,
            Code::UnsupportedField
        );
        assert!(parse_args("FOO=1;IgnoreUnknown=true").is_ok());
        assert_eq!(parse_args("garbage").unwrap_err().code, Code::InvalidEnv);
        assert_eq!(
            parse_args("K8S_POD_NAME=a;K8S_POD_UID=u")
                .unwrap()
                .pod_name
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn config_defaults_and_keys() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"mesh","type":"mesh-cni"}"#,
            Command::Add,
        )
        .unwrap();
        assert_eq!(c.cni_version, CniVersion::V1_1_0);
        assert_eq!(c.socket, PathBuf::from("/run/mesh/meshd.sock"));
        assert!(!c.hairpin);
        assert_eq!(c.domain, "mesh.local");
        assert!(c.is_primary("eth0"));
        assert!(!c.is_primary("net1"));
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"m","type":"mesh-cni","socket":"/tmp/s.sock",
                "hairpin":true,"primary":false,"domain":"cluster.example.","prevResult":{"ips":[]},
                "runtimeConfig":{"portMappings":[]},"capabilities":{"portMappings":true}}"#,
            Command::Add,
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/s.sock"));
        assert!(c.hairpin);
        assert!(!c.is_primary("eth0"));
        assert_eq!(c.domain, "cluster.example");
        assert!(c.prev_result.is_some());
    }

    #[test]
    fn config_errors_have_their_codes() {
        let cases: [(&[u8], Code); 9] = [
            (b"{not json", Code::Decoding),
            (br#"{"cniVersion":"1.1.0","name":"m","type":"mesh-cni","hairpin":"yes"}"#, Code::Decoding),
            (br#"{"cniVersion":"0.3.1","name":"m","type":"mesh-cni"}"#, Code::IncompatibleVersion),
            (br#"{"cniVersion":"9.9.9","name":"m","type":"mesh-cni"}"#, Code::IncompatibleVersion),
            (br#"{"name":"m","type":"mesh-cni"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.1.0","type":"mesh-cni"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.1.0","name":"m"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.1.0","name":"m","type":"mesh-cni","socket":"rel.sock"}"#, Code::InvalidConfig),
            (br#"{"cniVersion":"1.1.0","name":"m","type":"mesh-cni","ipam":{"type":"host-local"}}"#, Code::UnsupportedField),
        ];
        for (text, code) in cases {
            let err = NetConf::parse(text, Command::Add).unwrap_err();
            assert_eq!(err.code, code, "{}: {err}", String::from_utf8_lossy(text));
        }
        // STATUS and GC arrived with 1.1.0.
        let err = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"m","type":"mesh-cni"}"#,
            Command::Gc,
        )
        .unwrap_err();
        assert_eq!(err.code, Code::IncompatibleVersion);
    }

    #[test]
    fn valid_attachments_are_read() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"m","type":"mesh-cni",
                "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
            Command::Gc,
        )
        .unwrap();
        assert_eq!(
            c.valid_attachments,
            Some(vec![ValidAttachment {
                container_id: "a".into(),
                ifname: "eth0".into()
            }])
        );
    }

    #[test]
    fn version_is_peeked_even_from_bad_configs() {
        assert_eq!(
            peek_version(br#"{"cniVersion":"0.4.0","name":3}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(peek_version(b"{"), None);
    }
}
