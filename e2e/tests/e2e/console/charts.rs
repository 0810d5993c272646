//! The last-hour charts (overview and connection page) in embedded mode, counted in
//! the gateway's memory.

use hawser_e2e::harness::cluster::ADMIN_TOKEN;
use hawser_e2e::harness::mcp::McpClient;
use hawser_e2e::harness::stack::{Fixture, Gateway};
use serde_json::json;

use super::web::Web;

#[tokio::test]
async fn the_embedded_overview_charts_the_calls_it_forwarded() {
    let fixture = Fixture::start(&[]);
    let gw = Gateway::start(
        &format!(
            "connections:\n  - name: fx\n    url: {}\n",
            fixture.mcp_url()
        ),
        &[("HAWSER_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    gw.wait_ready().await;
    let mut web = Web::sign_in(&gw.base).await;
    let quiet = web.get(&format!("{}/ui/", gw.base)).await;
    assert!(quiet.body.contains("0 calls in the hour"), "{}", quiet.body);
    assert!(
        !quiet.body.contains("class=\"line bad\""),
        "an error rate of no calls"
    );

    let mut client = McpClient::connect(&gw.mcp_url()).await;
    client.wait_for_tool("fx__echo").await;
    for i in 0..5 {
        client
            .call("fx__echo", json!({"text": format!("call {i}")}))
            .await;
    }
    // Invalid arguments: the upstream refuses the call.
    client.call("fx__echo", json!({})).await;

    let page = web.get(&format!("{}/ui/", gw.base)).await;
    let body = &page.body;
    assert!(body.contains("6 calls in the hour"), "{body}");
    assert!(body.contains("1 failed"), "{body}");
    assert!(body.contains("16.7 %"), "error rate of 1 in 6: {body}");
    assert!(
        body.contains("class=\"line\"") && body.contains("class=\"line bad\""),
        "the call and error charts draw the minute: {body}"
    );
    assert!(
        !body.contains("<p class=\"big\">–</p>"),
        "every card has a figure: {body}"
    );
    assert!(body.contains("counted in its memory"), "{body}");

    // The connection's own page charts the same calls.
    let one = web.get(&format!("{}/ui/connection?name=fx", gw.base)).await;
    assert!(one.body.contains("6 calls in the hour"), "{}", one.body);
}
