//! The plugin with fake hosts: two workers of one proxy share one shared-data store.

use std::rc::Rc;

use super::*;
use crate::filter::http::Action;
use crate::host::fake::{FakeHost, SharedStore};

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../tests/fixtures/jwt/vectors.json")).unwrap()
}

fn remote_keys_config() -> String {
    format!(
        r#"{{"jwtRules": [{{"issuer": {}, "audiences": ["bookstore"],
             "jwksUri": "http://keys.example/jwks", "jwksCluster": "keys"}}]}}"#,
        vectors()["issuer"]
    )
}

/// A worker: its own host (clock, dispatches, replies) on the proxy's shared store.
fn worker(store: &SharedStore, token_base: u32, config: &str) -> (FakeHost, Plugin) {
    let host = FakeHost::new().with_shared_store(store, token_base);
    let mut plugin = Plugin::new(format!("worker-{token_base}"));
    assert!(plugin.configure(&host, config.as_bytes()));
    assert_eq!(host.tick_period.get(), Some(TICK));
    (host, plugin)
}

/// A request with a valid token, headers sent to the plugin's request.
fn request_with_token(
    host: &FakeHost,
    plugin: &Plugin,
    context_id: u32,
) -> Rc<RefCell<AuthzRequest>> {
    let token = vectors()["valid"]["ES384"].as_str().unwrap().to_string();
    host.request_headers.borrow_mut().extend([
        (":method".to_string(), b"GET".to_vec()),
        (":path".to_string(), b"/".to_vec()),
        (":authority".to_string(), b"h".to_vec()),
        (
            "authorization".to_string(),
            format!("Bearer {token}").into_bytes(),
        ),
    ]);
    let request = plugin.create_request(host, context_id, 1).unwrap();
    let action = request.borrow_mut().on_request_headers(host, true);
    assert_eq!(action, Action::Pause, "waits for the first keys");
    plugin.park(context_id, &request);
    request
}

fn deliver_jwks(host: &FakeHost, plugin: &Plugin, token: u32, status: u32) {
    let body = vectors()["jwks"].to_string();
    host.answering(status, &[], &body);
    plugin.on_http_call_response(host, token, 1, body.len());
}

#[test]
fn two_workers_fetch_the_keys_once_and_share_them() {
    let store = SharedStore::default();
    let config = remote_keys_config();
    let (a, first) = worker(&store, 100, &config);
    let (b, second) = worker(&store, 200, &config);
    let waiting = request_with_token(&b, &second, 42);

    first.on_tick(&a);
    let fetch = a.last_dispatch().expect("the first worker takes the lease");
    assert_eq!(
        (fetch.cluster.as_str(), fetch.header(":path")),
        ("keys", Some("/jwks"))
    );
    second.on_tick(&b);
    assert!(
        b.dispatched.borrow().is_empty(),
        "the lease keeps the second worker from fetching"
    );
    assert_eq!(waiting.borrow().waiting_for_keys(), Some(0));

    deliver_jwks(&a, &first, fetch.token, 200);
    assert_eq!(a.metric("inline_authz.jwks.fetch_success"), 1);
    second.on_tick(&b);
    assert!(b.dispatched.borrow().is_empty(), "adopted, not fetched");
    assert_eq!(b.effective_context.get(), Some(42));
    assert_eq!(b.resumed.get(), 1, "the parked request goes on");
    assert!(b.replies.borrow().is_empty());
    assert_eq!(waiting.borrow().waiting_for_keys(), None);
}

#[test]
fn a_failed_first_fetch_answers_the_requests_waiting_on_every_worker() {
    let store = SharedStore::default();
    let config = remote_keys_config();
    let (a, first) = worker(&store, 100, &config);
    let (b, second) = worker(&store, 200, &config);
    let on_a = request_with_token(&a, &first, 7);
    let _on_b = request_with_token(&b, &second, 8);

    first.on_tick(&a);
    second.on_tick(&b);
    let token = a.last_dispatch().unwrap().token;
    deliver_jwks(&a, &first, token, 500);
    assert_eq!(a.metric("inline_authz.jwks.fetch_failed"), 1);
    let reply = a
        .last_reply()
        .expect("the fetching worker's request is answered");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, "Jwks remote fetch is failed")
    );
    assert_eq!(on_a.borrow().waiting_for_keys(), None);

    second.on_tick(&b);
    let reply = b.last_reply().expect("the other worker takes the failure");
    assert_eq!(reply.status, 401);
    assert!(b.dispatched.borrow().is_empty());
}

#[test]
fn a_lease_whose_holder_never_answers_passes_to_another_worker() {
    let store = SharedStore::default();
    let config = remote_keys_config();
    let (a, first) = worker(&store, 100, &config);
    let (b, second) = worker(&store, 200, &config);
    first.on_tick(&a);
    second.on_tick(&b);
    assert!(b.dispatched.borrow().is_empty());
    // The default fetch timeout (5 s) and the lease margin (2 s) later, the lease is free.
    b.advance(Duration::from_secs(7));
    second.on_tick(&b);
    assert_eq!(b.dispatched.borrow().len(), 1);
    let lease = store
        .borrow()
        .get(&lease_key(
            &Config::parse(config.as_bytes()).unwrap().jwt.rules[0],
        ))
        .cloned();
    let lease = Lease::decode(&lease.unwrap().0).unwrap();
    assert_eq!(lease.owner, "worker-200");
}

#[test]
fn a_body_that_never_comes_ends_the_request_through_the_one_reply_path() {
    let config = r#"{"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": {"service": "authz", "port": 8000,
        "includeRequestBodyInCheck": {"maxRequestBytes": 4}}}], "exposeDenialReason": true}"#;
    let store = SharedStore::default();
    let (host, plugin) = worker(&store, 100, config);
    host.request_headers.borrow_mut().extend([
        (":method".to_string(), b"POST".to_vec()),
        (":path".to_string(), b"/upload".to_vec()),
        (":authority".to_string(), b"h".to_vec()),
    ]);
    let request = plugin.create_request(&host, 5, 1).unwrap();
    assert_eq!(
        request.borrow_mut().on_request_headers(&host, false),
        Action::Pause
    );
    plugin.park(5, &request);
    plugin.on_tick(&host);
    assert!(host.replies.borrow().is_empty(), "not yet");
    host.advance(crate::filter::body_watch::LIMIT);
    plugin.on_tick(&host);
    let reply = host.last_reply().expect("failed closed");
    assert_eq!(reply.status, 500);
    assert!(reply
        .headers
        .contains(&("x-inline-authz-denied-by".into(), "internal".into())));
    assert_eq!(host.metric("inline_authz.denied_by.internal"), 1);
    assert_eq!(host.effective_context.get(), Some(5));
    assert!(!request.borrow().waiting_for_body());
    plugin.on_tick(&host);
    assert_eq!(host.replies.borrow().len(), 1, "ended once");
}

#[test]
fn a_plugin_refuses_a_config_it_cannot_tick_for() {
    let host = FakeHost::new().failing("set_tick_period");
    let mut plugin = Plugin::new("w".into());
    assert!(!plugin.configure(&host, remote_keys_config().as_bytes()));
    assert!(plugin.create_request(&host, 1, 1).is_none());
}

fn discovery_config(extra: &str) -> String {
    format!(r#"{{"jwtRules": [{{"issuer": "https://issuer.example/realms/a/" {extra}}}]}}"#)
}

fn keys_of(plugin: &Plugin) -> crate::jwt::Keys {
    use crate::jwt::KeyStore;
    let Life::Ready { shared, .. } = &plugin.life else {
        panic!("configured");
    };
    shared.keys.keys(0)
}

fn deliver(host: &FakeHost, plugin: &Plugin, token: u32, status: u32, body: &str) {
    host.answering(status, &[], body);
    plugin.on_http_call_response(host, token, 1, body.len());
}

#[test]
fn openid_discovery_finds_the_keys_through_the_issuers_document() {
    let store = SharedStore::default();
    let (host, plugin) = worker(&store, 100, &discovery_config(""));
    plugin.on_tick(&host);
    let discovery = host
        .last_dispatch()
        .expect("the discovery document is fetched first");
    assert_eq!(discovery.cluster, "outbound|443||issuer.example");
    assert_eq!(
        discovery.header(":path"),
        Some("/realms/a/.well-known/openid-configuration")
    );
    assert_eq!(discovery.header(":authority"), Some("issuer.example"));
    assert!(matches!(keys_of(&plugin), crate::jwt::Keys::Pending));
    deliver(
        &host,
        &plugin,
        discovery.token,
        200,
        r#"{"issuer": "https://issuer.example/realms/a/", "jwks_uri": "https://keys.example:8443/certs"}"#,
    );
    let fetch = host.last_dispatch().expect("then the keys it names");
    assert_eq!(fetch.cluster, "outbound|8443||keys.example");
    assert_eq!(
        (fetch.header(":path"), fetch.header(":authority")),
        (Some("/certs"), Some("keys.example:8443"))
    );
    deliver(
        &host,
        &plugin,
        fetch.token,
        200,
        &vectors()["jwks"].to_string(),
    );
    assert!(matches!(keys_of(&plugin), crate::jwt::Keys::Ready(_)));
    assert_eq!(host.metric("inline_authz.jwks.fetch_success"), 1);
}

#[test]
fn a_jwks_cluster_names_the_keys_cluster_whatever_host_jwks_uri_names() {
    let store = SharedStore::default();
    let (host, plugin) = worker(&store, 100, &discovery_config(r#", "jwksCluster": "keys""#));
    plugin.on_tick(&host);
    let discovery = host.last_dispatch().unwrap();
    deliver(
        &host,
        &plugin,
        discovery.token,
        200,
        r#"{"jwks_uri": "https://www.googleapis.com/oauth2/v3/certs"}"#,
    );
    let fetch = host.last_dispatch().unwrap();
    assert_eq!(fetch.cluster, "keys");
    assert_eq!(fetch.header(":authority"), Some("www.googleapis.com"));
}

#[test]
fn every_discovery_failure_is_a_failed_fetch_and_no_keys() {
    let cases: [(&str, u32, &str); 5] = [
        ("down", 503, "unavailable"),
        ("not JSON", 200, "<html>"),
        (
            "no jwks_uri",
            200,
            r#"{"issuer": "https://issuer.example"}"#,
        ),
        (
            "not https",
            200,
            r#"{"jwks_uri": "http://keys.example/jwks"}"#,
        ),
        ("not a URL", 200, r#"{"jwks_uri": "keys"}"#),
    ];
    for (what, status, body) in cases {
        let store = SharedStore::default();
        let (host, plugin) = worker(&store, 100, &discovery_config(""));
        plugin.on_tick(&host);
        let discovery = host.last_dispatch().unwrap();
        deliver(&host, &plugin, discovery.token, status, body);
        assert_eq!(host.dispatched.borrow().len(), 1, "{what}: no keys fetch");
        assert!(
            matches!(keys_of(&plugin), crate::jwt::Keys::Failed),
            "{what}: tokens get 401"
        );
        assert_eq!(host.metric("inline_authz.jwks.fetch_failed"), 1, "{what}");
    }
    // No cluster for the jwks_uri's host: the keys fetch cannot be sent.
    let store = SharedStore::default();
    let (mut host, plugin) = worker(&store, 100, &discovery_config(""));
    host.missing_cluster = Some("outbound|443||keys.example".into());
    plugin.on_tick(&host);
    let discovery = host.last_dispatch().unwrap();
    deliver(
        &host,
        &plugin,
        discovery.token,
        200,
        r#"{"jwks_uri": "https://keys.example/jwks"}"#,
    );
    assert!(matches!(keys_of(&plugin), crate::jwt::Keys::Failed));
    assert_eq!(host.metric("inline_authz.jwks.fetch_failed"), 1);
}

#[test]
fn a_refresh_reads_the_discovery_document_again_and_follows_a_new_jwks_uri() {
    let store = SharedStore::default();
    let config = discovery_config("").replace(r#"}]}"#, r#"}], "jwksRefreshInterval": "10s"}"#);
    let (host, plugin) = worker(&store, 100, &config);
    plugin.on_tick(&host);
    let first = host.last_dispatch().unwrap();
    deliver(
        &host,
        &plugin,
        first.token,
        200,
        r#"{"jwks_uri": "https://keys.example/a"}"#,
    );
    let keys = host.last_dispatch().unwrap();
    deliver(
        &host,
        &plugin,
        keys.token,
        200,
        &vectors()["jwks"].to_string(),
    );
    host.advance(Duration::from_secs(11));
    plugin.on_tick(&host);
    let again = host.last_dispatch().unwrap();
    assert_eq!(
        again.header(":path"),
        Some("/realms/a/.well-known/openid-configuration")
    );
    deliver(
        &host,
        &plugin,
        again.token,
        200,
        r#"{"jwks_uri": "https://other.example/b"}"#,
    );
    let moved = host.last_dispatch().unwrap();
    assert_eq!(moved.cluster, "outbound|443||other.example");
    assert_eq!(moved.header(":path"), Some("/b"));
}
