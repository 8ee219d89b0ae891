//! The core crate's purity: no async runtime, web or data-frame crate in its dependency graph, and
//! no I/O, clock or randomness in its source.

use std::process::Command;

#[test]
fn core_depends_on_no_runtime_io_or_dataframe_crate() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "projections",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        tree.contains("projections"),
        "unexpected cargo tree output: {tree}"
    );
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for forbidden in [
        "tokio",
        "axum",
        "hyper",
        "mio",
        "polars",
        "eventstore",
        "reqwest",
        "getrandom",
        "rand",
        "async-trait",
        "futures",
    ] {
        assert!(
            !crates.contains(&forbidden),
            "the pure core depends on {forbidden}:\n{tree}"
        );
    }
}

#[test]
fn core_source_does_no_io_and_reads_no_clock() {
    let source_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("projections/src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&source_dir).expect("projections/src") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        for forbidden in [
            "std::fs",
            "std::net",
            "std::io::",
            "std::process",
            "std::thread",
            "std::env",
            "SystemTime",
            "Instant::now",
            "Utc::now",
            "Local::now",
            "async fn",
            ".await",
            "new_v4",
            "new_v7",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}: the core must stay pure",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the core's source files, found {checked}"
    );
}
