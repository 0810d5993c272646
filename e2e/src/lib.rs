#![forbid(unsafe_code)]

pub mod fixture;
pub mod harness;
pub mod oauth;
