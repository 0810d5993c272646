//! Multi-process tests: real gateway processes, the fixture upstream, real MCP
//! clients (the official Python SDK, the conformance suite's TypeScript client).

mod audit;
mod chart;
mod conformance;
mod console;
mod corpus;
mod eras;
mod faults;
mod identity;
mod oauth;
mod observability;
mod per_user;
mod policy;
mod protocol;
mod python_client;
mod replicas;
mod resource_updates;
mod revisions;
mod tasks;
mod traces;
mod transports;
