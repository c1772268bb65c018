//! Policy: every request is decided before it leaves — allow, deny, or
//! require approval — from who the caller is, when, how big, which model,
//! which tools and Agent Skills, and what the prompt says.
//!
//! - [`PolicyLayer`] / [`PolicyService`]: the middleware (after identity).
//! - [`PolicyEngine`]: the plug-in trait; [`RulesPolicy`] is the built-in
//!   rules engine configured in TOML (`docs/policy.md`).
//! - `cedar::CedarPolicy` (feature `cedar`): the same decisions from Cedar
//!   policies validated against a documented schema (`docs/policy.md`).
//! - [`PolicyHandle`]: the policy in force, swapped atomically on reload
//!   (SIGHUP or file change); a file that does not compile keeps the old one.
//! - [`Decision`] goes into the request extensions and the audit record,
//!   with the ids of every rule that matched ([`Evaluation`]).
//!
//! A denial answers `403 permission_error` with `x-should-retry: false`,
//! naming the rule and its configured reason — never the matched text.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use skillgate::{Body, identity::Principal, policy::{PolicyLayer, RulesPolicy}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let policy = RulesPolicy::from_toml(r#"
//!     [[rule]]
//!     id = "finance-business-hours"
//!     effect = "allow"
//!     [rule.match]
//!     groups = ["finance"]
//!     time = { days = ["mon", "tue", "wed", "thu", "fri"], hours = "09:00-17:00", time_zone = "Europe/Berlin" }
//! "#, "policy.toml").unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(PolicyLayer::new(policy))
//!     .service(service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) }));
//!
//! let mut req = Request::post("/v1/messages").body(Body::empty()).unwrap();
//! req.extensions_mut().insert(Principal::new("https://idp", "intern").with_groups(["interns"]));
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 403); // no rule allows interns: default deny
//! # });
//! ```

#[cfg(feature = "cedar")]
pub mod cedar;
mod decision;
mod layer;
mod reload;
mod rules;

pub use decision::{Decision, Effect, Evaluation, Obligations, RuleMatch};
pub(crate) use layer::denial;
pub use layer::{Clock, PolicyLayer, PolicyService};
pub use reload::PolicyHandle;
pub use rules::{PolicyError, RulesPolicy, estimate_input_tokens};

use crate::identity::Principal;
use crate::wire::messages::MessagesRequest;

/// What a policy decides on: the caller, the endpoint, the body and the time.
///
/// ```
/// use skillgate::policy::PolicyInput;
/// let input = PolicyInput::new("POST", "/v1/messages").body_bytes(1234);
/// assert_eq!(input.body_bytes, 1234);
/// ```
#[derive(Debug, Clone)]
pub struct PolicyInput<'a> {
    /// The verified caller, if identity ran.
    pub principal: Option<&'a Principal>,
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Request body size in bytes.
    pub body_bytes: usize,
    /// The parsed Messages request, for Messages endpoints.
    pub request: Option<&'a MessagesRequest>,
    /// The decision time.
    pub now: jiff::Timestamp,
}

impl<'a> PolicyInput<'a> {
    /// An input for `method` and `path`, now, with nothing else known.
    pub fn new(method: &'a str, path: &'a str) -> Self {
        PolicyInput {
            principal: None,
            method,
            path,
            body_bytes: 0,
            request: None,
            now: jiff::Timestamp::now(),
        }
    }
    /// Sets the caller.
    pub fn principal(mut self, p: &'a Principal) -> Self {
        self.principal = Some(p);
        self
    }
    /// Sets the parsed request.
    pub fn request(mut self, r: &'a MessagesRequest) -> Self {
        self.request = Some(r);
        self
    }
    /// Sets the body size (bytes).
    pub fn body_bytes(mut self, n: usize) -> Self {
        self.body_bytes = n;
        self
    }
    /// Sets the decision time.
    pub fn at(mut self, now: jiff::Timestamp) -> Self {
        self.now = now;
        self
    }
}

/// Decides requests. Implement it to plug in another policy language.
/// Must be deterministic for a given input and fail closed (deny) on doubt.
///
/// ```
/// use skillgate::policy::{Decision, Evaluation, PolicyEngine, PolicyInput};
/// struct AllowGetOnly;
/// impl PolicyEngine for AllowGetOnly {
///     fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation {
///         let decision = if input.method == "GET" {
///             Decision::Allow { obligations: Default::default() }
///         } else {
///             Decision::Deny { rule: "get-only".into(), reason: "read-only gateway".into() }
///         };
///         Evaluation { decision, matched: vec![] }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `PolicyEngine`",
    note = "implement `fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation`"
)]
pub trait PolicyEngine: Send + Sync + 'static {
    /// Decides one request and explains the decision.
    fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation;
}

impl<T: PolicyEngine + ?Sized> PolicyEngine for std::sync::Arc<T> {
    fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation {
        (**self).evaluate(input)
    }
}
#[cfg(test)]
mod tests;
