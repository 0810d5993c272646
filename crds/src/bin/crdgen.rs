//! Prints a CustomResourceDefinition as YAML: `crdgen` (or `crdgen connections`) the
//! `McpConnection` one (`crds/mcpconnections.yaml`), `crdgen policies` the `McpPolicy`
//! one (`crds/mcppolicies.yaml`).
use kube::CustomResourceExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let crd = match std::env::args().nth(1).as_deref() {
        None | Some("connections") => hawser_crds::McpConnection::crd(),
        Some("policies") => hawser_crds::McpPolicy::crd(),
        Some(other) => return Err(format!("unknown CRD {other:?}: connections or policies").into()),
    };
    print!("{}", serde_saphyr::to_string(&crd)?);
    Ok(())
}
