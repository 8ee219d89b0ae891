//! The analytics tables (`docs/analytics-tables.md`) as polars DataFrames and Parquet files: one
//! row per item, per event and per reviewer's verdict, from the rows the pure core folds from the
//! log (`projections::analytics::rows`), so that the notebooks read the numbers the CLI and the
//! API report. A crate of its own so that the server never links polars (ADR 0014).

use std::fs::File;
use std::path::Path;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use projections::analytics::ItemRow;
use projections::analytics::rows::{EventRow, VerdictRow};
use projections::item::{ItemStatus, Outcome};

pub use polars::prelude::{DataFrame, PolarsError};

/// The events written per Parquet row group: bounds the memory of an export, whatever the log's size.
pub const EVENTS_PER_BATCH: usize = 65_536;

/// Microseconds since the epoch.
fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A UTC timestamp column in microseconds. Made as a logical type over the integers rather than
/// cast: a cast to a zoned type needs polars' `timezones` feature (the whole time zone database)
/// and drops the zone without it.
fn datetime(name: &str, values: Vec<Option<i64>>) -> PolarsResult<Column> {
    Ok(Column::from(
        Series::new(name.into(), values).into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
    ))
}

fn column<T, Values>(name: &str, values: Values) -> Column
where
    Series: NamedFrom<Values, T>,
    T: ?Sized,
{
    Column::from(Series::new(name.into(), values))
}

pub fn status_name(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::NotSubmitted => "not_submitted",
        ItemStatus::Pending => "open",
        ItemStatus::ChangesRequested => "changes_requested",
        ItemStatus::Withdrawn => "withdrawn",
        ItemStatus::Approved
        | ItemStatus::EditedAndApproved
        | ItemStatus::Rejected
        | ItemStatus::ApprovedOnExpiry
        | ItemStatus::RejectedOnExpiry
        | ItemStatus::AutoApproved => "decided",
    }
}

/// A column of item ids as text, written into the column's buffer straight from each id (a
/// `String` per row was ten million allocations in an export).
fn id_column(name: &str, ids: impl ExactSizeIterator<Item = Option<uuid::Uuid>>) -> Column {
    let mut column = StringChunkedBuilder::new(name.into(), ids.len());
    let mut text = uuid::Uuid::encode_buffer();
    for id in ids {
        match id {
            Some(id) => column.append_value(id.hyphenated().encode_lower(&mut text)),
            None => column.append_null(),
        }
    }
    Column::from(column.finish().into_series())
}

/// The items table: one row per submitted item.
pub fn items_frame(rows: &[ItemRow]) -> PolarsResult<DataFrame> {
    let strs = |get: fn(&ItemRow) -> &str| rows.iter().map(get).collect::<Vec<&str>>();
    let u32s = |get: fn(&ItemRow) -> u32| rows.iter().map(get).collect::<Vec<u32>>();
    let bools = |get: fn(&ItemRow) -> bool| rows.iter().map(get).collect::<Vec<bool>>();
    let columns = vec![
        id_column("item_id", rows.iter().map(|row| Some(row.item_id))),
        column("queue", strs(|row| row.queue.as_str())),
        column("kind", strs(|row| row.kind.as_str())),
        column("model", strs(|row| row.model.as_str())),
        column("model_version", strs(|row| row.model_version.as_str())),
        column(
            "confidence",
            rows.iter().map(|row| row.confidence).collect::<Vec<_>>(),
        ),
        column("risk", strs(|row| row.risk.as_str())),
        column(
            "priority",
            rows.iter().map(|row| row.priority).collect::<Vec<i32>>(),
        ),
        column("submitted_by", strs(|row| row.submitted_by.as_str())),
        column("status", strs(|row| status_name(row.status))),
        column(
            "outcome",
            rows.iter()
                .map(|row| row.outcome.map(Outcome::as_str))
                .collect::<Vec<_>>(),
        ),
        column("human_decided", bools(ItemRow::human_decided)),
        column(
            "overridden",
            rows.iter().map(ItemRow::overridden).collect::<Vec<_>>(),
        ),
        column(
            "auto_approved",
            bools(|row| row.outcome == Some(Outcome::AutoApproved)),
        ),
        list_of_strings(
            "reviewers",
            rows.iter()
                .map(|row| row.reviewers.iter().map(|name| name.as_str()).collect()),
        )?,
        column(
            "reject_reason",
            rows.iter()
                .map(|row| row.reject_reason.as_deref())
                .collect::<Vec<_>>(),
        ),
        column(
            "edit_magnitude",
            rows.iter()
                .map(|row| row.edit_magnitude)
                .collect::<Vec<_>>(),
        ),
        column("revisions", u32s(|row| row.revisions)),
        column("change_requests", u32s(|row| row.change_requests)),
        column("escalations", u32s(|row| row.escalations)),
        column("approvals", u32s(|row| row.approvals)),
        column("required_approvals", u32s(|row| row.required_approvals)),
        datetime(
            "submitted_at",
            rows.iter()
                .map(|row| Some(micros(row.submitted_at)))
                .collect(),
        )?,
        datetime(
            "first_claimed_at",
            rows.iter()
                .map(|row| row.first_claimed_at.map(micros))
                .collect(),
        )?,
        datetime(
            "decided_at",
            rows.iter().map(|row| row.decided_at.map(micros)).collect(),
        )?,
        column(
            "time_to_claim_s",
            rows.iter().map(ItemRow::time_to_claim).collect::<Vec<_>>(),
        ),
        column(
            "time_to_decision_s",
            rows.iter()
                .map(ItemRow::time_to_decision)
                .collect::<Vec<_>>(),
        ),
        column("expired", bools(ItemRow::expired)),
        column("withdrawn", bools(ItemRow::withdrawn)),
    ];
    DataFrame::new(rows.len(), columns)
}

/// The verdicts table: one row per reviewer's judgment of an item's AI output.
pub fn verdicts_frame(rows: &[ItemRow]) -> PolarsResult<DataFrame> {
    let verdicts: Vec<(&ItemRow, &VerdictRow)> = rows
        .iter()
        .flat_map(|row| row.verdicts.iter().map(move |verdict| (row, verdict)))
        .collect();
    let strs = |get: for<'a> fn(&'a ItemRow, &'a VerdictRow) -> &'a str| {
        verdicts
            .iter()
            .map(|(row, verdict)| get(row, verdict))
            .collect::<Vec<&str>>()
    };
    let columns = vec![
        id_column("item_id", verdicts.iter().map(|(row, _)| Some(row.item_id))),
        column("reviewer", strs(|_, verdict| verdict.reviewer.as_str())),
        column("verdict", strs(|_, verdict| verdict.verdict.as_str())),
        datetime(
            "at",
            verdicts
                .iter()
                .map(|(_, verdict)| Some(micros(verdict.at)))
                .collect(),
        )?,
        column("queue", strs(|row, _| row.queue.as_str())),
        column("kind", strs(|row, _| row.kind.as_str())),
        column("model", strs(|row, _| row.model.as_str())),
        column("model_version", strs(|row, _| row.model_version.as_str())),
    ];
    DataFrame::new(verdicts.len(), columns)
}

/// The events table of `rows`.
pub fn events_frame(rows: &[EventRow]) -> PolarsResult<DataFrame> {
    let strs = |get: fn(&EventRow) -> &str| rows.iter().map(get).collect::<Vec<&str>>();
    let optional =
        |get: fn(&EventRow) -> Option<&str>| rows.iter().map(get).collect::<Vec<Option<&str>>>();
    // An item's stream is named after the item: spelled out here, in one reused buffer.
    let mut streams = StringChunkedBuilder::new("stream".into(), rows.len());
    let mut name = String::from("item-");
    let mut text = uuid::Uuid::encode_buffer();
    for row in rows {
        match (&row.stream, row.item_id) {
            (Some(stream), _) => streams.append_value(stream),
            (None, Some(id)) => {
                name.truncate("item-".len());
                name.push_str(id.hyphenated().encode_lower(&mut text));
                streams.append_value(&name);
            }
            (None, None) => streams.append_value(""),
        }
    }
    let columns = vec![
        column(
            "position",
            rows.iter().map(|row| row.position).collect::<Vec<u64>>(),
        ),
        Column::from(streams.finish().into_series()),
        id_column("item_id", rows.iter().map(|row| row.item_id)),
        column("event_type", strs(|row| row.event_type.as_str())),
        column("actor", strs(|row| row.actor.as_str())),
        datetime("at", rows.iter().map(|row| Some(micros(row.at))).collect())?,
        column("queue", optional(|row| row.queue.as_deref())),
        column("kind", optional(|row| row.kind.as_deref())),
    ];
    DataFrame::new(rows.len(), columns)
}

/// One record of the review dataset (`ledger export dataset --format parquet`), as the ledger
/// hands it over: JSON documents (context, outputs) as their JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRow {
    pub item_id: String,
    pub queue: String,
    pub kind: String,
    pub model: String,
    pub model_version: String,
    pub confidence: Option<f64>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    pub decision: String,
    pub reviewers: Vec<String>,
    pub context: String,
    pub ai_output: String,
    pub final_output: Option<String>,
    pub reason: Option<String>,
    pub notes: Vec<String>,
    pub revisions: u32,
    /// For an edit, the preference pair: the human's version chosen over the AI's.
    pub chosen: Option<String>,
    pub rejected: Option<String>,
}

/// A List(String) column, typed so even when empty.
fn list_of_strings<'a>(
    name: &str,
    lists: impl Iterator<Item = Vec<&'a str>>,
) -> PolarsResult<Column> {
    let series: Vec<Series> = lists
        .map(|list| Series::new(PlSmallStr::EMPTY, list))
        .collect();
    let empty = series.is_empty();
    let mut column = Series::new(name.into(), series);
    if empty {
        column = column.cast(&DataType::List(Box::new(DataType::String)))?;
    }
    Ok(Column::from(column))
}

/// The review dataset as a table, one row per decided item.
pub fn dataset_frame(rows: &[DatasetRow]) -> PolarsResult<DataFrame> {
    let strs = |get: fn(&DatasetRow) -> &str| rows.iter().map(get).collect::<Vec<&str>>();
    let optional = |get: fn(&DatasetRow) -> Option<&str>| rows.iter().map(get).collect::<Vec<_>>();
    let columns = vec![
        column("item_id", strs(|row| &row.item_id)),
        column("queue", strs(|row| &row.queue)),
        column("kind", strs(|row| &row.kind)),
        column("model", strs(|row| &row.model)),
        column("model_version", strs(|row| &row.model_version)),
        column(
            "confidence",
            rows.iter().map(|row| row.confidence).collect::<Vec<_>>(),
        ),
        datetime(
            "submitted_at",
            rows.iter()
                .map(|row| Some(micros(row.submitted_at)))
                .collect(),
        )?,
        datetime(
            "decided_at",
            rows.iter()
                .map(|row| Some(micros(row.decided_at)))
                .collect(),
        )?,
        column("decision", strs(|row| &row.decision)),
        list_of_strings(
            "reviewers",
            rows.iter()
                .map(|row| row.reviewers.iter().map(String::as_str).collect()),
        )?,
        column("context", strs(|row| &row.context)),
        column("ai_output", strs(|row| &row.ai_output)),
        column("final_output", optional(|row| row.final_output.as_deref())),
        column("reason", optional(|row| row.reason.as_deref())),
        list_of_strings(
            "notes",
            rows.iter()
                .map(|row| row.notes.iter().map(String::as_str).collect()),
        )?,
        column(
            "revisions",
            rows.iter().map(|row| row.revisions).collect::<Vec<u32>>(),
        ),
        column("chosen", optional(|row| row.chosen.as_deref())),
        column("rejected", optional(|row| row.rejected.as_deref())),
    ];
    DataFrame::new(rows.len(), columns)
}

/// Writes `frame` to `path` as Parquet (LZ4, as [`EventsWriter`]), replacing the file.
pub fn write_parquet(path: &Path, frame: &mut DataFrame) -> PolarsResult<u64> {
    let file = File::create(path)?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Lz4Raw)
        .finish(frame)
}

/// A table written as the log is read, one row group per batch the caller hands over (about
/// [`EVENTS_PER_BATCH`] events, or [`ITEMS_PER_BATCH`] items), so that an export holds a batch
/// at a time, never the whole log. LZ4 rather than polars' default zstd: compressing ten million
/// rows with zstd took a third of the export's time, for files a third smaller.
pub struct TableWriter<R> {
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    file: Option<File>,
    /// The table's rows written (a verdicts table has several, or none, per item given).
    written: u64,
    frame_of: fn(&[R]) -> PolarsResult<DataFrame>,
}

/// The events table's writer.
pub type EventsWriter = TableWriter<EventRow>;

/// The items written per row group of the items and verdicts tables.
pub const ITEMS_PER_BATCH: usize = 32_768;

impl<R> std::fmt::Debug for TableWriter<R> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TableWriter")
            .field("written", &self.written)
            .finish()
    }
}

impl TableWriter<EventRow> {
    /// The events table, `events.parquet`.
    pub fn create(path: &Path) -> PolarsResult<EventsWriter> {
        TableWriter::with_frames(path, events_frame)
    }
}

impl TableWriter<ItemRow> {
    /// The items table, `items.parquet`.
    pub fn items(path: &Path) -> PolarsResult<TableWriter<ItemRow>> {
        TableWriter::with_frames(path, items_frame)
    }

    /// The verdicts table, `verdicts.parquet`, from the items' rows.
    pub fn verdicts(path: &Path) -> PolarsResult<TableWriter<ItemRow>> {
        TableWriter::with_frames(path, verdicts_frame)
    }
}

impl<R> TableWriter<R> {
    /// A table at `path` whose row groups `frame_of` makes of each batch.
    pub fn with_frames(
        path: &Path,
        frame_of: fn(&[R]) -> PolarsResult<DataFrame>,
    ) -> PolarsResult<TableWriter<R>> {
        Ok(TableWriter {
            writer: None,
            file: Some(File::create(path)?),
            written: 0,
            frame_of,
        })
    }

    /// Writes `rows` as one row group (the first batch, even empty, fixes the schema).
    pub fn write(&mut self, rows: &[R]) -> PolarsResult<()> {
        if rows.is_empty() && self.writer.is_some() {
            return Ok(());
        }
        let frame = (self.frame_of)(rows)?;
        if self.writer.is_none() {
            let file = self.file.take().expect("the file before the first batch");
            self.writer = Some(
                ParquetWriter::new(file)
                    .with_compression(ParquetCompression::Lz4Raw)
                    .batched(frame.schema())?,
            );
        }
        if frame.height() > 0 {
            self.writer
                .as_mut()
                .expect("made just above")
                .write_batch(&frame)?;
        }
        self.written += frame.height() as u64;
        Ok(())
    }

    /// Writes the file's footer; returns the rows written.
    pub fn finish(mut self) -> PolarsResult<u64> {
        self.write(&[])?;
        self.writer
            .as_ref()
            .expect("write makes the writer")
            .finish()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::analytics::rows::Verdict;
    use projections::item::Risk;

    fn row(id: u128, outcome: Option<Outcome>) -> ItemRow {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        ItemRow {
            item_id: uuid::Uuid::from_u128(id),
            queue: "support".into(),
            kind: "reply".into(),
            model: "m".into(),
            model_version: "1".into(),
            confidence: Some(0.9),
            risk: Risk::Normal,
            priority: 1,
            submitted_by: "bot".into(),
            status: outcome.map_or(ItemStatus::Pending, ItemStatus::from),
            outcome,
            reviewers: vec!["rita".into(), "sam".into()],
            reject_reason: None,
            edit_magnitude: None,
            revisions: 1,
            change_requests: 0,
            escalations: 0,
            approvals: 2,
            required_approvals: 2,
            submitted_at: at,
            first_claimed_at: Some(at + chrono::Duration::seconds(30)),
            decided_at: outcome.map(|_| at + chrono::Duration::seconds(90)),
            verdicts: vec![VerdictRow {
                reviewer: "rita".into(),
                verdict: Verdict::Accept,
                at,
            }],
        }
    }

    #[test]
    fn the_items_table_has_the_documented_columns_and_types() {
        let rows = vec![row(1, Some(Outcome::Approved)), row(2, None)];
        let frame = items_frame(&rows).unwrap();
        assert_eq!(frame.height(), 2);
        let schema = frame.schema();
        assert_eq!(
            schema.get("reviewers"),
            Some(&DataType::List(Box::new(DataType::String)))
        );
        assert_eq!(
            schema.get("decided_at"),
            Some(&DataType::Datetime(
                TimeUnit::Microseconds,
                Some(TimeZone::UTC)
            ))
        );
        assert_eq!(schema.get("revisions"), Some(&DataType::UInt32));
        let overridden = frame.column("overridden").unwrap();
        assert_eq!(overridden.null_count(), 1);
        let time = frame
            .column("time_to_decision_s")
            .unwrap()
            .f64()
            .unwrap()
            .get(0);
        assert_eq!(time, Some(90.0));
        // Empty tables keep their types.
        let empty = items_frame(&[]).unwrap();
        assert_eq!(empty.schema(), frame.schema());
    }

    #[test]
    fn tables_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            row(1, Some(Outcome::Rejected)),
            row(2, Some(Outcome::AutoApproved)),
        ];
        let mut frame = items_frame(&rows).unwrap();
        let path = dir.path().join("items.parquet");
        write_parquet(&path, &mut frame).unwrap();
        let read = ParquetReader::new(File::open(&path).unwrap())
            .finish()
            .unwrap();
        assert!(read.equals_missing(&frame));
        let verdicts = verdicts_frame(&rows).unwrap();
        assert_eq!(verdicts.height(), 2);
        // Events in several row groups come back whole and in order.
        let path = dir.path().join("events.parquet");
        let mut writer = EventsWriter::create(&path).unwrap();
        let total = 2 * EVENTS_PER_BATCH as u64 + 10;
        let rows: Vec<EventRow> = (0..total)
            .map(|position| EventRow {
                position,
                stream: (position % 2 == 0).then(|| "principals".to_owned()),
                item_id: (position % 2 == 1).then(|| uuid::Uuid::from_u128(7)),
                event_type: "CommentAdded".into(),
                actor: "rita".into(),
                at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                queue: None,
                kind: None,
            })
            .collect();
        for batch in rows.chunks(EVENTS_PER_BATCH) {
            writer.write(batch).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), total);
        let read = ParquetReader::new(File::open(&path).unwrap())
            .finish()
            .unwrap();
        assert_eq!(read.height() as u64, total);
        let positions = read.column("position").unwrap().u64().unwrap();
        assert_eq!(positions.get(total as usize - 1), Some(total - 1));
        let streams = read.column("stream").unwrap().str().unwrap();
        assert_eq!(streams.get(0), Some("principals"));
        assert_eq!(
            streams.get(1),
            Some("item-00000000-0000-0000-0000-000000000007")
        );
    }
}
