//! Approvals shared through PostgreSQL: a decision made through instance B
//! releases the request held on instance A (LISTEN/NOTIFY).
#![cfg(feature = "postgres")]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::gateway::TestGateway;
use support::stand_in::StandIn;

const POLICY: &str = r#"
[[rule]]
id = "ci"
effect = "allow"
match = { groups = "ci", paths = ["/v1/messages"] }

[[rule]]
id = "restricted"
effect = "require_approval"
match = { keywords = "restricted" }
approvers = ["secops"]
"#;

fn url() -> String {
    std::env::var("SKILLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[tokio::test]
async fn a_decision_on_instance_b_releases_the_request_held_on_instance_a() {
    let upstream = StandIn::start().await;
    let id = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("sg_appr_{}_", &id[16..]);
    let shared_key = tempfile::tempdir().unwrap();
    let key_file = shared_key.path().join("dev-issuer.json");
    let start = |name: &'static str| {
        let prefix = prefix.clone();
        let key_file = key_file.clone();
        TestGateway::start(&upstream, move |cfg, dir| {
            let file = dir.join("policy.toml");
            std::fs::write(&file, POLICY).unwrap();
            cfg.policy.file = Some(file);
            cfg.approval.enabled = true;
            cfg.approval.postgres_url = Some(url());
            cfg.approval.postgres_table_prefix = prefix;
            cfg.audit.instance = Some(name.into());
            // Both instances trust the same development issuer.
            cfg.identity.dev_key_file = key_file;
        })
    };
    let a = start("a").await;
    let b = start("b").await;
    let http = reqwest::Client::new();
    let held = {
        let http = http.clone();
        let url = format!("{}/v1/messages", a.base_url);
        let token = a.token("job", &["ci"]);
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .header("anthropic-version", "2023-06-01")
                .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "a restricted prompt"}]}))
                .send()
                .await
                .unwrap()
        })
    };
    let approver = b.token("alice", &["secops"]);
    let mut id = None;
    for _ in 0..400 {
        let v: Value = http
            .get(format!("{}/approvals/api/requests", b.base_url))
            .bearer_auth(&approver)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(x) = v["data"][0]["request"]["id"].as_str() {
            id = Some(x.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let id = id.expect("instance B lists the request held on A");
    assert!(!held.is_finished());
    let r = http
        .post(format!(
            "{}/approvals/api/requests/{id}/approve",
            b.base_url
        ))
        .bearer_auth(&approver)
        .json(&json!({"reason": "fine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let res = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("released well before the 5-minute timeout")
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.received().len(), 1);
    drop((a, b));
    // Leave the shared test database as it was.
    let pool = sqlx::PgPool::connect(&url()).await.unwrap();
    for table in ["approvals", "approval_grants", "approval_nonces"] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{table}"))
            .execute(&pool)
            .await
            .unwrap();
    }
}
