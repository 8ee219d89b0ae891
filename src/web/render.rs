//! Safe rendering for the pages: an AI output as plain text, as Markdown (with raw HTML shown as
//! text and only http(s) and mailto links kept) or as a JSON tree; times and countdowns; and the
//! dashboard's SVG charts (bars with interval whiskers, a line with its interval band).

use maud::{Markup, PreEscaped, html};
use serde_json::Value;

/// A time as people read it (UTC), in a `<time>` element that carries the exact instant.
pub fn time(at: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
            (at.format("%Y-%m-%d %H:%M UTC"))
        }
    }
}

/// A due time as a countdown that the page's script keeps current (and marks when close).
pub fn countdown(
    due: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    match due {
        None => html! { span.muted { "none" } },
        Some(due) => {
            let left = due - now;
            let class = if left <= chrono::Duration::zero() {
                "due overdue"
            } else if left <= chrono::Duration::minutes(15) {
                "due due-soon"
            } else {
                "due"
            };
            html! {
                time class=(class) data-due=(due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    datetime=(due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
                    (describe_left(left))
                }
            }
        }
    }
}

/// "in 3h 12m", "in 42s", "overdue 5m".
pub fn describe_left(left: chrono::Duration) -> String {
    let (prefix, seconds) = if left < chrono::Duration::zero() {
        ("overdue ", -left.num_seconds())
    } else {
        ("in ", left.num_seconds())
    };
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    let text = if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {}s", seconds % 60)
    } else {
        format!("{seconds}s")
    };
    format!("{prefix}{text}")
}

/// Markdown to HTML with nothing of the source able to run: raw HTML is shown as text, images
/// become links, and link targets other than http(s), mailto and relative ones are dropped.
pub fn markdown(source: &str) -> Markup {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};
    let safe_url = |url: &str| {
        let lower = url.trim().to_ascii_lowercase();
        lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("mailto:")
            || !lower.contains(':')
    };
    let events = Parser::new_ext(
        source,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH,
    )
    .filter_map(|event| match event {
        Event::Html(text) | Event::InlineHtml(text) => Some(Event::Text(text)),
        // An image's alt text stays, as text; its address is shown, never fetched.
        Event::Start(Tag::Image { dest_url, .. }) => {
            Some(Event::Text(CowStr::from(format!("[image: {dest_url}] "))))
        }
        Event::End(TagEnd::Image) => None,
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Some(Event::Start(Tag::Link {
            link_type,
            dest_url: if safe_url(&dest_url) {
                dest_url
            } else {
                CowStr::from("#unsafe-link-removed")
            },
            title,
            id,
        })),
        other => Some(other),
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    PreEscaped(out)
}

/// A JSON value as a tree: objects and arrays as nested lists under disclosure elements,
/// scalars as escaped text.
pub fn json_tree(value: &Value) -> Markup {
    html! { div.json-tree { (json_node(value, 0)) } }
}

fn json_node(value: &Value, depth: usize) -> Markup {
    match value {
        Value::Object(map) if !map.is_empty() => html! {
            details open[depth < 3] {
                summary { "{…} " span.muted { (map.len()) " keys" } }
                ul {
                    @for (key, value) in map {
                        li { span.json-key { (key) } ": " (json_node(value, depth + 1)) }
                    }
                }
            }
        },
        Value::Array(items) if !items.is_empty() => html! {
            details open[depth < 3] {
                summary { "[…] " span.muted { (items.len()) " items" } }
                ol start="0" {
                    @for value in items {
                        li { (json_node(value, depth + 1)) }
                    }
                }
            }
        },
        Value::Object(_) => html! { span.json-scalar { "{}" } },
        Value::Array(_) => html! { span.json-scalar { "[]" } },
        Value::String(text) => html! { span.json-string { "\"" (text) "\"" } },
        other => html! { span.json-scalar { (other.to_string()) } },
    }
}

/// An AI output (JSON text): a string as Markdown with its plain text beside it, anything else
/// as a tree with its JSON text beside it.
pub fn output(json_text: &str) -> Markup {
    match serde_json::from_str::<Value>(json_text) {
        Ok(Value::String(text)) => html! {
            div.rendered.markdown { (markdown(&text)) }
            details.plain {
                summary { "Plain text" }
                pre.output-text { (text) }
            }
        },
        Ok(value) => html! {
            (json_tree(&value))
            details.plain {
                summary { "JSON text" }
                pre.output-text { (serde_json::to_string_pretty(&value).unwrap_or_default()) }
            }
        },
        Err(_) => html! { pre.output-text { (json_text) } },
    }
}

/// The text an editor starts from for an output: a string's own text, else pretty JSON; and
/// whether it is JSON.
pub fn editable(json_text: &str) -> (String, bool) {
    match serde_json::from_str::<Value>(json_text) {
        Ok(Value::String(text)) => (text, false),
        Ok(value) => (
            serde_json::to_string_pretty(&value).unwrap_or_default(),
            true,
        ),
        Err(_) => (json_text.to_owned(), true),
    }
}

/// A line diff of `before` and `after`, as a table a screen reader can follow (each line says
/// whether it was removed or added).
pub fn diff(before: &str, after: &str) -> Markup {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(before, after);
    html! {
        div.diff role="group" aria-label="Changes from the AI's output" {
            @for change in diff.iter_all_changes() {
                @let (class, sign, label) = match change.tag() {
                    ChangeTag::Delete => ("del", "−", "removed: "),
                    ChangeTag::Insert => ("ins", "+", "added: "),
                    ChangeTag::Equal => ("same", " ", ""),
                };
                div class=(class) {
                    span.sign aria-hidden="true" { (sign) }
                    span.visually-hidden { (label) }
                    code { (change.value().trim_end_matches('\n')) }
                }
            }
        }
    }
}

/// One bar of a chart: its label, value and interval (all rates in 0..=1), and its sample.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub sample: u64,
}

impl Bar {
    /// A slice's override rate and its interval, labelled `label`.
    pub fn of(row: &projections::analytics::OverrideRow, label: String) -> Bar {
        Bar {
            label,
            value: row.override_rate,
            low: row.override_rate_low,
            high: row.override_rate_high,
            sample: row.decided,
        }
    }
}

/// Horizontal bars with interval whiskers, on a 0–100% axis.
pub fn bar_chart(title: &str, bars: &[Bar]) -> Markup {
    let (label_width, plot_width, row) = (220.0, 420.0, 26.0);
    let height = row * bars.len() as f64 + 30.0;
    let x = |rate: f64| label_width + rate.clamp(0.0, 1.0) * plot_width;
    let id = chart_id(title);
    html! {
        svg.chart viewBox={ "0 0 " (label_width + plot_width + 70.0) " " (height) } role="img" aria-labelledby=(id) {
            title id=(id) { (title) }
            @for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
                line x1=(x(tick)) x2=(x(tick)) y1="0" y2=(height - 20.0) class="grid" {}
                text x=(x(tick)) y=(height - 5.0) text-anchor="middle" class="axis" { (format!("{:.0}%", tick * 100.0)) }
            }
            @for (index, bar) in bars.iter().enumerate() {
                @let y = index as f64 * row;
                text x=(label_width - 6.0) y=(y + 17.0) text-anchor="end" class="label" { (bar.label) }
                rect x=(label_width) y=(y + 5.0) width=((bar.value.clamp(0.0, 1.0) * plot_width).max(1.0)) height="16" class="bar" {}
                line x1=(x(bar.low)) x2=(x(bar.high)) y1=(y + 13.0) y2=(y + 13.0) class="whisker" {}
                line x1=(x(bar.low)) x2=(x(bar.low)) y1=(y + 8.0) y2=(y + 18.0) class="whisker" {}
                line x1=(x(bar.high)) x2=(x(bar.high)) y1=(y + 8.0) y2=(y + 18.0) class="whisker" {}
                text x=(label_width + plot_width + 6.0) y=(y + 17.0) class="value" { (format!("{:.1}%", bar.value * 100.0)) }
            }
        }
    }
}

/// A line of rates over time with its interval as a band.
pub fn line_chart(title: &str, points: &[Bar]) -> Markup {
    let (left, width, height, bottom) = (40.0, 560.0, 180.0, 40.0);
    let step = if points.len() > 1 {
        width / (points.len() - 1) as f64
    } else {
        0.0
    };
    let x = |index: usize| left + index as f64 * step;
    let y = |rate: f64| height - rate.clamp(0.0, 1.0) * (height - 10.0);
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(index, point)| format!("{:.1},{:.1}", x(index), y(point.value)))
        .collect();
    let band: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(index, point)| format!("{:.1},{:.1}", x(index), y(point.high)))
        .chain(
            points
                .iter()
                .enumerate()
                .rev()
                .map(|(index, point)| format!("{:.1},{:.1}", x(index), y(point.low))),
        )
        .collect();
    let id = chart_id(title);
    html! {
        svg.chart viewBox={ "0 0 " (left + width + 30.0) " " (height + bottom) } role="img" aria-labelledby=(id) {
            title id=(id) { (title) }
            @for tick in [0.0, 0.5, 1.0] {
                line x1=(left) x2=(left + width) y1=(y(tick)) y2=(y(tick)) class="grid" {}
                text x=(left - 4.0) y=(y(tick) + 4.0) text-anchor="end" class="axis" { (format!("{:.0}%", tick * 100.0)) }
            }
            @if !points.is_empty() {
                polygon points=(band.join(" ")) class="band" {}
                polyline points=(line.join(" ")) class="line" {}
            }
            @for (index, point) in points.iter().enumerate() {
                circle cx=(x(index)) cy=(y(point.value)) r="3" class="dot" {}
                @if points.len() <= 12 || index % (points.len() / 8).max(1) == 0 {
                    text x=(x(index)) y=(height + 16.0) text-anchor="middle" class="axis" { (point.label) }
                }
            }
        }
    }
}

fn chart_id(title: &str) -> String {
    let slug: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("chart-{slug}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_shows_raw_html_as_text_and_drops_script_links() {
        let out = markdown(
            "Hello <script>alert(1)</script> and <img src=x onerror=alert(1)>\n\n[x](javascript:alert(1)) [y](https://example.com)",
        )
        .into_string();
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(!out.contains("javascript:"), "{out}");
        assert!(out.contains("href=\"https://example.com\""), "{out}");
    }

    #[test]
    fn a_json_tree_escapes_keys_and_values() {
        let value = serde_json::json!({"<b>": "<script>alert(1)</script>", "n": [1, 2]});
        let out = json_tree(&value).into_string();
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }

    #[test]
    fn countdowns_read_naturally() {
        assert_eq!(describe_left(chrono::Duration::seconds(42)), "in 42s");
        assert_eq!(
            describe_left(chrono::Duration::seconds(3 * 3600 + 720)),
            "in 3h 12m"
        );
        assert_eq!(
            describe_left(chrono::Duration::seconds(-300)),
            "overdue 5m 0s"
        );
    }
}
