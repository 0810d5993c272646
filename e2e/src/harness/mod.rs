//! Test support shared by every crate's tests: a real PostgreSQL, child processes
//! that die with the test, and the locations of built binaries and tool installs.

pub mod pg;
pub mod process;
pub mod tools;

pub use pg::{TestCluster, TestDb, test_db};
pub use process::{Child, free_port};
