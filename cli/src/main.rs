//! `meshctl`: shows and steers a running `meshd` over its local API (HTTP/1.1 +
//! JSON on a unix socket). Tables for people, `-o json` for scripts.
//!
//! It holds no state and never sees secrets: everything it prints comes from
//! the API. Errors are one line on stderr and exit code 1; bad arguments exit 2.
#![forbid(unsafe_code)]

mod client;
mod render;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Command {
    /// This node, its peers and their sessions, drop counters.
    Status,
    /// The version of this meshctl.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line. Our errors already name their cause; `{:#}` would repeat it.
            eprintln!("meshctl: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let text = match cli.command {
        Command::Version => version_text(cli.output)?,
        Command::Status => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = Client::new(&cli.socket, REQUEST_TIMEOUT);
            let status = runtime.block_on(client.status())?;
            status_output(&status, cli.output)?
        }
    };
    write_stdout(&text)
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
        Output::Table => render::status_text(status),
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
    use clap::CommandFactory;
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
    fn version_json() {
        let text = version_text(Output::Json).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["meshctl"], env!("CARGO_PKG_VERSION"));
    }
}
