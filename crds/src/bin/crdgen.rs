//! Prints the `McpConnection` CustomResourceDefinition as YAML (`crds/mcpconnections.yaml`).
use kube::CustomResourceExt;

fn main() -> Result<(), serde_saphyr::SerializeError> {
    print!(
        "{}",
        serde_saphyr::to_string(&hawser_crds::McpConnection::crd())?
    );
    Ok(())
}
