//! Integration tests of hawser-gateway, against a real PostgreSQL (see
//! `hawser_e2e::harness::pg`) and real HTTP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod audit;
mod contract;
mod props;
mod store;
