//! `ledger log tail` and `ledger log show`: events as JSON lines, for people and scripts.
//!
//! Both read through the log contract, on any backend; on the file log they open it read-only
//! (no lock), so they work beside a running server.

use crate::log::EventLog;
use anyhow::Context;
use std::io::Write;

/// Prints the last `count` events of the whole log, oldest first.
pub async fn tail(log: &dyn EventLog, count: u64, out: &mut dyn Write) -> anyhow::Result<()> {
    let head = log.head().await.context("reading the log's head")?;
    let mut position = head.saturating_sub(count);
    while position < head {
        let events = log
            .read_all(position, 4096)
            .await
            .context("reading the log")?;
        if events.is_empty() {
            break;
        }
        position += events.len() as u64;
        write_lines(&events, out)?;
    }
    Ok(())
}

/// Prints every event of one stream, in version order. A stream that does not exist is an error.
pub async fn show(log: &dyn EventLog, stream: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::ensure!(
        log.stream_version(stream)
            .await
            .context("reading the stream's version")?
            .is_some(),
        "no stream named {stream:?} in the log"
    );
    let mut version = 0;
    loop {
        let events = log
            .read_stream(stream, version, 4096)
            .await
            .context("reading the stream")?;
        if events.is_empty() {
            return Ok(());
        }
        version += events.len() as u64;
        write_lines(&events, out)?;
    }
}

fn write_lines(
    events: &[projections::event::RecordedEvent],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for event in events {
        serde_json::to_writer(&mut *out, event).context("encoding an event")?;
        out.write_all(b"\n").context("writing output")?;
    }
    Ok(())
}
