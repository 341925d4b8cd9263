//! The web console's files: served at `/console/` from the binary with a
//! policy that lets the page load nothing from elsewhere, revalidated by
//! ETag, and absent when `[server] console = false`.

mod common;

use common::*;
use mongobak_server::ServerConfig;

#[tokio::test]
async fn the_console_is_served_with_its_policy_and_revalidated_by_etag() {
    let server = TestServer::start().await;
    let base = format!("http://{}", server.addr);
    for path in ["/console/", "/console"] {
        let page = server.get(&format!("{base}{path}"), &[]).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("content-type"), Some("text/html"), "{path}");
        let body = String::from_utf8_lossy(&page.body).to_string();
        assert!(
            body.contains("<script type=\"module\" src=\"app.js\">"),
            "{body}"
        );
        let policy = page.header("content-security-policy").unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("cache-control"), Some("no-cache"));
    }
    let script = server.get(&format!("{base}/console/app.js"), &[]).await;
    assert_eq!(script.status, 200);
    assert_eq!(script.header("content-type"), Some("text/javascript"));
    let etag = script.header("etag").expect("an ETag").to_string();
    let again = server
        .get(
            &format!("{base}/console/app.js"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let missing = server.get(&format!("{base}/console/nothing.js"), &[]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.header("content-security-policy").is_some());
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let server = TestServer::start_with(ServerConfig {
        console: false,
        ..ServerConfig::default()
    })
    .await;
    let page = server
        .get(&format!("http://{}/console/", server.addr), &[])
        .await;
    assert_eq!(page.status, 404);
}
