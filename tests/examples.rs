//! Every embedding example runs its scripted exchange (`--demo`) against the
//! local Anthropic stand-in: the example files are compiled into this test,
//! and each test calls the same `demo()` the example's `main` runs.

// Each example is a stand-alone program with its own copy of the stand-in
// module; compiled together here, the copies are separate modules.
#![allow(clippy::duplicate_mod)]

#[cfg(all(feature = "axum", feature = "sqlite"))]
#[path = "../examples/axum_router.rs"]
#[allow(dead_code)]
mod axum_router;

#[cfg(all(feature = "reqwest", feature = "sqlite"))]
#[path = "../examples/reqwest_client.rs"]
#[allow(dead_code)]
mod reqwest_client;

#[cfg(feature = "sqlite")]
#[path = "../examples/custom_verifier.rs"]
#[allow(dead_code)]
mod custom_verifier;

#[cfg(feature = "sqlite")]
#[path = "../examples/custom_approval_sink.rs"]
#[allow(dead_code)]
mod custom_approval_sink;

#[path = "../examples/custom_audit_store.rs"]
#[allow(dead_code)]
mod custom_audit_store;

#[cfg(all(feature = "axum", feature = "sqlite"))]
#[tokio::test]
async fn axum_router_demo() {
    let seen = axum_router::demo().await.expect("demo");
    assert!(
        seen.iter().any(|l| l.starts_with("GET /v1/whoami -> 200")),
        "{seen:?}"
    );
}

#[cfg(all(feature = "reqwest", feature = "sqlite"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_client_demo() {
    let seen = reqwest_client::demo().await.expect("demo");
    assert!(
        seen.iter().any(|l| l.starts_with("refused locally: 403")),
        "{seen:?}"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn custom_verifier_demo() {
    let seen = custom_verifier::demo().await.expect("demo");
    assert_eq!(seen, ["known token -> 200", "unknown token -> 401"]);
}

#[tokio::test]
async fn custom_audit_store_demo() {
    let lines = custom_audit_store::demo().await.expect("demo");
    let request = lines
        .iter()
        .find(|l| l["kind"] == "request")
        .expect("request line");
    assert_eq!(request["record"]["principal"]["subject"], "audited-skill");
    let response = lines
        .iter()
        .find(|l| l["kind"] == "response")
        .expect("response line");
    assert_eq!(response["record"]["status"], 200);
    assert_eq!(request["record"]["id"], response["record"]["id"]);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_approval_sink_demo() {
    let seen = custom_approval_sink::demo().await.expect("demo");
    assert!(
        seen[0].contains("payroll-skill asks to pass rule payroll-needs-a-human"),
        "{seen:?}"
    );
    assert_eq!(seen[1], "held request -> 200 OK");
    assert_eq!(seen[2], "ticket closed: Approved");
}
