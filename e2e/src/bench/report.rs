//! Printing results as a table and as one JSON line (for docs and scripts).

use super::load::Sample;

/// Formats one direct-vs-gateway comparison row.
pub fn row(label: &str, direct: &Sample, gateway: &Sample) -> String {
    format!(
        "{label:<14} c={:<3} direct {:>8.0}/s p50 {:>7.0}µs p99 {:>7.0}µs | gateway {:>8.0}/s p50 {:>7.0}µs p99 {:>7.0}µs | throughput ×{:.2}  added p50 {:>+6.0}µs  errors {}/{}",
        direct.concurrency,
        direct.throughput(),
        direct.percentile_us(0.5),
        direct.percentile_us(0.99),
        gateway.throughput(),
        gateway.percentile_us(0.5),
        gateway.percentile_us(0.99),
        gateway.throughput() / direct.throughput(),
        gateway.percentile_us(0.5) - direct.percentile_us(0.5),
        direct.errors,
        gateway.errors,
    )
}
