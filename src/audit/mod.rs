//! Audit: one record per exchange — request as forwarded, response as
//! delivered, decision, principal — in a store that many instances can share.
//!
//! - [`AuditLayer`] / [`AuditService`]: the outermost middleware. It refuses
//!   a declared `Content-Length` over the limit (`413 request_too_large`),
//!   puts an [`AuditHandle`] into the request extensions, and tees the
//!   response body into the record. The body itself is read only after the
//!   caller is authenticated, by [`BufferLayer`](crate::gateway::BufferLayer),
//!   which hands it to the record; a refused request keeps at most
//!   [`REFUSED_BODY_RECORD_BYTES`] of it.
//! - A caller that goes away before any response exists leaves a record
//!   with status 499 and `complete = false`.
//! - [`AuditHandle::commit`]: the innermost point writes the request record
//!   *before* forwarding; if the store cannot take it, the request is refused
//!   with `503` and never forwarded.
//! - Responses are recorded on a separate task when the body ends, so the
//!   client's bytes are never delayed. A body dropped before its end (client
//!   disconnected) is recorded with `complete = false`.
//! - Requests the gateway refuses (bad token, too large…) are recorded too,
//!   with a `deny` decision.
//! - [`AuditStore`]: the plug-in trait. [`SqliteStore`] is the embedded default;
//!   `PostgresStore` (feature `postgres`) is shared by many instances, with
//!   batched writes and a hash chain checked by [`verify`].
//! - When the response headers go out for a forwarded request, a provisional
//!   response record (`complete = false`) is written
//!   ([`AuditStore::record_response_started`]), replaced when the body ends.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use skillgate::{Body, audit::{AuditHandle, AuditLayer, AuditStore, SqliteStore}};
//! use skillgate::wire::messages::RequestBody;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = std::sync::Arc::new(SqliteStore::in_memory().await.unwrap());
//! let svc = ServiceBuilder::new()
//!     .layer(AuditLayer::from_arc(store.clone()))
//!     .layer(skillgate::gateway::BufferLayer::new(1 << 20))
//!     .service(service_fn(|req: Request<Body>| async move {
//!         // The innermost point commits the request record before "forwarding".
//!         let handle = req.extensions().get::<AuditHandle>().unwrap();
//!         handle.commit(req.extensions().get::<RequestBody>().unwrap()).await.unwrap();
//!         Ok::<_, Infallible>(Response::new(Body::from("{\"ok\":true}")))
//!     }));
//! let res = svc.oneshot(Request::post("/v1/messages").body(Body::from("{}")).unwrap()).await.unwrap();
//! let id = res.extensions().get::<AuditHandle>().unwrap().id();
//! drop(res); // the client is done with the body
//! # tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//! let rec = store.get(id).await.unwrap().unwrap();
//! assert_eq!(&rec.request.body[..], b"{}");
//! # });
//! # }
//! ```

mod chain;
mod encrypt;
pub mod export;
mod jsonl;
mod layer;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
mod record;
pub mod replay;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod time_arg;

pub use chain::{
    ChainEntry, ChainSnapshot, ChainSource, Checkpoint, CheckpointSigner, GENESIS_HASH,
    InstanceSummary, Problem, RecordKind, StoredRecord, VerifyReport, canonical_json,
    read_public_key, verify, verify_snapshot,
};
pub use encrypt::{BodyKey, EncryptedBody};
pub use jsonl::{JsonlOptions, JsonlStore};
pub use layer::{
    AuditBody, AuditHandle, AuditLayer, AuditService, DEFAULT_MAX_CAPTURE_BYTES,
    DEFAULT_MAX_REQUEST_BYTES, REFUSED_BODY_RECORD_BYTES,
};
#[cfg(feature = "postgres")]
pub use postgres::{
    DEFAULT_BATCH_MAX, DEFAULT_BUFFER, DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_QUEUE_CAPACITY, POSTGRES_SCHEMA_VERSION, PostgresOptions, PostgresStore, PurgeReport,
};
pub use query::{AuditQuery, DEFAULT_QUERY_LIMIT};
pub use record::{
    AuditEvent, AuditRecord, ChunkTiming, DecisionRecord, Finding, MAX_CHUNK_TIMINGS,
    RequestRecord, ResponseRecord, Verdict,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{AuditError, AuditStore};
pub use time_arg::parse_time;

/// `hostname:pid`, the default instance name.
pub(crate) fn layer_default_instance() -> String {
    layer::default_instance()
}
