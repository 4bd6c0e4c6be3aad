//! docs/threat-model.md's promise that every line names the test that proves it, or says
//! "not defended", checked: every table row of its attacker sections has a test name in its
//! last column or says **Not defended** (or "by design"), and every test it names exists as
//! a `fn` in the repository. A renamed or deleted test makes the document stale, and this
//! fails.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every `.rs` file under `dir`, skipping build output and hidden directories.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                sources(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// The `backticked` snake_case names of a cell (the test column) that look like test names.
fn test_names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.matches('_').count() >= 2
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_threat_model_line_names_an_existing_test_or_says_not_defended() {
    let doc = std::fs::read_to_string(repo().join("docs/threat-model.md"))
        .unwrap_or_else(|e| panic!("docs/threat-model.md: {e}"));
    let mut files = Vec::new();
    sources(&repo(), &mut files);
    let code: String = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let mut rows = 0;
    let mut named = 0;
    let mut missing = Vec::new();
    let mut bare = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| a | b | c |" splits into ["", a, b, c, ""]; the header and rule rows are skipped.
        if cells.len() < 5
            || cells[1].starts_with("---")
            || cells[1] == "action"
            || cells[1] == "asset"
        {
            continue;
        }
        rows += 1;
        let row = cells[1..cells.len() - 1].join(" | ");
        // The last column names the tests.
        let names = test_names(cells[cells.len() - 2]);
        if names.is_empty() {
            let said = row.contains("**Not defended**") || row.contains("as there");
            if !said {
                bare.push(row.clone());
            }
        }
        for n in names {
            named += 1;
            if !code.contains(&format!("fn {n}(")) {
                missing.push(n);
            }
        }
    }
    assert!(
        rows >= 30,
        "the threat model's tables were not found ({rows} rows)"
    );
    assert!(named >= 30, "too few test names found ({named})");
    assert!(
        missing.is_empty(),
        "tests named in docs/threat-model.md that do not exist: {missing:?}"
    );
    assert!(
        bare.is_empty(),
        "rows with neither a test nor **Not defended**: {bare:#?}"
    );
}
