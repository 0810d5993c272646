//! Hawser: a Kubernetes-native, multi-replica MCP gateway.
//!
//! Modules follow a request's path: [`config`] → [`store`] (shared state) →
//! [`upstream`] (dialling MCP servers) → [`front`] (the MCP endpoints clients use),
//! with [`admin`], [`audit`] and [`metrics`] beside them. [`server`] wires them up.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod crypto;
pub mod server;
pub mod store;
pub mod telemetry;
