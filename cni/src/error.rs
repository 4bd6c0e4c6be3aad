//! The CNI error result: a code from the spec (1–11, 50, 51) or one of ours (>= 100), a
//! one-line message and details. `main` prints it on stdout and exits non-zero.

use serde::Serialize;

/// Error codes. 1–11 and 50–51 are the spec's; 100 and above are mesh-cni's own (documented
/// in docs/cni.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// 1: the `cniVersion` is not one this plugin speaks.
    IncompatibleVersion = 1,
    /// 2: a field this plugin does not support (e.g. an `ipam` section).
    UnsupportedField = 2,
    /// 4: a required environment variable is missing or invalid.
    InvalidEnv = 4,
    /// 6: the network configuration is not valid JSON or has a field of the wrong type.
    Decoding = 6,
    /// 7: the network configuration is well-formed but invalid.
    InvalidConfig = 7,
    /// 11: a transient condition; the runtime should try again later.
    TryAgainLater = 11,
    /// 50: the plugin is not available (meshd not ready), for STATUS.
    PluginNotAvailable = 50,
    /// 100: meshd's API socket cannot be reached.
    MeshdUnreachable = 100,
    /// 101: the node has no free pod address.
    AddressesExhausted = 101,
    /// 102: the network namespace `CNI_NETNS` does not exist.
    NetnsNotFound = 102,
    /// 103: meshd answered with an error this plugin did not expect.
    MeshdError = 103,
    /// 104: creating or deleting the pod's interfaces failed.
    InterfaceSetup = 104,
    /// 105: CHECK found the attachment differs from what ADD made.
    CheckFailed = 105,
}

/// A CNI error, as printed on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CniError {
    pub(crate) code: Code,
    pub(crate) msg: String,
    pub(crate) details: String,
}

impl CniError {
    pub(crate) fn new(code: Code, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The spec's error object for `cni_version`.
    pub(crate) fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Wire {
            cni_version,
            code: self.code as u32,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_default()
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.code as u32, self.msg, self.details)
    }
}
