//! The Parquet export and the notebooks: the tables Python polars reads back give the numbers the
//! CLI reports, and both notebooks run on a freshly seeded ledger's export, rendering their plots.
//! Built with `--features parquet` (the test command's build); without it, the export must say
//! how to get it.

#[cfg(feature = "parquet")]
#[test]
fn the_parquet_tables_give_the_cli_numbers_and_the_notebooks_run_on_them() {
    use crate::support::{ledger_stdout, notebook_python};
    use serde_json::Value;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("parquet");
    let data_arg = data.display().to_string();
    let seeded: Value = serde_json::from_slice(&ledger_stdout([
        "--data-dir",
        &data_arg,
        "demo",
        "seed",
        "--items",
        "2000",
        "--seed",
        "3",
        "--until",
        "2026-11-30T12:00:00Z",
    ]))
    .unwrap();
    ledger_stdout([
        "--data-dir",
        &data_arg,
        "export",
        "parquet",
        &out.display().to_string(),
    ]);
    let dataset = dir.path().join("dataset.parquet");
    ledger_stdout([
        "--data-dir",
        &data_arg,
        "export",
        "dataset",
        "--format",
        "parquet",
        &dataset.display().to_string(),
    ]);
    let cli: Value = serde_json::from_slice(&ledger_stdout([
        "--data-dir",
        &data_arg,
        "analytics",
        "report",
        "--by",
        "model,kind",
        "--format",
        "json",
    ]))
    .unwrap();
    // Python polars reads the files back and computes the override rates by model and kind.
    let script = r#"
import json, sys
import polars as pl
root = sys.argv[1]
items = pl.read_parquet(f"{root}/items.parquet")
events = pl.read_parquet(f"{root}/events.parquet")
verdicts = pl.read_parquet(f"{root}/verdicts.parquet")
rates = (items.filter(pl.col("human_decided"))
    .group_by(["model", "kind"])
    .agg(pl.len().alias("decided"), pl.col("overridden").sum().alias("overridden"))
    .with_columns((pl.col("overridden") / pl.col("decided")).alias("override_rate"))
    .sort(["model", "kind"]))
item_events = events.filter(pl.col("item_id").is_not_null()).height
dataset = pl.read_parquet(sys.argv[2])
decided = items.filter(pl.col("decided_at").is_not_null()).height
assert dataset.height == decided, (dataset.height, decided)
assert dataset["item_id"].n_unique() == decided
edits = dataset.filter(pl.col("decision") == "edited_and_approved")
assert edits.height > 0 and edits["chosen"].null_count() == 0 and edits["rejected"].null_count() == 0
assert (edits["chosen"] != edits["rejected"]).all()
print(json.dumps({"rows": rates.to_dicts(), "items": items.height, "events": events.height,
                  "item_events": item_events,
                  "verdicts": verdicts.height,
                  "auto_approved": int(items["auto_approved"].sum())}))
"#;
    let python = notebook_python();
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            script,
            &out.display().to_string(),
            &dataset.display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["items"], seeded["items"], "{read}");
    // Every item event is a row; the demo's principals are events too.
    assert_eq!(read["item_events"], seeded["events"], "{read}");
    assert!(read["events"].as_u64() > seeded["events"].as_u64());
    assert!(read["verdicts"].as_u64().unwrap() > 0);
    let (cli_rows, py_rows) = (
        cli["rows"].as_array().unwrap(),
        read["rows"].as_array().unwrap(),
    );
    assert_eq!(cli_rows.len(), py_rows.len());
    for (cli, py) in cli_rows.iter().zip(py_rows) {
        for field in ["model", "kind", "decided", "overridden"] {
            assert_eq!(cli[field], py[field], "{field}: {cli} vs {py}");
        }
        let (a, b) = (
            cli["override_rate"].as_f64().unwrap(),
            py["override_rate"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // Both notebooks run top to bottom on the export and render their plots.
    let executed = dir.path().join("executed");
    let runner = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/run.py");
    let output = std::process::Command::new(&python)
        .arg(&runner)
        .arg(&out)
        .arg(&executed)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    println!("{printed}");
    assert!(output.status.success(), "the notebooks failed:\n{printed}");
    for notebook in ["override_rates.ipynb", "reviewer_workload.ipynb"] {
        let text = std::fs::read_to_string(executed.join(notebook)).unwrap();
        assert!(text.contains("image/png"), "{notebook} rendered no plot");
    }
}

#[cfg(not(feature = "parquet"))]
#[test]
fn without_the_parquet_feature_the_export_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("parquet");
    let (code, printed) = crate::support::run_ledger([
        "--data-dir",
        &dir.path().display().to_string(),
        "export",
        "parquet",
        &out.display().to_string(),
    ]);
    println!(
        "NOTE: built without `--features parquet`: the Parquet export and the notebooks are not tested in this run (the test command builds with it)"
    );
    assert_ne!(code, 0);
    assert!(printed.contains("--features parquet"), "{printed}");
    assert!(!out.exists(), "nothing written");
}
