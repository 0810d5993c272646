//! Policies, on both stores: written, listed, replaced, pruned by source, and every
//! change announced to every replica.

use hawser_gateway::config::Source;
use hawser_gateway::store::{BusMessage, Store, StoreEvent};

fn spec(tool: &str) -> hawser_crds::McpPolicySpec {
    serde_json::from_value(serde_json::json!({
        "targetRefs": [{"name": "gh"}],
        "rules": [{"groups": ["team-a"], "tools": [tool]}],
    }))
    .expect("a valid spec")
}

async fn announced(events: &mut tokio::sync::broadcast::Receiver<StoreEvent>) {
    loop {
        if let StoreEvent::Bus(BusMessage::PoliciesChanged) = super::next_event(events).await {
            return;
        }
    }
}

pub async fn policies_are_shared_replaced_pruned_and_announced(a: &dyn Store, b: &dyn Store) {
    let mut events = b.subscribe();
    assert!(
        !a.put_policy("p1", &spec("echo"), Source::Api, &["gh".into()], None)
            .await
            .unwrap()
    );
    announced(&mut events).await;
    assert!(
        a.put_policy("p1", &spec("add"), Source::Api, &["gh".into()], None)
            .await
            .unwrap(),
        "replaced"
    );
    announced(&mut events).await;
    a.put_policy(
        "ns/p2",
        &spec("echo"),
        Source::Crd,
        &["ns/gh".into()],
        Some(3),
    )
    .await
    .unwrap();
    announced(&mut events).await;
    let listed = b.list_policies().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].name, "p1");
    assert_eq!(listed[1].spec, Ok(spec("add")));
    assert_eq!(listed[0].connections, ["ns/gh"]);
    assert_eq!(
        (listed[0].source, listed[0].generation),
        (Source::Crd, Some(3))
    );
    assert_eq!(a.prune_policies(Source::Crd, &[]).await.unwrap(), ["ns/p2"]);
    announced(&mut events).await;
    assert!(a.delete_policy("p1").await.unwrap());
    assert!(!a.delete_policy("p1").await.unwrap());
    assert!(b.list_policies().await.unwrap().is_empty());
}
