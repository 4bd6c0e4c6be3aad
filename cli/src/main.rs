//! `meshctl`: shows and steers a running `meshd` over its local API (HTTP/1.1 +
//! JSON on a unix socket). Tables for people, `-o json` for scripts.
//!
//! Files: [`render`] (`status`), [`views`] (`peers`, `connections`, `members`, `routes`,
//! `ipam` with the address ring, `dns`), [`client`] (the API calls, over `mesh-api-client`),
//! [`diagnose`] (`debug`, `ping`, `connect`, `forget`), [`escape`] (every string printed
//! for people escaped for the terminal); `keygen`, `completions bash|zsh|fish`, `man` and
//! `version` are here.
//!
//! It holds no state and never sees secrets: everything it prints comes from
//! the API. Tables and lines for people show control and bidi characters escaped
//! ([`escape`]), whoever sent the value; `-o json` is the API's JSON as it is.
//! Errors are one line on stderr, escaped too, and exit code 1; bad arguments exit 2;
//! `debug` exits 3 when it found a problem of severity `error` (after printing the
//! report), `ping` exits 1 when no probe was answered.
#![forbid(unsafe_code)]

mod client;
mod diagnose;
mod escape;
mod render;
mod views;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::client::{Client, REQUEST_TIMEOUT};

#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about = "Shows and steers a running meshd.")]
struct Cli {
    /// Path of meshd's API socket.
    #[arg(
        long,
        global = true,
        env = "MESH_API_SOCKET",
        default_value = mesh_api::DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    socket: PathBuf,

    /// Output format of read commands.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned text for people.
    Table,
    /// The API's JSON, pretty-printed, for scripts.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum Command {
    /// This node, its peers and their sessions, a summary of the members, drop counters.
    Status,
    /// Who the peers are: name, key fingerprint, endpoints, session state.
    Peers,
    /// Each peer's path and session: RTT, MTU, cipher, last handshake, traffic, drops.
    Connections,
    /// Cluster members from gossip: state, endpoint, blocks, neighbour, session, time unreachable.
    Members,
    /// The route table: which peer each block goes to; this node's blocks are `local`.
    Routes,
    /// This node's pod address pool: mode, blocks, used and free addresses, allocations;
    /// with automatic IPAM also who owns which blocks of the range. `allocate` and `release`
    /// hand an address out and free it by hand (for pods not made by the CNI plugin).
    Ipam {
        #[command(subcommand)]
        action: Option<IpamAction>,
    },
    /// Declare member NAME (or KEY) gone for good and take its address blocks over (automatic
    /// IPAM). Refuses a member this node sees alive unless --force. Run it on one node only,
    /// for a member that will never run again with its key (see docs/ipam.md).
    Rmpeer {
        /// The member's name or public key (from `meshctl members`).
        #[arg(value_name = "NAME|KEY")]
        member: String,
        /// Remove it even though this node sees it alive.
        #[arg(long)]
        force: bool,
    },
    /// DNS records of the cluster zone (name, address, owner, served); `add` and `remove`
    /// edit this node's.
    Dns {
        #[command(subcommand)]
        action: Option<DnsAction>,
    },
    /// Everything about this host's side of the mesh in one view: the bridge and its ports,
    /// pod veths and their namespaces, ARP and FDB entries, routes of the cluster range,
    /// offloads, UDP socket drops, then the problems found, each naming its fix. Exits 3
    /// when a problem of severity `error` was found.
    Debug,
    /// Measure the overlay path to a member (by name or public key) or to the member whose
    /// block holds a pod address: round trip of each probe, loss, direct or relayed, and
    /// whether a probe of the overlay MTU passes. Exits 1 when no probe was answered.
    Ping {
        /// A member's name or public key, or a pod address.
        #[arg(value_name = "NAME|IP|KEY")]
        target: String,
        /// Probes to send (1-20).
        #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
        count: u32,
        /// Milliseconds between probes (10-1000).
        #[arg(short = 'i', long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=1000))]
        interval_ms: u64,
    },
    /// Add a peer endpoint at run time, as `meshd --peer` does at start: meshd tries it until
    /// it answers, and saves whoever answers as a known peer. A host name is resolved here;
    /// without a port, 6788.
    Connect {
        /// The endpoint.
        #[arg(value_name = "HOST:PORT")]
        endpoint: String,
    },
    /// Stop trying a peer endpoint and remove the peers saved at it from the known peers
    /// (a `--peer` endpoint comes back when meshd restarts with it). Sessions up now stay.
    Forget {
        /// The endpoint.
        #[arg(value_name = "HOST:PORT")]
        endpoint: String,
    },
    /// Print a new random cluster secret (base64), as `meshd gen-secret` does.
    Keygen,
    /// Print a shell completion script (e.g. `meshctl completions bash > /etc/bash_completion.d/meshctl`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `meshctl man > /usr/local/share/man/man1/meshctl.1`.
    Man,
    /// The version of this meshctl.
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum IpamAction {
    /// Hand an address to attachment CONTAINER_ID/IFNAME (the same one again if it has one).
    Allocate {
        /// The attachment's container id.
        container_id: String,
        /// The attachment's interface name.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// Pod name, for the record.
        #[arg(long)]
        pod: Option<String>,
        /// Pod namespace, for the record.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Free the address of attachment CONTAINER_ID/IFNAME.
    Release {
        /// The attachment's container id.
        container_id: String,
        /// The attachment's interface name.
        #[arg(long, default_value = "eth0")]
        ifname: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum DnsAction {
    /// Register ADDRESS under NAME (relative to the zone, e.g. `web`, or fully qualified
    /// inside it), owned by this node.
    Add {
        /// The name.
        name: String,
        /// An IPv4 or IPv6 address.
        address: String,
    },
    /// Remove this node's records under NAME: the one with ADDRESS, or all of them.
    Remove {
        /// The name.
        name: String,
        /// Only this address.
        address: Option<String>,
    },
}

/// Exit code of `meshctl debug` when it found a problem of severity `error`.
const EXIT_PROBLEMS: u8 = 3;
/// Exit code of bad arguments (as clap's).
const EXIT_USAGE: u8 = 2;

/// An argument clap accepted but that is not what the command needs (one line, exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // One line. Our errors already name their cause; `{:#}` would repeat it.
            eprintln!("{}", error_line(&err));
            if err.is::<UsageError>() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `meshctl: ` and the error, escaped: an error of meshd's, or a body this meshctl could not
/// decode, may quote a peer's string.
fn error_line(err: &anyhow::Error) -> String {
    format!("meshctl: {}", escape::escape(&err.to_string()))
}

/// The endpoint of `connect` and `forget`, as `meshd --peer` takes one: `IP:PORT`,
/// `HOST:PORT`, or a bare IP or host (port 6788). A host name is resolved here (an IPv4
/// address preferred); one that is not a host name is refused before any lookup.
fn endpoint_arg(s: &str) -> Result<std::net::SocketAddr, UsageError> {
    use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, mesh_api::DEFAULT_UDP_PORT));
    }
    let bad = || {
        UsageError(format!(
            "{s:?} is not an endpoint: give HOST:PORT or IP:PORT, e.g. 198.18.0.2:6788"
        ))
    };
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (s, mesh_api::DEFAULT_UDP_PORT),
    };
    let hostname = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !hostname {
        return Err(bad());
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| UsageError(format!("{s:?} does not resolve to an address")))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| UsageError(format!("{s:?} does not resolve to an address")))
}

/// Runs the command; the exit code.
fn run(cli: &Cli) -> anyhow::Result<u8> {
    let mut code = 0;
    let text = match &cli.command {
        Command::Debug => {
            let report: mesh_api::DebugReport =
                ask(
                    cli,
                    |c| async move { c.get_json(mesh_api::PATH_DEBUG).await },
                )?;
            if report.worst() == Some(mesh_api::Severity::Error) {
                code = EXIT_PROBLEMS;
            }
            output(&report, cli.output, diagnose::debug_text)?
        }
        Command::Ping {
            target,
            count,
            interval_ms,
        } => {
            let req = mesh_api::PingRequest {
                target: target.clone(),
                count: *count,
                interval_ms: *interval_ms,
            };
            // The probes take count x interval, plus a second for the last answers.
            let timeout = REQUEST_TIMEOUT
                + std::time::Duration::from_millis(u64::from(*count) * *interval_ms);
            let result: mesh_api::PingResult = ask_within(cli, timeout, |c| async move {
                c.post_json(mesh_api::PATH_PING, &req).await
            })?;
            if result.received == 0 {
                code = 1;
            }
            output(&result, cli.output, diagnose::ping_text)?
        }
        Command::Connect { endpoint } => {
            let req = mesh_api::EndpointRequest {
                endpoint: endpoint_arg(endpoint)?.to_string(),
            };
            let changed: mesh_api::EndpointChanged = ask(cli, |c| async move {
                c.post_json(mesh_api::PATH_PEERS_CONNECT, &req).await
            })?;
            output(&changed, cli.output, diagnose::connected_text)?
        }
        Command::Forget { endpoint } => {
            let req = mesh_api::EndpointRequest {
                endpoint: endpoint_arg(endpoint)?.to_string(),
            };
            let changed: mesh_api::EndpointChanged = ask(cli, |c| async move {
                c.post_json(mesh_api::PATH_PEERS_FORGET, &req).await
            })?;
            output(&changed, cli.output, diagnose::forgot_text)?
        }
        Command::Version => version_text(cli.output)?,
        Command::Keygen => keygen_text(cli.output)?,
        Command::Completions { shell } => completions_text(*shell)?,
        Command::Man => man_text()?,
        Command::Status => {
            let status = ask(cli, |c| async move { c.status().await })?;
            status_output(&status, cli.output)?
        }
        Command::Peers => {
            let status = ask(cli, |c| async move { c.status().await })?;
            let view = mesh_api::PeersView::from_status(&status);
            output(&view, cli.output, views::peers_text)?
        }
        Command::Connections => {
            let status = ask(cli, |c| async move { c.status().await })?;
            let view = mesh_api::ConnectionsView::from_status(&status);
            output(&view, cli.output, views::connections_text)?
        }
        Command::Members => {
            let status = ask(cli, |c| async move { c.status().await })?;
            let view = views::MembersView::from_status(&status);
            output(&view, cli.output, views::members_text)?
        }
        Command::Routes => {
            let routes: mesh_api::Routes =
                ask(
                    cli,
                    |c| async move { c.get_json(mesh_api::PATH_ROUTES).await },
                )?;
            output(&routes, cli.output, views::routes_text)?
        }
        Command::Ipam { action: None } => {
            let ipam: mesh_api::IpamStatus =
                ask(
                    cli,
                    |c| async move { c.get_json(mesh_api::PATH_IPAM).await },
                )?;
            output(&ipam, cli.output, views::ipam_text)?
        }
        Command::Ipam {
            action:
                Some(IpamAction::Allocate {
                    container_id,
                    ifname,
                    pod,
                    namespace,
                }),
        } => {
            let req = mesh_api::IpamAllocateRequest {
                container_id: container_id.clone(),
                ifname: ifname.clone(),
                pod_name: pod.clone(),
                pod_namespace: namespace.clone(),
                network: None,
            };
            let got: mesh_api::IpamAllocated = ask(cli, |c| async move {
                c.post_json(mesh_api::PATH_IPAM_ALLOCATE, &req).await
            })?;
            output(&got, cli.output, views::allocated_text)?
        }
        Command::Ipam {
            action:
                Some(IpamAction::Release {
                    container_id,
                    ifname,
                }),
        } => {
            let req = mesh_api::IpamReleaseRequest {
                container_id: container_id.clone(),
                ifname: ifname.clone(),
            };
            let freed: mesh_api::IpamReleased = ask(cli, |c| async move {
                c.post_json(mesh_api::PATH_IPAM_RELEASE, &req).await
            })?;
            output(&freed, cli.output, views::released_text)?
        }
        Command::Rmpeer { member, force } => {
            let req = mesh_api::MemberRemoveRequest {
                member: member.clone(),
                force: *force,
            };
            let removed: mesh_api::MemberRemoved = ask(cli, |c| async move {
                c.post_json(mesh_api::PATH_MEMBERS_REMOVE, &req).await
            })?;
            output(&removed, cli.output, views::removed_text)?
        }
        Command::Dns { action: None } => {
            let dns: mesh_api::DnsRecords =
                ask(cli, |c| async move { c.get_json(mesh_api::PATH_DNS).await })?;
            output(&dns, cli.output, views::dns_text)?
        }
        Command::Dns {
            action: Some(DnsAction::Add { name, address }),
        } => {
            let req = mesh_api::DnsAddRequest {
                name: name.clone(),
                address: address.clone(),
            };
            let changed: mesh_api::DnsChanged = ask(cli, |c| async move {
                c.post_json(mesh_api::PATH_DNS_ADD, &req).await
            })?;
            output(&changed, cli.output, |c| {
                views::dns_changed_text("added", c)
            })?
        }
        Command::Dns {
            action: Some(DnsAction::Remove { name, address }),
        } => {
            let req = mesh_api::DnsRemoveRequest {
                name: name.clone(),
                address: address.clone(),
            };
            let changed: mesh_api::DnsChanged = ask(cli, |c| async move {
                c.post_json(mesh_api::PATH_DNS_REMOVE, &req).await
            })?;
            output(&changed, cli.output, |c| {
                views::dns_changed_text("removed", c)
            })?
        }
    };
    write_stdout(&text)?;
    Ok(code)
}

/// One request to meshd on a single-threaded runtime.
fn ask<T, F, Fut>(cli: &Cli, request: F) -> anyhow::Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, client::ClientError>>,
{
    ask_within(cli, REQUEST_TIMEOUT, request)
}

/// [`ask`] with its own deadline.
fn ask_within<T, F, Fut>(cli: &Cli, timeout: std::time::Duration, request: F) -> anyhow::Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, client::ClientError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::new(&cli.socket, timeout);
    Ok(runtime.block_on(request(client))?)
}

/// A view as its table, or as pretty JSON of its `mesh_api` type. The views escape every
/// value they render; the table is escaped once more as a whole ([`escape::escape_lines`],
/// which changes nothing in escaped text) so a field a view forgot cannot reach the terminal.
fn output<T: serde::Serialize>(
    value: &T,
    output: Output,
    table: fn(&T) -> String,
) -> anyhow::Result<String> {
    Ok(match output {
        Output::Table => escape::escape_lines(&table(value)).into_owned(),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
    })
}

/// 32 random bytes from the OS, standard base64: the format `meshd --secret-file` reads.
fn keygen_text(output: Output) -> anyhow::Result<String> {
    use base64::Engine as _;
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read random bytes from the OS: {e}"))?;
    let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(match output {
        Output::Table => format!("{secret}\n"),
        Output::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({ "secret": secret }))?
        ),
    })
}

fn completions_text(shell: clap_complete::Shell) -> anyhow::Result<String> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "meshctl", &mut out);
    Ok(String::from_utf8(out)?)
}

fn man_text() -> anyhow::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(String::from_utf8(out)?)
}

fn version_text(output: Output) -> anyhow::Result<String> {
    let version = env!("CARGO_PKG_VERSION");
    Ok(match output {
        Output::Table => format!("meshctl {version}\n"),
        Output::Json => {
            let value = serde_json::json!({ "meshctl": version });
            format!("{}\n", serde_json::to_string_pretty(&value)?)
        }
    })
}

/// The status as text: the table view, or the decoded answer re-encoded as
/// pretty JSON (decoding first means a daemon speaking another schema is caught).
fn status_output(status: &mesh_api::Status, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Table => escape::escape_lines(&render::status_text(status)).into_owned(),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(status)?),
    })
}

/// Writes to stdout; a closed pipe (`meshctl status | head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escape::tests::{HOSTILE, HOSTILE_SHOWN, has_raw_control};
    use clap::error::ErrorKind;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn output_flag_goes_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["meshctl", "status", "-o", "json"]).unwrap();
        assert_eq!((cli.command, cli.output), (Command::Status, Output::Json));

        let cli =
            Cli::try_parse_from(["meshctl", "--socket", "/tmp/x.sock", "status", "-o", "json"])
                .unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(cli.output, Output::Json);

        let cli = Cli::try_parse_from(["meshctl", "--output", "json", "status"]).unwrap();
        assert_eq!(cli.output, Output::Json);
    }

    #[test]
    fn defaults() {
        // MESH_API_SOCKET may be set where tests run; only check it when it is not.
        let cli = Cli::try_parse_from(["meshctl", "status"]).unwrap();
        assert_eq!(cli.output, Output::Table);
        if std::env::var_os("MESH_API_SOCKET").is_none() {
            assert_eq!(cli.socket, PathBuf::from(mesh_api::DEFAULT_SOCKET));
        }
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let err = Cli::try_parse_from(["meshctl", "status", "-o", "yaml"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["meshctl", "frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn json_output_round_trips_the_api_types() {
        let status = render::tests::sample_status();
        let text = status_output(&status, Output::Json).unwrap();
        assert!(text.starts_with("{\n  \"node\": {\n    \"name\": \"alpha\","));
        assert!(text.contains("\"state\": \"established\""));
        let back: mesh_api::Status = serde_json::from_str(&text).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn debug_ping_connect_forget_parse_and_bad_endpoints_are_usage_errors() {
        let cli = Cli::try_parse_from(["meshctl", "debug", "-o", "json"]).unwrap();
        assert_eq!((cli.command, cli.output), (Command::Debug, Output::Json));
        let cli = Cli::try_parse_from(["meshctl", "ping", "beta", "-c", "3"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Ping {
                target: "beta".into(),
                count: 3,
                interval_ms: 200
            }
        );
        let err = Cli::try_parse_from(["meshctl", "ping", "beta", "-c", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["meshctl", "ping"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let cli = Cli::try_parse_from(["meshctl", "connect", "198.18.0.2:6788"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Connect {
                endpoint: "198.18.0.2:6788".into()
            }
        );
        assert_eq!(
            endpoint_arg(" 198.18.0.2:6788 ").unwrap(),
            "198.18.0.2:6788".parse().unwrap()
        );
        assert!(endpoint_arg("[fd00::2]:6788").is_ok());
        assert_eq!(
            endpoint_arg("198.18.0.2").unwrap(),
            "198.18.0.2:6788".parse().unwrap(),
            "the default port, as --peer"
        );
        assert_eq!(
            endpoint_arg("localhost:7000").unwrap().port(),
            7000,
            "a host name is resolved"
        );
        // Refused before any lookup.
        for bad in [
            "198.18.0.2:99999",
            "host:port",
            "a b:6788",
            "10.0.0.1:x:6788",
            "",
        ] {
            let err = anyhow::Error::from(endpoint_arg(bad).unwrap_err());
            assert!(err.is::<UsageError>(), "{bad}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
        let err = Cli::try_parse_from(["meshctl", "forget"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "forget needs HOST:PORT");
    }

    #[test]
    fn version_json() {
        let text = version_text(Output::Json).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["meshctl"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn views_json_round_trip_their_api_types() {
        let status = render::tests::sample_status();
        let peers = mesh_api::PeersView::from_status(&status);
        let text = output(&peers, Output::Json, views::peers_text).unwrap();
        assert!(text.contains("\"fingerprint\": \"Zm9vYmFy\""), "{text}");
        assert!(
            text.contains("\"endpoints\": [\n        \"198.18.0.2:6788\"\n      ]"),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<mesh_api::PeersView>(&text).unwrap(),
            peers
        );

        let conns = mesh_api::ConnectionsView::from_status(&status);
        let text = output(&conns, Output::Json, views::connections_text).unwrap();
        assert!(text.contains("\"path\": \"direct\""), "{text}");
        assert!(
            text.contains("\"relay\": null"),
            "a direct path names no relay: {text}"
        );
        assert_eq!(
            serde_json::from_str::<mesh_api::ConnectionsView>(&text).unwrap(),
            conns
        );

        let members = views::MembersView::from_status(&status);
        let text = output(&members, Output::Json, views::members_text).unwrap();
        assert!(
            text.starts_with("{\n  \"members\": [\n    {\n      \"name\": \"alpha\",\n"),
            "{text}"
        );
        assert!(text.contains("\"fingerprint\": \"Z2FtbWFn\""), "{text}");
        assert!(text.contains("\"state\": \"local\""), "{text}");
        assert!(text.contains("\"state\": \"dead\""), "{text}");
        assert!(text.contains("\"unreachable_secs\": 754"), "{text}");
        assert!(text.contains("\"endpoint\": null"), "{text}");
        assert_eq!(
            serde_json::from_str::<views::MembersView>(&text).unwrap(),
            members
        );

        let routes = views::tests::sample_routes();
        let text = output(&routes, Output::Json, views::routes_text).unwrap();
        assert!(text.contains("\"via\": \"local\""), "{text}");
        assert_eq!(
            serde_json::from_str::<mesh_api::Routes>(&text).unwrap(),
            routes
        );

        let ipam = views::tests::sample_ipam();
        let text = output(&ipam, Output::Json, views::ipam_text).unwrap();
        assert_eq!(
            serde_json::from_str::<mesh_api::IpamStatus>(&text).unwrap(),
            ipam
        );
        let ring = views::tests::sample_ring_ipam();
        let text = output(&ring, Output::Json, views::ipam_text).unwrap();
        assert!(text.contains("\"mode\": \"automatic\""), "{text}");
        assert!(text.contains("\"local\": true"), "{text}");
        assert_eq!(
            serde_json::from_str::<mesh_api::IpamStatus>(&text).unwrap(),
            ring
        );
        let removed = views::tests::sample_removed();
        let text = output(&removed, Output::Json, views::removed_text).unwrap();
        assert!(
            text.contains("\"reclaimed\": [\n    \"10.32.5.0/24\""),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<mesh_api::MemberRemoved>(&text).unwrap(),
            removed
        );

        let dns = views::tests::sample_dns();
        let text = output(&dns, Output::Json, views::dns_text).unwrap();
        assert!(text.contains("\"served\": false"), "{text}");
        assert_eq!(
            serde_json::from_str::<mesh_api::DnsRecords>(&text).unwrap(),
            dns
        );

        assert_eq!(
            output(&routes, Output::Table, views::routes_text).unwrap(),
            views::routes_text(&routes)
        );
    }

    #[test]
    fn keygen_is_32_random_bytes_in_base64() {
        use base64::Engine as _;
        let a = keygen_text(Output::Table).unwrap();
        let b = keygen_text(Output::Table).unwrap();
        assert_ne!(a, b);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.trim_end())
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(a.len(), 45, "44 characters and a newline");
        let json: serde_json::Value =
            serde_json::from_str(&keygen_text(Output::Json).unwrap()).unwrap();
        assert_eq!(json["secret"].as_str().unwrap().len(), 44);
    }

    #[test]
    fn completions_and_man_page_name_every_command() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let text = completions_text(shell).unwrap();
            for cmd in [
                "status",
                "peers",
                "connections",
                "members",
                "routes",
                "ipam",
                "rmpeer",
                "keygen",
            ] {
                assert!(text.contains(cmd), "{shell} completions lack {cmd}");
            }
        }
        let man = man_text().unwrap();
        assert!(man.contains(".TH meshctl 1"), "{man}");
        for cmd in [
            "connections",
            "members",
            "routes",
            "ipam",
            "rmpeer",
            "completions",
        ] {
            assert!(man.contains(cmd), "man page lacks {cmd}");
        }
    }

    #[test]
    fn new_commands_parse() {
        for (args, want) in [
            (vec!["meshctl", "peers"], Command::Peers),
            (
                vec!["meshctl", "connections", "-o", "json"],
                Command::Connections,
            ),
            (vec!["meshctl", "members"], Command::Members),
            (vec!["meshctl", "members", "-o", "json"], Command::Members),
            (vec!["meshctl", "routes"], Command::Routes),
            (vec!["meshctl", "ipam"], Command::Ipam { action: None }),
            (
                vec!["meshctl", "ipam", "allocate", "c1", "--ifname", "net1"],
                Command::Ipam {
                    action: Some(IpamAction::Allocate {
                        container_id: "c1".into(),
                        ifname: "net1".into(),
                        pod: None,
                        namespace: None,
                    }),
                },
            ),
            (
                vec!["meshctl", "ipam", "release", "c1"],
                Command::Ipam {
                    action: Some(IpamAction::Release {
                        container_id: "c1".into(),
                        ifname: "eth0".into(),
                    }),
                },
            ),
            (
                vec!["meshctl", "rmpeer", "gamma"],
                Command::Rmpeer {
                    member: "gamma".into(),
                    force: false,
                },
            ),
            (
                vec!["meshctl", "rmpeer", "--force", "Z2FtbWFn", "-o", "json"],
                Command::Rmpeer {
                    member: "Z2FtbWFn".into(),
                    force: true,
                },
            ),
            (vec!["meshctl", "keygen"], Command::Keygen),
            (
                vec!["meshctl", "dns", "-o", "json"],
                Command::Dns { action: None },
            ),
            (
                vec!["meshctl", "dns", "add", "web", "10.32.1.50"],
                Command::Dns {
                    action: Some(DnsAction::Add {
                        name: "web".into(),
                        address: "10.32.1.50".into(),
                    }),
                },
            ),
            (
                vec!["meshctl", "dns", "remove", "web"],
                Command::Dns {
                    action: Some(DnsAction::Remove {
                        name: "web".into(),
                        address: None,
                    }),
                },
            ),
            (
                vec!["meshctl", "dns", "remove", "web", "10.32.1.50"],
                Command::Dns {
                    action: Some(DnsAction::Remove {
                        name: "web".into(),
                        address: Some("10.32.1.50".into()),
                    }),
                },
            ),
            (vec!["meshctl", "man"], Command::Man),
            (
                vec!["meshctl", "completions", "fish"],
                Command::Completions {
                    shell: clap_complete::Shell::Fish,
                },
            ),
        ] {
            assert_eq!(
                Cli::try_parse_from(&args).unwrap().command,
                want,
                "{args:?}"
            );
        }
        let err = Cli::try_parse_from(["meshctl", "completions", "tcsh"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["meshctl", "dns", "add", "web"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "add needs NAME and ADDRESS");
        let err = Cli::try_parse_from(["meshctl", "rmpeer"]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "rmpeer needs NAME|KEY");
    }

    /// Every string of `sample`'s JSON, and every null (an absent name or relay), in turn
    /// made to start with [`HOSTILE`]; each variant that still decodes as `T` (not an enum
    /// or a number) is rendered and must show no raw control or bidi character. The number
    /// of fields so poisoned.
    fn poison_each_string<T>(sample: &T, render: &dyn Fn(&T) -> String) -> usize
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        fn leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(_) | serde_json::Value::Null => out.push(at),
                serde_json::Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        leaves(item, format!("{at}/{i}"), out);
                    }
                }
                serde_json::Value::Object(fields) => {
                    for (k, item) in fields {
                        leaves(item, format!("{at}/{k}"), out);
                    }
                }
                serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
            }
        }
        let base = serde_json::to_value(sample).unwrap();
        let mut at = Vec::new();
        leaves(&base, String::new(), &mut at);
        let mut poisoned = 0;
        for pointer in at {
            let mut value = base.clone();
            let leaf = value.pointer_mut(&pointer).unwrap();
            *leaf = serde_json::Value::String(match leaf {
                serde_json::Value::String(s) => format!("{HOSTILE}{s}"),
                _ => HOSTILE.to_owned(),
            });
            let Ok(hostile) = serde_json::from_value::<T>(value) else {
                continue;
            };
            let text = render(&hostile);
            assert!(
                !has_raw_control(&text),
                "{pointer} = {HOSTILE:?} reaches the terminal raw:\n{text}"
            );
            poisoned += 1;
        }
        poisoned
    }

    #[test]
    fn no_view_renders_a_raw_control_character_whatever_field_holds_it() {
        let status = render::tests::hostile_status();
        let mut counts = vec![
            poison_each_string(&status, &render::status_text),
            poison_each_string(&status, &|s| {
                views::peers_text(&mesh_api::PeersView::from_status(s))
            }),
            poison_each_string(&status, &|s| {
                views::connections_text(&mesh_api::ConnectionsView::from_status(s))
            }),
            poison_each_string(&status, &|s| {
                views::members_text(&views::MembersView::from_status(s))
            }),
            poison_each_string(&views::tests::hostile_routes(), &views::routes_text),
            poison_each_string(&views::tests::sample_ipam(), &views::ipam_text),
            poison_each_string(&views::tests::hostile_ipam(), &views::ipam_text),
            poison_each_string(&views::tests::hostile_dns(), &views::dns_text),
            poison_each_string(&views::tests::sample_removed(), &views::removed_text),
            poison_each_string(&diagnose::tests::hostile_ping(), &diagnose::ping_text),
            poison_each_string(&diagnose::tests::hostile_debug(), &diagnose::debug_text),
        ];
        let changed = mesh_api::DnsChanged {
            records: views::tests::hostile_dns().records,
        };
        counts.push(poison_each_string(&changed, &|c| {
            views::dns_changed_text("added", c)
        }));
        let endpoint = mesh_api::EndpointChanged {
            endpoint: "198.18.0.3:6788".into(),
            changed: true,
            removed_keys: vec!["Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=".into()],
        };
        counts.push(poison_each_string(&endpoint, &diagnose::connected_text));
        counts.push(poison_each_string(&endpoint, &diagnose::forgot_text));
        let allocated = mesh_api::IpamAllocated {
            address: "10.32.1.5/24".into(),
            gateway: "10.32.1.1".into(),
            mtu: 1420,
            bridge: "mesh0".into(),
            range: "10.32.0.0/12".into(),
            fresh: true,
        };
        counts.push(poison_each_string(&allocated, &views::allocated_text));
        counts.push(poison_each_string(
            &mesh_api::IpamReleased {
                released: Some("10.32.1.5/24".into()),
            },
            &views::released_text,
        ));
        // The samples are full: each view had fields poisoned (no vacuous pass); 272 today.
        assert!(
            counts.iter().all(|&n| n > 0) && counts.iter().sum::<usize>() >= 250,
            "fields poisoned per view: {counts:?}"
        );
    }

    #[test]
    fn output_escapes_what_a_view_left_raw_and_json_keeps_the_exact_value() {
        fn leaky(_: &mesh_api::Routes) -> String {
            format!("NAME\n{HOSTILE}\n")
        }
        let routes = views::tests::hostile_routes();
        assert_eq!(
            output(&routes, Output::Table, leaky).unwrap(),
            format!("NAME\n{HOSTILE_SHOWN}\n")
        );
        let status = render::tests::hostile_status();
        let table = status_output(&status, Output::Table).unwrap();
        assert!(!has_raw_control(&table), "{table}");
        assert!(table.contains(HOSTILE_SHOWN), "{table}");

        // JSON: C0 controls escaped by JSON's rules, the value itself exact; DEL, C1 and
        // bidi characters are valid JSON string characters and pass as they are.
        let json = status_output(&status, Output::Json).unwrap();
        assert!(
            !json.chars().any(|c| c != '\n' && c < ' '),
            "no raw C0 in -o json: {json}"
        );
        assert!(
            json.contains(r#""name": "ev\u001b]0;pwned\u0007\u001b[2J"#),
            "{json}"
        );
        assert!(json.contains('\u{202e}') && json.contains('\u{9b}') && json.contains('\x7f'));
        assert_eq!(
            serde_json::from_str::<mesh_api::Status>(&json).unwrap(),
            status
        );
    }

    #[test]
    fn error_line_is_one_escaped_line() {
        let err = anyhow::Error::from(client::ClientError::Api {
            code: mesh_api_client::StatusCode::NOT_FOUND,
            message: format!("no member named {HOSTILE}\nmeshctl: all good"),
        });
        assert_eq!(
            error_line(&err),
            format!(
                "meshctl: meshd answered 404: no member named {HOSTILE_SHOWN}\\x0ameshctl: all good"
            )
        );
    }
}
