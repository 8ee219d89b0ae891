//! Analytics the server and the CLI share: every measure of `projections::analytics`, computed
//! from item rows (from the server's review board, or from one streaming pass over the log), with
//! the query parsed once and the answer shaped once, so that `ledger analytics report` and
//! `GET /v1/analytics/…` give the same numbers.

use chrono::{DateTime, Utc};
use projections::analytics::measures::{
    agreement, drift, edit_magnitudes, rejection_reasons, review_times,
};
use projections::analytics::rows::EventRow;
use projections::analytics::{
    Dimension, ItemRow, OverrideRow, RowFold, calibration_by, override_rates, row_json,
};
use projections::board::ReviewBoard;
use projections::item::ItemEvent;
use serde_json::{Value, json};

use crate::commands::item_of_stream;
use crate::log::{EventLog, LogError};

/// One measure, as named in the CLI (`--metric`) and the API's paths (`/v1/analytics/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    OverrideRates,
    EditMagnitude,
    ReviewTimes,
    RejectionReasons,
    Agreement,
    Drift,
    Calibration,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::OverrideRates => "override-rates",
            Metric::EditMagnitude => "edit-magnitude",
            Metric::ReviewTimes => "review-times",
            Metric::RejectionReasons => "rejection-reasons",
            Metric::Agreement => "agreement",
            Metric::Drift => "drift",
            Metric::Calibration => "calibration",
        }
    }

    /// The columns of a row after the slice's keys, in the order a table shows them.
    fn columns(self) -> &'static [&'static str] {
        match self {
            Metric::OverrideRates => &[
                "decided",
                "approved",
                "edited",
                "rejected",
                "override_rate",
                "override_rate_low",
                "override_rate_high",
                "expired",
                "auto_approved",
            ],
            Metric::EditMagnitude => &[
                "decided",
                "edited",
                "edit_magnitude_mean",
                "edit_magnitude_p50",
                "edit_magnitude_p90",
                "edit_magnitude_max",
            ],
            Metric::ReviewTimes => &[
                "decided",
                "claimed",
                "time_to_claim_p50_s",
                "time_to_claim_p90_s",
                "time_to_claim_p99_s",
                "time_to_decision_p50_s",
                "time_to_decision_p90_s",
                "time_to_decision_p99_s",
            ],
            Metric::RejectionReasons => {
                &["reason", "rejections", "share", "share_low", "share_high"]
            }
            Metric::Agreement => &[
                "items",
                "ratings",
                "observed_agreement",
                "expected_agreement",
                "kappa",
            ],
            Metric::Drift => &[
                "baseline_decided",
                "baseline_override_rate",
                "latest_decided",
                "latest_override_rate",
                "latest_override_rate_low",
                "latest_override_rate_high",
                "z",
                "p_value",
                "drifted",
            ],
            Metric::Calibration => &["decided", "expected_calibration_error"],
        }
    }
}

/// What is asked: grouping, window, and the parameters of some measures.
#[derive(Debug, Clone)]
pub struct OverrideQuery {
    pub by: Vec<Dimension>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Calibration: equal-width confidence buckets.
    pub buckets: usize,
    /// Drift: the latest window's length in days.
    pub window_days: u32,
    /// Drift: the decided items each side needs for a slice to be tested.
    pub minimum_sample: u64,
}

impl Default for OverrideQuery {
    fn default() -> Self {
        OverrideQuery {
            by: Vec::new(),
            since: None,
            until: None,
            buckets: 10,
            window_days: 7,
            minimum_sample: 20,
        }
    }
}

/// The drift test's significance level (before the Bonferroni correction).
pub const DRIFT_SIGNIFICANCE: f64 = 0.05;

impl OverrideQuery {
    /// A query from its textual parts (`by` a comma-separated list, times RFC 3339 or a date).
    pub fn parse(
        by: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<OverrideQuery, String> {
        let time = |text: Option<&str>, name: &str| -> Result<Option<DateTime<Utc>>, String> {
            let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
                return Ok(None);
            };
            if let Ok(time) = DateTime::parse_from_rfc3339(text) {
                return Ok(Some(time.with_timezone(&Utc)));
            }
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|date| Some(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc()))
                .map_err(|_| {
                    format!("{name} {text:?} is neither an RFC 3339 time nor a date (YYYY-MM-DD)")
                })
        };
        let query = OverrideQuery {
            by: Dimension::parse_list(by.unwrap_or(""))?,
            since: time(since, "since")?,
            until: time(until, "until")?,
            ..OverrideQuery::default()
        };
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since >= until
        {
            return Err("since must be before until".into());
        }
        Ok(query)
    }

    /// Sets the drift test's window and minimum sample, refusing nonsense.
    pub fn with_drift(
        mut self,
        window_days: Option<u32>,
        minimum: Option<u64>,
    ) -> Result<Self, String> {
        if let Some(days) = window_days {
            if !(1..=366).contains(&days) {
                return Err("window_days must be between 1 and 366".into());
            }
            self.window_days = days;
        }
        if let Some(minimum) = minimum {
            if minimum == 0 {
                return Err("min_sample must be at least 1".into());
            }
            self.minimum_sample = minimum;
        }
        Ok(self)
    }

    /// The override-rate rows of `rows`.
    pub fn override_rows(&self, rows: &[ItemRow]) -> Vec<OverrideRow> {
        override_rates(rows.iter(), &self.by, self.since, self.until)
    }

    /// `metric` over `rows` as JSON: `{"metric", "by", "since", "until", "rows": [{<keys>, …}],
    /// "as_of_position"}`, with the drift test's and the calibration's parameters where they apply.
    /// Refuses a grouping the metric cannot take.
    pub fn answer(
        &self,
        metric: Metric,
        rows: &[ItemRow],
        as_of_position: u64,
    ) -> Result<Value, String> {
        let by = &self.by;
        let (since, until) = (self.since, self.until);
        let mut extra = serde_json::Map::new();
        let answer_rows: Vec<Value> = match metric {
            Metric::OverrideRates => {
                return Ok(self.answer_override_rates(
                    &override_rates(rows.iter(), by, since, until),
                    as_of_position,
                ));
            }
            Metric::EditMagnitude => edit_magnitudes(rows.iter(), by, since, until)
                .iter()
                .map(|row| row_json(by, &row.keys, row))
                .collect(),
            Metric::ReviewTimes => review_times(rows.iter(), by, since, until)
                .iter()
                .map(|row| row_json(by, &row.keys, row))
                .collect(),
            Metric::RejectionReasons => rejection_reasons(rows.iter(), by, since, until)
                .iter()
                .map(|row| row_json(by, &row.keys, row))
                .collect(),
            Metric::Agreement => {
                if by.contains(&Dimension::Reviewer) {
                    return Err(
                        "agreement is between reviewers: it cannot be sliced by reviewer".into(),
                    );
                }
                agreement(rows.iter(), by, since, until)
                    .iter()
                    .map(|row| row_json(by, &row.keys, row))
                    .collect()
            }
            Metric::Drift => {
                if by
                    .iter()
                    .any(|dimension| matches!(dimension, Dimension::Day | Dimension::Week))
                {
                    return Err(
                        "drift compares time windows: it cannot be sliced by day or week".into(),
                    );
                }
                let found = drift(
                    rows.iter(),
                    by,
                    since,
                    until,
                    chrono::Duration::days(i64::from(self.window_days)),
                    self.minimum_sample,
                    DRIFT_SIGNIFICANCE,
                );
                if let Ok(Value::Object(fields)) = serde_json::to_value(&found) {
                    extra.extend(fields);
                }
                extra.insert("window_days".into(), self.window_days.into());
                found
                    .rows
                    .iter()
                    .map(|row| row_json(by, &row.keys, row))
                    .collect()
            }
            Metric::Calibration => {
                let buckets = self.buckets.clamp(1, 100);
                extra.insert("buckets".into(), buckets.into());
                calibration_by(rows.iter(), by, buckets, since, until)
                    .into_iter()
                    .map(|(keys, calibration)| row_json(by, &keys, &calibration))
                    .collect()
            }
        };
        Ok(self.wrap(metric, extra, answer_rows, as_of_position))
    }

    /// The answer of override rates counted already (`override_rates_of_store`), shaped as
    /// [`OverrideQuery::answer`] shapes them.
    pub fn answer_override_rates(
        &self,
        rows: &[projections::analytics::OverrideRow],
        as_of_position: u64,
    ) -> Value {
        let answer_rows = rows
            .iter()
            .map(|row| row_json(&self.by, &row.keys, row))
            .collect();
        self.wrap(
            Metric::OverrideRates,
            serde_json::Map::new(),
            answer_rows,
            as_of_position,
        )
    }

    /// An answer's members around its rows.
    fn wrap(
        &self,
        metric: Metric,
        extra: serde_json::Map<String, Value>,
        answer_rows: Vec<Value>,
        as_of_position: u64,
    ) -> Value {
        let (by, since, until) = (&self.by, self.since, self.until);
        let mut answer = serde_json::Map::new();
        answer.insert("metric".into(), metric.name().into());
        answer.insert(
            "by".into(),
            json!(
                by.iter()
                    .map(|dimension| dimension.name())
                    .collect::<Vec<_>>()
            ),
        );
        answer.insert("since".into(), json!(since));
        answer.insert("until".into(), json!(until));
        answer.extend(extra);
        if metric == Metric::Calibration {
            // Each row is one slice's calibration.
            answer.insert("slices".into(), Value::Array(answer_rows));
        } else {
            answer.insert("rows".into(), Value::Array(answer_rows));
        }
        answer.insert("as_of_position".into(), as_of_position.into());
        Value::Object(answer)
    }

    /// An answer's rows as a terminal table or CSV: the slice's keys, then the metric's columns.
    pub fn render(&self, metric: Metric, answer: &Value, csv: bool) -> String {
        let mut header: Vec<String> = self
            .by
            .iter()
            .map(|dimension| dimension.name().to_owned())
            .collect();
        header.extend(metric.columns().iter().map(|column| (*column).to_owned()));
        let rows = answer
            .get(if metric == Metric::Calibration {
                "slices"
            } else {
                "rows"
            })
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let lines: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                header
                    .iter()
                    .map(|column| match row.get(column) {
                        None | Some(Value::Null) => {
                            if csv {
                                String::new()
                            } else {
                                "-".into()
                            }
                        }
                        Some(Value::String(text)) => text.clone(),
                        Some(Value::Number(number)) if number.is_f64() => {
                            format!("{:.4}", number.as_f64().unwrap_or(f64::NAN))
                        }
                        Some(other) => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        if csv {
            let quote = |field: &str| {
                if field.contains([',', '"', '\n']) {
                    format!("\"{}\"", field.replace('"', "\"\""))
                } else {
                    field.to_owned()
                }
            };
            return std::iter::once(&header)
                .chain(&lines)
                .map(|line| {
                    line.iter()
                        .map(|field| quote(field))
                        .collect::<Vec<_>>()
                        .join(",")
                        + "\n"
                })
                .collect();
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|column| {
                std::iter::once(&header)
                    .chain(&lines)
                    .map(|line| line[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        // Keys and the one text column (a rejection's reason) to the left, numbers to the right.
        let left = |column: usize| column < self.by.len() || header[column] == "reason";
        let format_line = |line: &Vec<String>| {
            line.iter()
                .enumerate()
                .map(|(column, field)| {
                    if left(column) {
                        format!("{field:<width$}", width = widths[column])
                    } else {
                        format!("{field:>width$}", width = widths[column])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
                + "\n"
        };
        let mut out = format_line(&header);
        out += &(widths
            .iter()
            .map(|width| "-".repeat(*width))
            .collect::<Vec<_>>()
            .join("  ")
            + "\n");
        for line in &lines {
            out += &format_line(line);
        }
        out
    }
}

/// What a streaming pass makes besides the rows' counts and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsWanted {
    /// Each event's row, for the events table.
    pub events: bool,
    /// Each edit's magnitude (an edit distance: the costliest part of a row).
    pub edit_magnitude: bool,
    /// Only what a decision's row holds: the submission, escalations (the queue), the decision
    /// or withdrawal. Claims, approvals short of a decision, edits, rejections' reasons, change
    /// requests and revisions are passed over undecoded, so rows lack their first claim, reject
    /// reason, counts and verdicts; measures of outcomes by slice and time (override rates,
    /// drift, calibration) read nothing else.
    pub decisions_only: bool,
}

impl RowsWanted {
    pub const ALL: RowsWanted = RowsWanted {
        events: true,
        edit_magnitude: true,
        decisions_only: false,
    };

    /// What `metric` reads.
    pub fn for_metric(metric: Metric) -> RowsWanted {
        RowsWanted {
            events: false,
            edit_magnitude: metric == Metric::EditMagnitude,
            decisions_only: matches!(
                metric,
                Metric::OverrideRates | Metric::Drift | Metric::Calibration
            ),
        }
    }
}

/// The rows of every submitted item on the review board (with edit magnitudes if asked: they
/// cost more than the rest of the rows together, under the read models' lock).
pub fn rows_of_board(board: &ReviewBoard, edit_magnitude: bool) -> Vec<ItemRow> {
    board
        .items()
        .filter(|item| item.is_submitted())
        .map(|item| ItemRow::of_item(item, edit_magnitude))
        .collect()
}

/// Folds events, in log order, into item rows, and keeps each event's row for the events table
/// when `events` is wanted (taken by the caller after each batch).
struct Scanner {
    fold: RowFold,
    events: Option<Vec<EventRow>>,
    decisions_only: bool,
}

impl Scanner {
    fn new(wanted: RowsWanted) -> Scanner {
        let fold = if wanted.events {
            RowFold::keeping_slices()
        } else {
            RowFold::default()
        };
        Scanner {
            fold: if wanted.edit_magnitude {
                fold
            } else {
                fold.without_edit_magnitude()
            },
            events: wanted.events.then(Vec::new),
            decisions_only: wanted.decisions_only && !wanted.events,
        }
    }

    /// Whether an event of type `event_type` can be passed over without decoding: it changes
    /// nothing a row holds (comments, claims released or lapsed), or nothing a decision's row
    /// holds when only those are wanted; never when each event's row is wanted.
    fn passes_over(&self, event_type: &[u8]) -> bool {
        if self.events.is_some() {
            return false;
        }
        match event_type {
            b"CommentAdded" | b"ClaimReleased" | b"ClaimExpired" => true,
            b"ItemClaimed" | b"OutputApproved" | b"OutputEdited" | b"OutputRejected"
            | b"ChangesRequested" | b"OutputRevised" => self.decisions_only,
            _ => false,
        }
    }

    fn visit(
        &mut self,
        position: u64,
        stream: &str,
        event_type: &str,
        actor: &str,
        recorded_at: DateTime<Utc>,
        data: &str,
    ) {
        if self.passes_over(event_type.as_bytes()) {
            return;
        }
        let item_id = item_of_stream(stream);
        let decoded = item_id.and_then(|id| {
            ItemEvent::from_type_and_json(event_type, data)
                .ok()
                .map(|decoded| (id, decoded))
        });
        let (at, slice) = match &decoded {
            Some((id, item_event)) => (item_event.occurred_at(), self.fold.apply(*id, item_event)),
            None => (recorded_at, None),
        };
        let Some(events) = &mut self.events else {
            return;
        };
        let (queue, kind) = slice.map_or((None, None), |(queue, kind)| (Some(queue), Some(kind)));
        events.push(EventRow {
            position,
            stream: item_id.is_none().then(|| stream.to_owned()),
            item_id,
            event_type: event_type.into(),
            actor: actor.into(),
            at,
            queue,
            kind,
        });
    }

    /// [`Scanner::visit`] for a scanner of decisions only, from a stored record's payload: only
    /// its stream, type and data are read, and of a submission's data only what a decision's row
    /// holds ([`projections::analytics::rows::decision_event_of_json`]).
    fn visit_decision(&mut self, payload: &[u8], event_type: &[u8]) -> Result<(), &'static str> {
        use projections::event::{data_of_payload, stream_of_payload};
        let (Some(stream), Some(data)) = (stream_of_payload(payload), data_of_payload(payload))
        else {
            return Err("the payload is truncated or of another format");
        };
        let (Ok(stream), Ok(event_type)) =
            (std::str::from_utf8(stream), std::str::from_utf8(event_type))
        else {
            return Err("its stream or type is not UTF-8");
        };
        if let Some(item_id) = item_of_stream(stream)
            && let Ok(event) =
                projections::analytics::rows::decision_event_of_json(event_type, data)
        {
            self.fold.apply(item_id, &event);
        }
        Ok(())
    }

    /// The event rows made since the last call; the next batch's start with as much room (rows
    /// are large, and growing copies them).
    fn take_events(&mut self) -> Vec<EventRow> {
        self.events
            .as_mut()
            .map(|events| {
                let room = events.len();
                std::mem::replace(events, Vec::with_capacity(room))
            })
            .unwrap_or_default()
    }
}

/// The rows of every item of the log, in one streaming pass through the log contract that keeps
/// only unfinished items' states; `on_event` sees every event's row (for the events table) and
/// `progress` the position reached. Returns the rows and the position read up to.
pub async fn rows_of_log(
    log: &dyn EventLog,
    mut on_event: impl FnMut(EventRow),
    mut progress: impl FnMut(u64),
) -> Result<(Vec<ItemRow>, u64), LogError> {
    let mut scanner = Scanner::new(RowsWanted::ALL);
    let head = log.head().await?;
    let mut next = 0;
    while next < head {
        let events = log.read_all(next, 8192).await?;
        let Some(last) = events.last() else {
            break;
        };
        next = last.position + 1;
        for event in &events {
            scanner.visit(
                event.position,
                &event.stream,
                &event.event_type,
                &event.actor,
                event.recorded_at,
                &event.data,
            );
        }
        scanner.take_events().into_iter().for_each(&mut on_event);
        progress(next);
    }
    Ok((scanner.fold.finish(), next))
}

/// One chunk of whole records, as the segment reader hands it to the fold's workers.
struct Batch {
    bytes: Vec<u8>,
    /// Each record's offset in `bytes`, and the worker whose items it is about.
    frames: Vec<(usize, u16)>,
    /// The position after the chunk's last record.
    next: u64,
    /// Where the buffer goes back once every worker is done with it: reused, its pages stay
    /// mapped (fresh 8 MiB buffers cost a quarter of the time in the kernel zeroing pages).
    pool: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        let _ = self.pool.send(std::mem::take(&mut self.bytes));
    }
}

/// The worker that folds an item's events: all of one stream's events go to one worker, in
/// order (FNV-1a of the stream name's last 16 bytes, which tell item streams apart by their
/// ids' random part; the reader deals records without parsing them).
fn shard_of(stream: &[u8], workers: usize) -> u16 {
    let tail = &stream[stream.len().saturating_sub(16)..];
    let hash =
        projections::analytics::fnv1a(projections::analytics::FNV1A_START, tail.iter().copied());
    (hash % workers as u64) as u16
}

/// [`rows_of_log`] for the file log, straight from its segments: the file backend's contract
/// (`FileLog::open`) checks every hash and indexes every stream and event id in memory, which a
/// read of everything does not need (at 10 million events the index alone is gigabytes). Reads
/// the segments in order as they are when it reaches them, up to a torn tail a running server's
/// append may leave; hashes are `ledger verify`'s job, and a damaged record is an error.
///
/// A pipeline on every core: this thread's reader splits chunks of records and deals each
/// record to the worker of its item; each worker folds its own items' events (decoding is most
/// of the cost) and hands back the event rows of each chunk, which are passed to `on_event` in
/// log order. Rows come back in no particular order.
pub fn rows_of_segments(
    dir: &std::path::Path,
    on_event: impl FnMut(EventRow),
    wanted: RowsWanted,
    progress: impl FnMut(u64),
) -> anyhow::Result<(Vec<ItemRow>, u64)> {
    scan_segments(dir, on_event, None, wanted, None, progress).map(|(rows, _, next)| (rows, next))
}

/// The override rates of `query` over the file log's segments, counted by each fold worker as
/// its items close, so that no item's row is kept (at ten million events the rows take more
/// than a gigabyte, and writing them more time than counting them): the same numbers as
/// [`OverrideQuery::override_rows`] over [`rows_of_segments`].
pub fn override_rates_of_segments(
    dir: &std::path::Path,
    query: &OverrideQuery,
) -> anyhow::Result<(Vec<projections::analytics::OverrideRow>, u64)> {
    let tally = projections::analytics::OverrideTally::new(&query.by, query.since, query.until);
    let wanted = RowsWanted::for_metric(Metric::OverrideRates);
    let (_, tally, next) = scan_segments(dir, |_| {}, None, wanted, Some(tally), |_| {})?;
    Ok((tally.map(|tally| tally.rows()).unwrap_or_default(), next))
}

/// The override rates of `query` over the store named: counted straight from the file log's
/// segments, or from every item's row read through the log contract.
pub async fn override_rates_of_store(
    store: &crate::log::Store,
    query: &OverrideQuery,
) -> anyhow::Result<(Vec<projections::analytics::OverrideRow>, u64)> {
    if let Some(dir) = store.data_dir() {
        return override_rates_of_segments(dir, query);
    }
    let log = crate::log::open_read_only(store).await?;
    let (rows, next) = rows_of_log(log.as_ref(), |_| {}, |_| {}).await?;
    Ok((query.override_rows(&rows), next))
}

/// [`rows_of_segments`], or with `tally` the rows counted into it as they are made and not
/// kept (the rows returned are then empty).
fn scan_segments(
    dir: &std::path::Path,
    mut on_event: impl FnMut(EventRow),
    mut on_rows: Option<&mut dyn FnMut(Vec<ItemRow>)>,
    wanted: RowsWanted,
    tally: Option<projections::analytics::OverrideTally>,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<(
    Vec<ItemRow>,
    Option<projections::analytics::OverrideTally>,
    u64,
)> {
    use crate::log::segment::{
        Chunk, ChunkReader, FrameAt, Tail, classify_tail, frame_at, list_segments,
    };
    use anyhow::Context;
    use std::sync::{Arc, mpsc};
    if !dir.exists() {
        return Ok((Vec::new(), tally, 0));
    }
    let segments = list_segments(dir).with_context(|| format!("listing {}", dir.display()))?;
    // Room for the rows up front (an item takes a kilobyte or more of log; untouched room costs
    // no memory), so that no worker's rows are copied as they grow, nor when they are joined.
    let expected_rows = segments
        .iter()
        .filter_map(|(_, path)| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum::<u64>()
        / 800;
    let streaming = on_rows.is_some();
    let workers = std::thread::available_parallelism()
        .map_or(2, |cores| cores.get())
        .clamp(1, 16);
    std::thread::scope(|scope| {
        let mut to_workers = Vec::new();
        let mut from_workers = Vec::new();
        let mut handles = Vec::new();
        for worker in 0..workers {
            let (batches, inbox) = mpsc::sync_channel::<Arc<Batch>>(4);
            let (outbox, answers) = mpsc::sync_channel::<anyhow::Result<Answer>>(4);
            to_workers.push(batches);
            from_workers.push(answers);
            let mut tally = tally.clone();
            handles.push(scope.spawn(move || {
                let mut scanner = Scanner::new(wanted);
                if tally.is_none() && !streaming {
                    scanner.fold.reserve(expected_rows as usize);
                }
                scanner
                    .fold
                    .reserve_closed(expected_rows as usize / workers);
                for batch in inbox {
                    if let Some(tally) = &mut tally {
                        for row in scanner.fold.take_rows() {
                            tally.add(&row);
                        }
                    }
                    // Streamed: the rows of the items closed by the previous batch go with
                    // this one's answer.
                    let closed = if streaming {
                        scanner.fold.take_rows()
                    } else {
                        Vec::new()
                    };
                    let mut failed = None;
                    for &(start, shard) in &batch.frames {
                        if usize::from(shard) != worker {
                            continue;
                        }
                        let FrameAt::Frame(frame) = frame_at(&batch.bytes[start..]) else {
                            unreachable!("the reader deals whole frames");
                        };
                        // Passed over before the rest of the record is even read.
                        let event_type = projections::event::type_of_payload(frame.payload);
                        if event_type.is_some_and(|event_type| scanner.passes_over(event_type)) {
                            continue;
                        }
                        if scanner.decisions_only {
                            let visited = event_type
                                .ok_or("the payload is truncated or of another format")
                                .and_then(|event_type| {
                                    scanner.visit_decision(frame.payload, event_type)
                                });
                            if let Err(reason) = visited {
                                failed = Some(anyhow::anyhow!(
                                    "the record at position {} is damaged: {reason} (see `ledger verify`)",
                                    frame.position
                                ));
                                break;
                            }
                            continue;
                        }
                        match frame.fields() {
                            Ok(fields) => scanner.visit(
                                frame.position,
                                fields.stream,
                                fields.event_type,
                                fields.actor,
                                fields.recorded_at(),
                                fields.data,
                            ),
                            Err(reason) => {
                                failed = Some(anyhow::anyhow!(
                                    "the record at position {} is damaged: {reason} (see `ledger verify`)",
                                    frame.position
                                ));
                                break;
                            }
                        }
                    }
                    let answer = match failed {
                        Some(error) => Err(error),
                        None => Ok(Answer {
                            events: scanner.take_events(),
                            closed,
                            next: batch.next,
                        }),
                    };
                    if outbox.send(answer).is_err() {
                        break;
                    }
                }
                let rows = scanner.fold.finish();
                match tally {
                    Some(mut tally) => {
                        for row in &rows {
                            tally.add(row);
                        }
                        (Vec::new(), Some(tally))
                    }
                    None => (rows, None),
                }
            }));
        }
        let (pool, recycled) = mpsc::channel::<Vec<u8>>();
        let reader = scope.spawn(move || -> anyhow::Result<()> {
            let mut next = 0u64;
            let mut starts = Vec::new();
            let count = segments.len();
            'segments: for (number, (_, path)) in segments.into_iter().enumerate() {
                let is_last = number + 1 == count;
                let (reader, _header) = ChunkReader::open(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                // Chunks the size of a core's cache: this thread walks each chunk twice (for
                // its records, then to deal them) after reading it.
                let mut reader = reader.with_chunk_bytes(1 << 20);
                loop {
                    let mut bytes = recycled.try_recv().unwrap_or_default();
                    let Some(chunk) = reader
                        .next_chunk(&mut bytes, &mut starts)
                        .with_context(|| format!("reading {}", path.display()))?
                    else {
                        break;
                    };
                    if let Chunk::Rest { .. } = chunk {
                        // Bytes that do not begin with a whole record, to the end of the file: a
                        // write in progress or preallocated space ends the log, as the file log
                        // itself judges its last segment; anything else is damage.
                        if !is_last || classify_tail(&bytes, next) == Tail::Damage {
                            anyhow::bail!(
                                "{} is damaged after position {next} (see `ledger verify`)",
                                path.display()
                            );
                        }
                        break 'segments;
                    }
                    let mut frames = Vec::with_capacity(starts.len());
                    for &start in &starts {
                        let FrameAt::Frame(frame) = frame_at(&bytes[start..]) else {
                            unreachable!("offsets of whole frames");
                        };
                        // A record that does not decode goes to the first worker, which reports it.
                        let shard = projections::event::stream_of_payload(frame.payload)
                            .map_or(0, |stream| shard_of(stream, workers));
                        frames.push((start, shard));
                        next = frame.position + 1;
                    }
                    let batch = Arc::new(Batch {
                        bytes,
                        frames,
                        next,
                        pool: pool.clone(),
                    });
                    for worker in &to_workers {
                        if worker.send(batch.clone()).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(())
        });
        // Each chunk's event rows from every worker, merged in log order.
        let mut next = 0;
        let mut runs = Vec::with_capacity(workers);
        'chunks: loop {
            runs.clear();
            for answers in &from_workers {
                match answers.recv() {
                    Ok(answer) => {
                        let answer = answer?;
                        if !answer.events.is_empty() {
                            runs.push(answer.events.into_iter().peekable());
                        }
                        next = answer.next;
                        if let Some(on_rows) = &mut on_rows
                            && !answer.closed.is_empty()
                        {
                            on_rows(answer.closed);
                        }
                    }
                    Err(_) => break 'chunks,
                }
            }
            // Each worker's rows are in log order: merged by taking the lowest position at the
            // head of a run, each row moved once (rows are large; gathering and sorting them
            // moved each several times).
            loop {
                let lowest = runs
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(run, rows)| rows.peek().map(|row| (row.position, run)))
                    .min();
                let Some((_, run)) = lowest else { break };
                on_event(runs[run].next().expect("the run has a head"));
            }
            progress(next);
        }
        drop(from_workers);
        reader.join().expect("the segment reader does not panic")?;
        let mut rows = Vec::new();
        let mut tally = None;
        for handle in handles {
            let (mut part, part_tally) = handle.join().expect("a fold worker does not panic");
            if rows.is_empty() {
                rows = part;
            } else {
                rows.append(&mut part);
            }
            match (&mut tally, part_tally) {
                (None, part_tally) => tally = part_tally,
                (Some(tally), Some(part_tally)) => tally.merge(part_tally),
                (Some(_), None) => {}
            }
        }
        if let Some(on_rows) = &mut on_rows {
            on_rows(std::mem::take(&mut rows));
        }
        Ok((rows, tally, next))
    })
}

/// What a fold worker hands back for each batch.
struct Answer {
    /// The batch's event rows (when wanted).
    events: Vec<EventRow>,
    /// The rows of items closed so far and not yet handed back (when streaming rows).
    closed: Vec<ItemRow>,
    /// The position after the batch.
    next: u64,
}

/// [`rows_of_store`] with the item rows handed to `on_rows` in batches as items close (and the
/// unfinished items' at the end) rather than kept: an export writes them as they come. Returns
/// the position read up to.
pub async fn stream_rows_of_store(
    store: &crate::log::Store,
    on_event: impl FnMut(EventRow),
    on_rows: &mut dyn FnMut(Vec<ItemRow>),
    wanted: RowsWanted,
    progress: impl FnMut(u64),
) -> anyhow::Result<u64> {
    if let Some(dir) = store.data_dir() {
        return scan_segments(dir, on_event, Some(on_rows), wanted, None, progress)
            .map(|(_, _, next)| next);
    }
    let (rows, next) = rows_of_store(store, on_event, wanted, progress).await?;
    on_rows(rows);
    Ok(next)
}

/// Every item's row, from the store named: the file log's segments directly, any other backend
/// through the log contract.
pub async fn rows_of_store(
    store: &crate::log::Store,
    on_event: impl FnMut(EventRow),
    wanted: RowsWanted,
    progress: impl FnMut(u64),
) -> anyhow::Result<(Vec<ItemRow>, u64)> {
    if let Some(dir) = store.data_dir() {
        return rows_of_segments(dir, on_event, wanted, progress);
    }
    let log = crate::log::open_read_only(store).await?;
    Ok(rows_of_log(log.as_ref(), on_event, progress).await?)
}
