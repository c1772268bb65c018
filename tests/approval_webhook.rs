//! The webhook channel: a real HTTP bridge receives the signed request; its
//! signed callbacks decide; tampered or replayed callbacks are refused.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skillgate::Body;
use skillgate::approval::webhook::{
    NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSink, signature,
};
use skillgate::approval::{ApprovalApiLayer, ApprovalLayer, Approvals, MemoryApprovalStore};
use skillgate::identity::Principal;
use skillgate::identity::dev::DevIssuer;
use skillgate::policy::Decision;
use tower::{Layer, ServiceExt, service_fn};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn bridge() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

fn callback(url: &str, body: &Value, ts: i64, nonce: &str, secret: &[u8]) -> Request<Body> {
    let bytes = serde_json::to_vec(body).unwrap();
    let path = url.strip_prefix("https://gw.example").unwrap();
    Request::post(path)
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(NONCE_HEADER, nonce)
        .header(SIGNATURE_HEADER, signature(secret, ts, nonce, &bytes))
        .body(Body::from(bytes))
        .unwrap()
}

#[tokio::test]
async fn signed_callbacks_decide_and_tampered_or_replayed_ones_are_refused() {
    let (hook, seen) = bridge().await;
    let sink = WebhookSink::new(&hook, SECRET.to_vec(), "https://gw.example").unwrap();
    let approvals = Approvals::builder()
        .store(MemoryApprovalStore::new())
        .sink(sink.clone())
        .build();
    let verifier = Arc::new(DevIssuer::ephemeral().verifier("skillgate"));
    let stack = ApprovalApiLayer::new(approvals.clone(), verifier)
        .webhook_callbacks(sink.callbacks())
        .layer(ApprovalLayer::new(approvals.clone()).layer(service_fn(
            |_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::from("forwarded")))
            },
        )));

    let mut req = Request::post("/v1/messages")
        .body(Body::from(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"customer export for ann@corp.example"}]}"#))
        .unwrap();
    req.extensions_mut()
        .insert(Principal::new("https://idp", "job"));
    req.extensions_mut().insert(skillgate::wire::messages::RequestBody::new(Bytes::from_static(
        br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"customer export for ann@corp.example"}]}"#,
    )));
    req.extensions_mut().insert(Decision::RequireApproval {
        rule: "customer-export".into(),
        reason: "needs a human".into(),
        obligations: Default::default(),
        approvers: vec!["secops".into()],
        approvals_required: 1,
    });
    let held = tokio::spawn(stack.clone().oneshot(req));

    // The bridge got the request, signed.
    let (headers, body) = loop {
        if let Some(x) = seen.lock().unwrap().first().cloned() {
            break x;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ts: i64 = headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
    let nonce = headers[NONCE_HEADER].to_str().unwrap();
    assert_eq!(
        headers[SIGNATURE_HEADER].to_str().unwrap(),
        signature(SECRET, ts, nonce, &body)
    );
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["type"], "approval.requested");
    assert_eq!(payload["request"]["rule"], "customer-export");
    assert_eq!(
        payload["request"]["body_sha256"].as_str().unwrap().len(),
        64
    );
    assert!(
        !body.windows(16).any(|w| w == b"ann@corp.example"),
        "no unmasked prompt in the webhook"
    );
    let approve = payload["callbacks"]["approve"].as_str().unwrap().to_owned();
    let deny = payload["callbacks"]["deny"].as_str().unwrap().to_owned();

    let now = jiff::Timestamp::now().as_second();
    let who = json!({"approver": {"issuer": "https://idp", "subject": "alice", "groups": ["secops"]}, "reason": "ok from chat"});
    let status = |r: Response<Body>| r.status().as_u16();
    let send = |r: Request<Body>| stack.clone().oneshot(r);

    // Wrong secret on the body.
    let r = send(callback(
        &approve,
        &who,
        now,
        "nonce-aaaaaaaaaaaaaaaa",
        b"another secret, 32 bytes long!!!",
    ))
    .await
    .unwrap();
    assert_eq!(status(r), 401);
    // Tampered URL: the approve signature on the deny path.
    let forged = deny.replace(
        &deny[deny.find("sig=").unwrap()..],
        &approve[approve.find("sig=").unwrap()..],
    );
    let r = send(callback(
        &forged,
        &who,
        now,
        "nonce-bbbbbbbbbbbbbbbb",
        SECRET,
    ))
    .await
    .unwrap();
    assert_eq!(status(r), 401);
    // Body changed after signing.
    let mut tampered = callback(&approve, &who, now, "nonce-cccccccccccccccc", SECRET);
    *tampered.body_mut() = Body::from(serde_json::to_vec(&json!({"approver": {"issuer": "https://idp", "subject": "mallory", "groups": ["secops"]}, "reason": "x"})).unwrap());
    assert_eq!(status(send(tampered).await.unwrap()), 401);
    // Stale timestamp.
    let r = send(callback(
        &approve,
        &who,
        now - 3600,
        "nonce-dddddddddddddddd",
        SECRET,
    ))
    .await
    .unwrap();
    assert_eq!(status(r), 401);
    assert!(!held.is_finished(), "nothing above decided");

    // A valid callback approves …
    let r = send(callback(
        &approve,
        &who,
        now,
        "nonce-eeeeeeeeeeeeeeee",
        SECRET,
    ))
    .await
    .unwrap();
    assert_eq!(status(r), 200);
    let res = held.await.unwrap().unwrap();
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"forwarded"
    );
    // … and replaying it is refused before anything else is looked at.
    let r = send(callback(
        &approve,
        &who,
        now,
        "nonce-eeeeeeeeeeeeeeee",
        SECRET,
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nonce"),
        "{v}"
    );
}
