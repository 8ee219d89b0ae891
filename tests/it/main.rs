//! The integration suite: one binary (see Cargo.toml's `autotests = false`), one module a concern.
//! Everything runs against real files on disk, real child processes and a real socket.

mod api;
mod cli;
mod commands;
mod crash;
mod format;
mod log;
mod openapi;
mod projections;
mod purity;
mod support;
mod tamper;
mod tls;
