//! The approval ledger's shell: the event log and its backends, the commands, the HTTP server,
//! the benchmarks and the CLI's subcommands. The pure core lives in the `projections` crate.
//!
//! # Layout
//! - [`log`]: the `EventLog` contract, what all backends share (`log::stamp`), and the backends:
//!   the embedded file log (segments, group commit), in-memory, PostgreSQL, KurrentDB.
//! - [`app`]: one server built from a configuration and a log (`ledger serve` and the tests).
//! - [`lease`]: which server of a store runs the background jobs.
//! - [`commands`]: load an item's stream, fold, `decide`, append with the expected version.
//! - [`verify`]: walks a data directory and recomputes every hash and link, naming the first bad one.
//! - [`inspect`]: prints events as JSON lines (`ledger log tail`, `ledger log show`).
//! - [`http`]: the HTTP API under `/v1` (`ledger serve`).
//! - [`projector`]: keeps the read models live from the log.
//! - [`principals`]: adding and revoking principals (API callers) as events.
//! - [`callbacks`]: answers POSTed to workflow callback URLs, signed and retried.
//! - [`callback_policy`]: where callbacks may go (public addresses, plus an allow-list).
//! - [`tls`]: TLS for those POSTs over HTTPS: the crypto provider and the trusted roots.
//! - [`scheduler`]: lapsed claims and passed deadlines become events.
//! - [`expiry_policy`]: the operator's expiry policies, by queue and kind (`--expiry-policy`).
//! - [`clock`]: the time commands get: the system's, or one tests move.
//! - [`bench`]: `ledger bench append` and `ledger bench read`; [`bench_http`]: `ledger bench http`;
//!   [`bench_proofs`]: `ledger bench proofs`.
//! - [`audit`]: checkpoints, proofs, decision records and compliance bundles (`ledger audit`).
//! - [`analytics`]: override rates and the other measures by slice, shared by `ledger analytics
//!   report` and the API, from item rows (the board's, or one streaming pass over the log).
//! - [`review_policy`]: the feedback loop: accuracy measurements, review policies, auto-approval.
//! - [`dataset`]: the review dataset export, a JSON line per decided item.
//! - [`demo`]: `ledger demo seed`, a realistic review history through the real domain.

pub mod analytics;
pub mod app;
pub mod audit;
pub mod bench;
pub mod bench_http;
pub mod bench_proofs;
pub mod callback_policy;
pub mod callbacks;
pub mod clock;
pub mod commands;
pub mod dataset;
pub mod demo;
pub mod expiry_policy;
pub mod http;
pub mod inspect;
pub mod lease;
pub mod log;
pub mod principals;
pub mod projector;
pub mod review_policy;
pub mod scheduler;
pub mod tls;
pub mod verify;
pub mod web;
