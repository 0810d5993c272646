//! Benchmarks Hawser against a baseline measured in the same run. See docs/performance.md.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hawser_e2e::bench_main::main()
}
