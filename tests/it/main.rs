//! The integration suite: one binary (see Cargo.toml's `autotests = false`), one module a concern.
//! Everything runs against real files on disk, real child processes and a real socket.

mod analytics;
mod api;
mod audit;
mod audit_tamper;
mod browser;
mod cli;
mod commands;
mod crash;
mod dataset;
mod demo;
mod feedback;
mod format;
mod hardening_callbacks;
mod hardening_expiry;
mod hardening_health;
mod hardening_input;
mod hardening_net;
mod kurrent_log;
mod log;
mod multi_server;
mod notebooks;
mod openapi;
mod postgres;
mod postgres_log;
mod projections;
mod purity;
mod support;
mod tamper;
mod tls;
mod web;
