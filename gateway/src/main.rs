#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hawser_gateway::cli::main()
}
