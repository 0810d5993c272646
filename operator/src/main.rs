//! hawser-operator: reconciles McpConnection resources into the gateway's store.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("hawser-operator is not implemented yet");
    std::process::exit(2);
}
