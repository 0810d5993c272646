#![forbid(unsafe_code)]

pub mod bench;
pub mod bench_main;
pub mod fixture;
pub mod harness;
pub mod oauth;
