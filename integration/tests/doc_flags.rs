//! The flag tables cannot drift from the code: every long flag of `meshd` (the `RunArgs`
//! struct of `router/daemon/src/config.rs`, which is what `meshd --help` prints) has a row,
//! with its environment variable, in the flag tables of README.md and docs/operations.md and
//! in docs/defaults.md; and every flag those tables list exists. A flag added without its
//! documentation, or renamed, or a row for a flag that is gone, fails here.
//!
//! It reads the source rather than running `meshd --help`, so it needs no built binary and
//! runs in every `cargo test`.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A flag of `meshd`: its long name without `--`, and its environment variable.
#[derive(Debug)]
struct Flag {
    long: String,
    env: String,
}

/// The text of `key = "value"` inside an `#[arg(...)]` attribute.
fn attr_value(attr: &str, key: &str) -> Option<String> {
    let mut rest = attr;
    while let Some(i) = rest.find(key) {
        let before_ok = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
        let after = rest[i + key.len()..].trim_start();
        if before_ok && let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start();
            if let Some(v) = v.strip_prefix('"') {
                return v.split('"').next().map(str::to_owned);
            }
        }
        rest = &rest[i + key.len()..];
    }
    None
}

/// The flags of `RunArgs`: each field after an `#[arg(...)]` with `long`.
fn meshd_flags() -> Vec<Flag> {
    let src = read("router/daemon/src/config.rs");
    let start = src
        .find("struct RunArgs {")
        .unwrap_or_else(|| panic!("config.rs has no `struct RunArgs {{`"));
    let body = &src[start..];
    let end = body
        .find("\n}")
        .unwrap_or_else(|| panic!("config.rs: RunArgs has no end"));
    let body = &body[..end];
    let mut flags = Vec::new();
    // The `#[arg(...)]` being read (it may span lines), and the last complete one.
    let mut open: Option<String> = None;
    let mut done: Option<String> = None;
    for line in body.lines().skip(1) {
        let line = line.trim();
        if line.starts_with("///") {
            continue;
        }
        let attr = match open.take() {
            Some(mut a) => {
                a.push(' ');
                a.push_str(line);
                Some(a)
            }
            None if line.starts_with("#[arg(") => Some(line.to_owned()),
            None => None,
        };
        if let Some(a) = attr {
            if a.ends_with(")]") {
                done = Some(a);
            } else {
                open = Some(a);
            }
            continue;
        }
        let Some(field) = line
            .strip_prefix("pub(crate) ")
            .and_then(|l| l.split(':').next())
        else {
            continue;
        };
        let a = done
            .take()
            .unwrap_or_else(|| panic!("RunArgs field {field} has no #[arg(...)]"));
        assert!(a.contains("long"), "RunArgs field {field} has no long flag");
        let long = attr_value(&a, "long").unwrap_or_else(|| field.replace('_', "-"));
        let env =
            attr_value(&a, "env").unwrap_or_else(|| panic!("--{long} has no environment variable"));
        flags.push(Flag { long, env });
    }
    flags
}

/// The rows of the first markdown table after `heading` whose first cell starts with
/// `` `--``: the flag name (without `--`) and the whole row.
fn table_rows(doc: &str, heading: &str) -> Vec<(String, String)> {
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in doc[at..].lines().skip(1) {
        if line.starts_with('|') {
            in_table = true;
            let first = line.split('|').nth(1).unwrap_or("").trim();
            if let Some(flag) = first.strip_prefix("`--") {
                let name: String = flag
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                rows.push((name, line.to_owned()));
            }
        } else if in_table {
            break;
        }
    }
    rows
}

/// Every flag of `meshd` has one row naming its env, and every row names a real flag.
fn check_table(doc_name: &str, rows: &[(String, String)], flags: &[Flag]) -> Vec<String> {
    let mut problems = Vec::new();
    for f in flags {
        let found: Vec<&(String, String)> = rows.iter().filter(|(n, _)| *n == f.long).collect();
        match found.as_slice() {
            [] => problems.push(format!("{doc_name}: no row for --{}", f.long)),
            [(_, row)] => {
                if !row.contains(&format!("`{}`", f.env)) {
                    problems.push(format!(
                        "{doc_name}: the row of --{} does not name `{}`",
                        f.long, f.env
                    ));
                }
            }
            _ => problems.push(format!("{doc_name}: more than one row for --{}", f.long)),
        }
    }
    for (name, _) in rows {
        if !flags.iter().any(|f| f.long == *name) {
            problems.push(format!(
                "{doc_name}: a row for --{name}, which meshd does not have"
            ));
        }
    }
    problems
}

#[test]
fn the_parser_finds_meshds_flags() {
    // Guards the parser itself: a change in config.rs's layout that made it find nothing (or
    // miss the multi-line attributes) would make every other check here pass vacuously.
    let flags = meshd_flags();
    let names: Vec<&str> = flags.iter().map(|f| f.long.as_str()).collect();
    for expected in [
        "config",
        "peer",
        "secret-file",
        "dns-upstream",
        "cipher",
        "log",
    ] {
        assert!(
            names.contains(&expected),
            "--{expected} not found in {names:?}"
        );
    }
    let peer = flags.iter().find(|f| f.long == "peer");
    assert_eq!(peer.map(|f| f.env.as_str()), Some("MESH_PEERS"));
    assert!(
        flags.len() >= 25,
        "only {} flags found: {names:?}",
        flags.len()
    );
}

#[test]
fn every_meshd_flag_is_in_the_readme_and_operations_flag_tables() {
    let flags = meshd_flags();
    let mut problems = check_table(
        "README.md",
        &table_rows(&read("README.md"), "### `meshd` flags"),
        &flags,
    );
    problems.extend(check_table(
        "docs/operations.md",
        &table_rows(&read("docs/operations.md"), "## Configuration"),
        &flags,
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_meshd_flag_is_in_defaults_md() {
    let flags = meshd_flags();
    let doc = read("docs/defaults.md");
    // defaults.md's rows name a setting first and then `--flag` / `ENV` / `key`.
    let mut problems = Vec::new();
    for f in &flags {
        let want = format!("`--{}", f.long);
        let rows: Vec<&str> = doc
            .lines()
            .filter(|l| {
                l.starts_with('|')
                    && l.match_indices(&want).any(|(i, _)| {
                        !l[i + want.len()..]
                            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
                    })
            })
            .collect();
        if rows.is_empty() {
            problems.push(format!("docs/defaults.md: no row for --{}", f.long));
        } else if !rows.iter().any(|r| r.contains(&format!("`{}`", f.env))) {
            problems.push(format!(
                "docs/defaults.md: no row for --{} names `{}`",
                f.long, f.env
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
