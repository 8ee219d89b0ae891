//! Override rates: on seeded histories with known true rates, the reported 95% intervals cover
//! the truth as often as they should; the rates are the counts; the CLI and the HTTP endpoint
//! give the same numbers.

use crate::api::spawn_app_over;
use ledger::analytics::OverrideQuery;
use ledger::log::{EventLog, FileLog, FileLogOptions, MemoryLog};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;

fn until() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_intervals_cover_the_simulated_truth_and_rates_are_the_counts() {
    let query = OverrideQuery::parse(Some("model,model_version,kind"), None, None).unwrap();
    let (mut slices, mut covered) = (0, 0);
    for seed in 1..=6 {
        let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new());
        let report = ledger::demo::seed(log.clone(), 3000, seed, 6, until())
            .await
            .unwrap();
        let models = ledger::projector::rebuild(log.as_ref()).await.unwrap();
        // The server's rows (from its board) and the CLI's (one streaming pass) are the same.
        let mut from_board = ledger::analytics::rows_of_board(&models.board, true);
        let (mut streamed, _) = ledger::analytics::rows_of_log(log.as_ref(), |_| {}, |_| {})
            .await
            .unwrap();
        from_board.sort_by_key(|row| row.item_id);
        streamed.sort_by_key(|row| row.item_id);
        assert_eq!(streamed.len(), report.items as usize);
        assert!(
            streamed == from_board,
            "the streamed rows differ from the board's"
        );
        let rows = query.override_rows(&streamed);
        assert_eq!(rows.len(), report.truth.len(), "every slice has decisions");
        for row in &rows {
            assert_eq!(row.overridden, row.edited + row.rejected);
            assert_eq!(row.decided, row.approved + row.overridden);
            assert_eq!(
                row.override_rate,
                row.overridden as f64 / row.decided as f64
            );
            assert!(row.override_rate_low <= row.override_rate);
            assert!(row.override_rate <= row.override_rate_high);
            let truth = report
                .truth
                .iter()
                .find(|truth| {
                    [&truth.model, &truth.model_version, &truth.kind]
                        .into_iter()
                        .eq(row.keys.iter())
                })
                .expect("a simulated slice")
                .override_rate;
            slices += 1;
            if (row.override_rate_low..=row.override_rate_high).contains(&truth) {
                covered += 1;
            }
        }
    }
    // 95% intervals miss the truth in 5% of slices on average. Over 96 slices, more than 11
    // misses has a probability under 1% if they are calibrated (binomial, p = 0.05): the bound
    // tests calibration without failing by chance; the figure is printed.
    let misses = slices - covered;
    println!(
        "the 95% intervals covered the true rate in {covered} of {slices} slices ({:.1}%)",
        100.0 * covered as f64 / slices as f64
    );
    assert_eq!(slices, 96);
    assert!(
        misses <= 11,
        "{misses} of {slices} intervals missed the truth"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_http_endpoint_give_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(FileLog::open(dir.path(), FileLogOptions::default(), "analytics test").unwrap());
    let app = spawn_app_over(
        log.clone(),
        crate::api::loopback_callbacks(),
        |state| state,
        None,
    )
    .await;
    ledger::demo::seed(log.clone(), 1500, 5, 6, until())
        .await
        .unwrap();
    for (by, since) in [
        ("model,kind", ""),
        ("queue", "&since=2026-11-01"),
        ("reviewer,week", ""),
        ("", ""),
    ] {
        let path = format!("/v1/analytics/override-rates?by={by}{since}");
        let (status, served) = app.call("GET", &path, &app.auditor, None).await;
        assert_eq!(status, StatusCode::OK, "{served}");
        let mut args = vec![
            "--data-dir".to_owned(),
            dir.path().display().to_string(),
            "analytics".to_owned(),
            "report".to_owned(),
            "--by".to_owned(),
            by.to_owned(),
            "--format".to_owned(),
            "json".to_owned(),
        ];
        if let Some(date) = since.strip_prefix("&since=") {
            args.extend(["--since".to_owned(), date.to_owned()]);
        }
        let printed: Value = serde_json::from_slice(&crate::support::ledger_stdout(&args)).unwrap();
        assert_eq!(printed["rows"], served["rows"], "by {by:?}");
        assert!(!served["rows"].as_array().unwrap().is_empty());
        assert_eq!(printed["by"], served["by"]);
    }
    // Every other measure: the same rows from both.
    for (metric, by, extra) in [
        ("edit-magnitude", "model,kind", ""),
        ("review-times", "queue", ""),
        ("rejection-reasons", "kind", ""),
        ("agreement", "", ""),
        ("drift", "model,kind", "&window_days=14&min_sample=10"),
    ] {
        let path = format!("/v1/analytics/{metric}?by={by}{extra}");
        let (status, served) = app.call("GET", &path, &app.auditor, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {served}");
        let mut args: Vec<String> = [
            "--data-dir",
            &dir.path().display().to_string(),
            "analytics",
            "report",
            "--metric",
            metric,
            "--by",
            by,
            "--format",
            "json",
        ]
        .map(str::to_owned)
        .into();
        if metric == "drift" {
            args.extend(["--window-days", "14", "--min-sample", "10"].map(str::to_owned));
        }
        let printed: Value = serde_json::from_slice(&crate::support::ledger_stdout(&args)).unwrap();
        assert_eq!(printed["rows"], served["rows"], "{metric} by {by:?}");
        assert!(!served["rows"].as_array().unwrap().is_empty(), "{metric}");
    }
    // The demo's four-eyes items sometimes split: agreement is measured on them.
    let (_, agreement) = app
        .call("GET", "/v1/analytics/agreement", &app.auditor, None)
        .await;
    let row = &agreement["rows"][0];
    assert!(row["items"].as_u64().unwrap() > 10, "{agreement}");
    let kappa = row["kappa"].as_f64().expect("a kappa");
    assert!((-1.0..=1.0).contains(&kappa), "{agreement}");
    // Parameters of one measure are refused by another, and nonsense slicing is 422.
    for path in [
        "/v1/analytics/override-rates?window_days=3",
        "/v1/analytics/agreement?by=reviewer",
        "/v1/analytics/drift?by=week",
        "/v1/analytics/drift?window_days=0",
    ] {
        let (status, body) = app.call("GET", path, &app.auditor, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
    }
    // Calibration: the same from both, and the demo's AI states lower confidence when wrong.
    let (status, served) = app
        .call(
            "GET",
            "/v1/analytics/calibration?by=model&buckets=5",
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{served}");
    let data_dir = dir.path().display().to_string();
    let printed: Value = serde_json::from_slice(&crate::support::ledger_stdout([
        "--data-dir",
        &data_dir,
        "analytics",
        "calibration",
        "--by",
        "model",
        "--buckets",
        "5",
    ]))
    .unwrap();
    assert_eq!(printed["slices"], served["slices"]);
    for slice in served["slices"].as_array().unwrap() {
        let buckets = slice["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 5);
        let decided: u64 = buckets
            .iter()
            .map(|bucket| bucket["decided"].as_u64().unwrap())
            .sum();
        assert_eq!(decided, slice["decided"].as_u64().unwrap());
        let ece = slice["expected_calibration_error"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ece));
    }
    // Bad queries are 422; other roles may not read analytics.
    let (status, _) = app
        .call(
            "GET",
            "/v1/analytics/override-rates?by=colour",
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .call(
            "GET",
            "/v1/analytics/override-rates?since=2026-12-01&until=2026-11-01",
            &app.auditor,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .call("GET", "/v1/analytics/override-rates", &app.rita, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An analyst reads analytics, and no item.
    let analyst = app
        .add_principal(serde_json::json!({"name": "ana", "role": "analyst"}))
        .await;
    let (status, rates) = app
        .call(
            "GET",
            "/v1/analytics/override-rates?by=kind",
            &analyst,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rates}");
    let id = ledger::demo::item_id(5, 0);
    let (status, _) = app
        .call("GET", &format!("/v1/items/{id}"), &analyst, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.call("GET", "/v1/queue", &analyst, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The CLI reads the file log's segments directly: a record cut by a write in progress at the
/// end of the last segment is left out, as the log itself would; a damaged record is an error
/// naming `ledger verify`, never a silently smaller report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_segment_reader_stops_at_a_torn_tail_and_refuses_damage() {
    use ledger::log::segment::{FrameAt, SEGMENT_HEADER_LEN, frame_at, list_segments};
    let dir = tempfile::tempdir().unwrap();
    {
        let log: Arc<dyn EventLog> = Arc::new(
            FileLog::open(dir.path(), FileLogOptions::default(), "analytics test").unwrap(),
        );
        ledger::demo::seed(log, 200, 9, 2, until()).await.unwrap();
    }
    let data = dir.path().display().to_string();
    let report = |data: &str| {
        crate::support::run_ledger([
            "--data-dir",
            data,
            "analytics",
            "report",
            "--format",
            "json",
        ])
    };
    let (code, intact) = report(&data);
    assert_eq!(code, 0, "{intact}");
    let (_, segment) = list_segments(dir.path()).unwrap().pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    // The first frames' offsets.
    let mut offsets = vec![SEGMENT_HEADER_LEN];
    while offsets.len() < 4 {
        let FrameAt::Frame(frame) = frame_at(&bytes[*offsets.last().unwrap()..]) else {
            panic!("a whole frame");
        };
        offsets.push(offsets.last().unwrap() + frame.len);
    }
    // A torn tail: the start of the record that would follow the last one, cut.
    let (mut at, mut next) = (SEGMENT_HEADER_LEN, 0);
    while let FrameAt::Frame(frame) = frame_at(&bytes[at..]) {
        next = frame.position + 1;
        at += frame.len;
    }
    let mut cut = bytes[offsets[1]..offsets[1] + 30].to_vec();
    cut[8..16].copy_from_slice(&next.to_be_bytes());
    let mut torn = bytes.clone();
    torn.extend_from_slice(&cut);
    std::fs::write(&segment, &torn).unwrap();
    let (code, after_tear) = report(&data);
    assert_eq!(code, 0, "{after_tear}");
    let rows = |printed: &str| -> Value {
        let start = printed.find('{').unwrap();
        let answer: Value = serde_json::Deserializer::from_str(&printed[start..])
            .into_iter()
            .next()
            .unwrap()
            .unwrap();
        answer["rows"].clone()
    };
    assert_eq!(rows(&after_tear), rows(&intact));
    // Damage in the middle: a record's magic overwritten.
    let mut damaged = bytes;
    damaged[offsets[2]..offsets[2] + 4].copy_from_slice(b"XXXX");
    std::fs::write(&segment, &damaged).unwrap();
    let (code, printed) = report(&data);
    assert_ne!(code, 0, "{printed}");
    assert!(printed.contains("ledger verify"), "{printed}");
}
