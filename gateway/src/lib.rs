//! Hawser: a Kubernetes-native, multi-replica MCP gateway.
//!
//! Modules follow a request's path: [`config`] → [`store`] (shared state) →
//! [`upstream`] (dialling MCP servers) → [`view`] (what clients see) → [`front`] (the
//! MCP endpoints clients use). [`server`] wires them up.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod crypto;
pub mod front;
pub mod jsonrpc;
pub mod server;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod view;
