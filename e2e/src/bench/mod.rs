//! The benchmark harness: load against the fixture directly and through Hawser in
//! the same run, reported as ratios, because absolute numbers depend on the machine.

pub mod identity;
pub mod load;
pub mod policy;
pub mod proc_stats;
pub mod report;
