//! `serve`: graceful shutdown lets in-flight streams finish, within a bound.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::StreamBody;
use skillgate::Body;
use skillgate::gateway::{GatewayService, serve};

/// A service whose response body sends `chunks` pieces, one every `every`.
fn slow_stream(chunks: usize, every: Duration) -> GatewayService {
    GatewayService::new(tower::service_fn(move |_req: Request<Body>| async move {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            for i in 0..chunks {
                tokio::time::sleep(every).await;
                if tx
                    .send(Ok(http_body::Frame::data(Bytes::from(format!(
                        "chunk{i};"
                    )))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let body = StreamBody::new(tokio_stream_from(rx));
        Ok::<_, Infallible>(Response::new(Body::new(body)))
    }))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn start(
    svc: GatewayService,
    grace: Duration,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        svc,
        async move {
            let _ = rx.await;
        },
        grace,
    ));
    (base, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_stream_finishes_after_shutdown_signal() {
    let (base, stop, task) = start(
        slow_stream(10, Duration::from_millis(100)),
        Duration::from_secs(10),
    )
    .await;
    let res = reqwest::get(format!("{base}/v1/anything"))
        .await
        .expect("request");
    stop.send(()).expect("signal");
    let body = res.text().await.expect("whole body despite shutdown");
    assert_eq!(
        body,
        (0..10).map(|i| format!("chunk{i};")).collect::<String>()
    );
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returned")
        .expect("join")
        .expect("ok");
    // No new connections after shutdown.
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_the_wait() {
    let (base, stop, task) = start(
        slow_stream(1000, Duration::from_millis(100)),
        Duration::from_millis(500),
    )
    .await;
    let res = reqwest::get(format!("{base}/v1/anything"))
        .await
        .expect("request");
    let started = Instant::now();
    stop.send(()).expect("signal");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returned")
        .expect("join")
        .expect("ok");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    drop(res);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_panics() {
    let panicking = GatewayService::new(tower::service_fn(|_req: Request<Body>| async move {
        if true {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let (base, _stop, _task) = start(panicking, Duration::from_secs(1)).await;
    let h = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(h.status(), 200);
    assert_eq!(h.text().await.expect("body"), "{\"status\":\"ok\"}");
    let res = reqwest::get(format!("{base}/v1/messages"))
        .await
        .expect("answered despite panic");
    assert_eq!(res.status(), 500);
    let v: serde_json::Value = res.json().await.expect("json");
    assert_eq!(v["error"]["type"], "api_error");
}
