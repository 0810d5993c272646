//! Integration tests of hawser-gateway, against a real PostgreSQL (see
//! `hawser_e2e::harness::pg`) and real HTTP.

mod audit;
mod store;
