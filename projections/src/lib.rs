//! The pure core of the approval ledger: events and their hash, the review domain, and the folds
//! from events to read models.
//!
//! # Layout
//! - [`event`]: the event envelope, its canonical byte form and SHA-256 hash.
//! - [`item`]: the review domain for one item: commands, events, `decide` and `evolve`.
//! - [`analytics`]: override rates by slice with Wilson intervals, from items' states.
//! - [`audit`]: the Merkle tree over the log and the signed checkpoints stored in it.
//! - [`board`]: the review board: every item's state, the ordered queues, workloads, deadlines.
//! - [`delivery`]: decisions owed to callback URLs, and the attempts to deliver them.
//! - [`json`]: JSON kept as compact text in read models.
//! - [`merkle`]: the RFC 6962 Merkle tree over the log: roots, inclusion and consistency proofs.
//! - [`principal`]: who may call the ledger: principals, roles and token hashes, as events.
//! - [`time`]: RFC 3339 timestamps for serde, written without chrono's per-fragment cost.
//!
//! Nothing here does I/O, reads a clock, draws randomness or awaits: time and ids come in as
//! arguments. The test `core_is_pure` in the integration suite checks the dependency graph.

pub mod analytics;
pub mod audit;
pub mod board;
pub mod delivery;
pub mod event;
pub mod item;
mod item_json;
pub mod json;
pub mod merkle;
pub mod principal;
pub mod time;
