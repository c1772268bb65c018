//! The coordinator and the layer without HTTP: timeouts, N of M, grants.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::Body;
use crate::identity::Principal;
use crate::policy::Decision;

fn held_request(required: u32) -> Request<Body> {
    let mut req = Request::post("/v1/messages").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(Principal::new("https://idp", "job"));
    req.extensions_mut().insert(Decision::RequireApproval {
        rule: "r".into(),
        reason: "needs a human".into(),
        obligations: crate::policy::Obligations {
            max_tokens: Some(7),
            ..Default::default()
        },
        approvers: vec!["secops".into()],
        approvals_required: required,
    });
    req
}

fn stack(
    approvals: &Approvals,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    ApprovalLayer::new(approvals.clone()).layer(service_fn(|req: Request<Body>| async move {
        // Obligations survive the approval.
        let ok = matches!(
            req.extensions().get::<Decision>(),
            Some(Decision::Allow { obligations }) if obligations.max_tokens == Some(7)
        );
        Ok::<_, Infallible>(Response::new(Body::from(if ok { "ok" } else { "bad" })))
    }))
}

async fn next_request(rx: &mut tokio::sync::broadcast::Receiver<ChannelEvent>) -> ApprovalRequest {
    loop {
        if let ChannelEvent::Requested(r) = rx.recv().await.unwrap() {
            return *r;
        }
    }
}

#[tokio::test]
async fn timeout_denies_and_is_final() {
    let channel = ChannelSink::new(8);
    let mut rx = channel.subscribe();
    let approvals = Approvals::builder()
        .sink(channel)
        .timeout(Duration::from_millis(200))
        .build();
    let res = stack(&approvals).oneshot(held_request(1)).await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["x-should-retry"], "false");
    let r = next_request(&mut rx).await;
    let alice = Principal::new("https://idp", "alice").with_groups(["secops"]);
    let e = approvals
        .decide(r.id, &alice, ApprovalVerdict::Approve, "", None)
        .await
        .unwrap_err();
    assert_eq!(e, ApprovalError::NotPending(ApprovalStatus::TimedOut));
    assert_eq!(approvals.held(), 0);
}

#[tokio::test]
async fn n_of_m_counts_distinct_approvers_and_grants_cover_reruns() {
    let channel = ChannelSink::new(8);
    let mut rx = channel.subscribe();
    let approvals = Approvals::builder().sink(channel).build();
    let held = tokio::spawn(stack(&approvals).oneshot(held_request(2)));
    let r = next_request(&mut rx).await;
    assert_eq!(approvals.held(), 1);
    let alice = Principal::new("https://idp", "alice").with_groups(["secops"]);
    let bob = Principal::new("https://idp", "bob").with_groups(["secops"]);
    let s = approvals
        .decide(r.id, &alice, ApprovalVerdict::Approve, "", None)
        .await
        .unwrap();
    assert_eq!(s.status, ApprovalStatus::Pending);
    assert_eq!(
        approvals
            .decide(r.id, &alice, ApprovalVerdict::Approve, "", None)
            .await,
        Err(ApprovalError::AlreadyApproved)
    );
    let too_long = approvals
        .decide(
            r.id,
            &bob,
            ApprovalVerdict::Approve,
            "",
            Some(Duration::from_secs(9 * 3600)),
        )
        .await;
    assert!(matches!(too_long, Err(ApprovalError::Invalid(_))));
    let s = approvals
        .decide(
            r.id,
            &bob,
            ApprovalVerdict::Approve,
            "ok",
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(s.status, ApprovalStatus::Approved);
    let res = held.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    // The grant lets the same principal and rule through at once.
    let res = stack(&approvals).oneshot(held_request(2)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(matches!(
        rx.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty) | Ok(ChannelEvent::Resolved(_))
    ));
    let grants = approvals.grants_for(&alice).await.unwrap();
    assert_eq!(grants.len(), 1);
    let outsider = Principal::new("https://idp", "eve");
    assert!(approvals.grants_for(&outsider).await.unwrap().is_empty());
    assert_eq!(
        approvals.revoke_grant(grants[0].id, &outsider).await,
        Err(ApprovalError::NotFound)
    );
    approvals.revoke_grant(grants[0].id, &alice).await.unwrap();
    assert!(approvals.grants_for(&alice).await.unwrap().is_empty());
}

#[tokio::test]
async fn no_principal_or_no_approver_group_fails_closed() {
    let approvals = Approvals::builder()
        .timeout(Duration::from_millis(100))
        .build();
    let mut req = held_request(1);
    req.extensions_mut().remove::<Principal>();
    assert_eq!(stack(&approvals).oneshot(req).await.unwrap().status(), 403);
    // A rule naming no group and no default: nobody may approve; it times out.
    let channel = ChannelSink::new(8);
    let mut rx = channel.subscribe();
    let approvals = Approvals::builder()
        .sink(channel)
        .timeout(Duration::from_millis(300))
        .build();
    let mut req = held_request(1);
    req.extensions_mut().insert(Decision::RequireApproval {
        rule: "r".into(),
        reason: "x".into(),
        obligations: Default::default(),
        approvers: vec![],
        approvals_required: 1,
    });
    let held = tokio::spawn(stack(&approvals).oneshot(req));
    let r = next_request(&mut rx).await;
    let admin = Principal::new("https://idp", "root").with_groups(["secops", "admins"]);
    assert!(matches!(
        approvals
            .decide(r.id, &admin, ApprovalVerdict::Approve, "", None)
            .await,
        Err(ApprovalError::NotAnApprover(_))
    ));
    assert_eq!(held.await.unwrap().unwrap().status(), 403);
}

#[test]
fn rules_policy_carries_approvers_and_refuses_them_elsewhere() {
    use crate::policy::{PolicyEngine, PolicyInput, RulesPolicy};
    let p = RulesPolicy::from_toml(
        r#"
[[rule]]
id = "a"
effect = "allow"
[[rule]]
id = "r"
effect = "require_approval"
approvers = ["secops", "finance"]
approvals_required = 2
"#,
        "p.toml",
    )
    .unwrap();
    let d = p.evaluate(&PolicyInput::new("GET", "/v1/models")).decision;
    assert!(
        matches!(d, Decision::RequireApproval { approvers, approvals_required: 2, .. } if approvers == ["secops", "finance"])
    );
    for bad in [
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\napprovers = [\"x\"]\n",
        "[[rule]]\nid = \"r\"\neffect = \"require_approval\"\napprovals_required = 0\n",
    ] {
        assert!(RulesPolicy::from_toml(bad, "p.toml").is_err(), "{bad}");
    }
}
