//! A local stand-in for the Anthropic API, for trying the gateway without an
//! Anthropic account or network access. It speaks the Messages wire format
//! (JSON and SSE streams, error bodies) and answers every prompt with
//! `stand-in reply to: <prompt>`. It is the same server the test suite uses.
//!
//! ```text
//! cargo run --example stand_in                 # listens on 127.0.0.1:8081
//! cargo run --example stand_in -- 127.0.0.1:9000
//! ```
//! It accepts only the API key `sk-ant-stand-in-upstream-key`, or access
//! tokens from its workload-identity token endpoint (`POST /v1/oauth/token`,
//! any well-formed unexpired JWT as the assertion, the federation rule and
//! organization it prints).

#[path = "../tests/support/stand_in.rs"]
#[allow(dead_code)]
mod stand_in;

use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    let bind: SocketAddr = match std::env::args().nth(1) {
        Some(a) => match a.parse() {
            Ok(b) => b,
            Err(_) => {
                eprintln!("usage: stand_in [ADDR:PORT]");
                std::process::exit(2);
            }
        },
        None => SocketAddr::from(([127, 0, 0, 1], 8081)),
    };
    let server = stand_in::StandIn::start_with(stand_in::StandInOptions {
        bind,
        ..Default::default()
    })
    .await;
    println!("Anthropic API stand-in listening on {}", server.base_url());
    println!("its API key: {}", stand_in::STAND_IN_API_KEY);
    println!(
        "its token endpoint (POST /v1/oauth/token) accepts federation rule {} of organization {}",
        stand_in::STAND_IN_FEDERATION_RULE_ID,
        stand_in::STAND_IN_ORGANIZATION_ID
    );
    let _ = tokio::signal::ctrl_c().await;
}
