//! Analytics the server and the CLI share: override rates by slice (`projections::analytics`),
//! with the query parsed once and the answer shaped once, so that `ledger analytics report` and
//! `GET /v1/analytics/override-rates` give the same numbers.

use chrono::{DateTime, Utc};
use projections::analytics::{Dimension, OverrideRow, override_rates, row_json};
use projections::board::ReviewBoard;

/// What is asked: grouping and window.
#[derive(Debug, Clone, Default)]
pub struct OverrideQuery {
    pub by: Vec<Dimension>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

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
        };
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since >= until
        {
            return Err("since must be before until".into());
        }
        Ok(query)
    }

    /// The rows of `board`.
    pub fn rows(&self, board: &ReviewBoard) -> Vec<OverrideRow> {
        override_rates(board.items(), &self.by, self.since, self.until)
    }

    /// The answer as JSON: `{"by", "rows", "as_of_position"}`.
    pub fn answer(&self, rows: &[OverrideRow], as_of_position: u64) -> serde_json::Value {
        serde_json::json!({
            "by": self.by.iter().map(|dimension| dimension.name()).collect::<Vec<_>>(),
            "since": self.since,
            "until": self.until,
            "rows": rows.iter().map(|row| row_json(&self.by, row)).collect::<Vec<_>>(),
            "as_of_position": as_of_position,
        })
    }

    /// The calibration of each slice, as JSON: `{"by", "buckets", "slices": [{<keys>, "decided",
    /// "expected_calibration_error", "buckets": [...]}], "as_of_position"}`.
    pub fn calibration(
        &self,
        board: &ReviewBoard,
        buckets: usize,
        as_of_position: u64,
    ) -> serde_json::Value {
        let slices: Vec<serde_json::Value> = projections::analytics::calibration_by(
            board.items(),
            &self.by,
            buckets,
            self.since,
            self.until,
        )
        .into_iter()
        .map(|(keys, calibration)| {
            let mut object = serde_json::Map::new();
            for (dimension, key) in self.by.iter().zip(keys) {
                object.insert(dimension.name().to_owned(), key.into());
            }
            if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&calibration) {
                object.extend(fields);
            }
            serde_json::Value::Object(object)
        })
        .collect();
        serde_json::json!({
            "by": self.by.iter().map(|dimension| dimension.name()).collect::<Vec<_>>(),
            "since": self.since,
            "until": self.until,
            "buckets": buckets.clamp(1, 100),
            "slices": slices,
            "as_of_position": as_of_position,
        })
    }

    /// The rows as a terminal table or CSV.
    pub fn render(&self, rows: &[OverrideRow], csv: bool) -> String {
        let mut header: Vec<String> = self
            .by
            .iter()
            .map(|dimension| dimension.name().to_owned())
            .collect();
        header.extend(
            [
                "decided",
                "approved",
                "edited",
                "rejected",
                "override_rate",
                "95% low",
                "95% high",
                "expired",
            ]
            .map(str::to_owned),
        );
        let lines: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                let mut line = row.keys.clone();
                line.extend([
                    row.decided.to_string(),
                    row.approved.to_string(),
                    row.edited.to_string(),
                    row.rejected.to_string(),
                    format!("{:.4}", row.override_rate),
                    format!("{:.4}", row.override_rate_low),
                    format!("{:.4}", row.override_rate_high),
                    row.expired.to_string(),
                ]);
                line
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
        let numeric = self.by.len();
        let format_line = |line: &Vec<String>| {
            line.iter()
                .enumerate()
                .map(|(column, field)| {
                    if column >= numeric {
                        format!("{field:>width$}", width = widths[column])
                    } else {
                        format!("{field:<width$}", width = widths[column])
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
