//! What a policy decides: [`Decision`], its [`Obligations`], and the
//! [`Evaluation`] that explains it.

use serde::{Deserialize, Serialize};

/// The effect of a rule, and of a decision.
///
/// Combination (see [`Evaluation::combine`]): **deny overrides
/// require-approval overrides allow; no allow means deny** (default deny).
///
/// ```
/// use skillgate::policy::Effect;
/// assert!(Effect::Deny > Effect::RequireApproval && Effect::RequireApproval > Effect::Allow);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The request may go upstream.
    Allow,
    /// The request waits for a human approver.
    RequireApproval,
    /// The request is refused.
    Deny,
}

impl Effect {
    /// `"allow"`, `"require_approval"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::RequireApproval => "require_approval",
            Effect::Deny => "deny",
        }
    }
}

/// Duties that come with an allow (or an approval): applied by the gateway.
///
/// When several allow rules match, obligations merge strictly: the lowest
/// `max_tokens`, and every named redaction profile and the highest audit level.
///
/// ```
/// use skillgate::policy::Obligations;
/// let mut a = Obligations { max_tokens: Some(4096), ..Default::default() };
/// a.merge(&Obligations { max_tokens: Some(1024), ..Default::default() });
/// assert_eq!(a.max_tokens, Some(1024));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligations {
    /// Ceiling for `max_tokens`: a larger request value is clamped to it.
    pub max_tokens: Option<u64>,
    /// Redaction profiles to apply to this exchange (by name).
    pub redaction_profiles: Vec<String>,
    /// Audit level, e.g. `"full"` or `"metadata"` (highest wins: full > metadata).
    pub audit_level: Option<String>,
}

impl Obligations {
    /// Merges `other` into `self`, keeping the stricter of each.
    pub fn merge(&mut self, other: &Obligations) {
        self.max_tokens = match (self.max_tokens, other.max_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for p in &other.redaction_profiles {
            if !self.redaction_profiles.contains(p) {
                self.redaction_profiles.push(p.clone());
            }
        }
        let rank = |l: &Option<String>| match l.as_deref() {
            Some("full") => 2,
            Some(_) => 1,
            None => 0,
        };
        if rank(&other.audit_level) > rank(&self.audit_level) {
            self.audit_level = other.audit_level.clone();
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.redaction_profiles.is_empty()
            && self.audit_level.is_none()
    }
}

/// The decision on one request, placed in the request extensions by
/// [`PolicyLayer`](crate::policy::PolicyLayer) and written to the audit record.
///
/// ```
/// use skillgate::policy::Decision;
/// let d = Decision::Deny { rule: "no-opus-for-ci".into(), reason: "Opus models are not for CI jobs".into() };
/// assert_eq!(d.rule(), Some("no-opus-for-ci"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Decision {
    /// Forward, with obligations.
    Allow {
        /// Duties attached.
        obligations: Obligations,
    },
    /// Refuse with `403 permission_error` naming `rule` and `reason`.
    Deny {
        /// The deciding rule's id (`"default"` when no rule allowed).
        rule: String,
        /// Why, for the caller. Never contains request content.
        reason: String,
    },
    /// Hold for human approval.
    RequireApproval {
        /// The rule that requires it.
        rule: String,
        /// Why, for approver and caller.
        reason: String,
        /// Duties that apply if approved.
        obligations: Obligations,
        /// Groups whose members may approve (a rule's `approvers`); empty:
        /// the approval layer's default approver groups.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<String>,
        /// Distinct approvals needed (N of M; a rule's `approvals_required`,
        /// at least 1).
        #[serde(default = "one")]
        approvals_required: u32,
    },
}

fn one() -> u32 {
    1
}

impl Decision {
    /// The deciding rule, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { rule, .. } | Decision::RequireApproval { rule, .. } => Some(rule),
        }
    }

    /// The effect.
    pub fn effect(&self) -> Effect {
        match self {
            Decision::Allow { .. } => Effect::Allow,
            Decision::Deny { .. } => Effect::Deny,
            Decision::RequireApproval { .. } => Effect::RequireApproval,
        }
    }
}

/// One rule that matched a request.
///
/// ```
/// use skillgate::policy::{Effect, RuleMatch};
/// let m = RuleMatch { id: "r1".into(), effect: Effect::Deny, shadow: true };
/// assert_eq!(m.label(), "r1 (shadow: would deny)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    /// The rule id.
    pub id: String,
    /// Its effect.
    pub effect: Effect,
    /// Evaluated and recorded, not enforced.
    pub shadow: bool,
}

impl RuleMatch {
    /// `id`, or `id (shadow: would deny)` for shadow rules.
    pub fn label(&self) -> String {
        if self.shadow {
            let would = match self.effect {
                Effect::Allow => "would allow",
                Effect::Deny => "would deny",
                Effect::RequireApproval => "would require approval",
            };
            format!("{} (shadow: {would})", self.id)
        } else {
            self.id.clone()
        }
    }
}

/// A decision with its explanation: every rule that matched, in file order.
///
/// ```
/// use skillgate::policy::{Effect, Evaluation, RuleMatch};
/// let e = Evaluation::combine(vec![
///     (RuleMatch { id: "allow-ci".into(), effect: Effect::Allow, shadow: false }, "".into(), Default::default()),
///     (RuleMatch { id: "no-opus".into(), effect: Effect::Deny, shadow: false }, "no Opus".into(), Default::default()),
/// ]);
/// assert_eq!(e.decision.rule(), Some("no-opus"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// What is enforced.
    pub decision: Decision,
    /// All matching rules, shadow ones included.
    pub matched: Vec<RuleMatch>,
}

impl Evaluation {
    /// Combines matched rules (with each rule's reason and obligations) into
    /// a decision: an enforced deny wins, then an enforced require-approval,
    /// then allow (obligations of every enforced allow merged); nothing
    /// enforced matching is a deny by rule `"default"`. Shadow matches are
    /// kept for the record only.
    pub fn combine(matches: Vec<(RuleMatch, String, Obligations)>) -> Evaluation {
        let enforced = || matches.iter().filter(|(m, _, _)| !m.shadow);
        let decision =
            if let Some((m, reason, _)) = enforced().find(|(m, _, _)| m.effect == Effect::Deny) {
                Decision::Deny {
                    rule: m.id.clone(),
                    reason: reason.clone(),
                }
            } else if let Some((m, reason, _)) =
                enforced().find(|(m, _, _)| m.effect == Effect::RequireApproval)
            {
                let mut obligations = Obligations::default();
                for (_, _, o) in enforced() {
                    obligations.merge(o);
                }
                Decision::RequireApproval {
                    rule: m.id.clone(),
                    reason: reason.clone(),
                    obligations,
                    approvers: Vec::new(),
                    approvals_required: 1,
                }
            } else if enforced().any(|(m, _, _)| m.effect == Effect::Allow) {
                let mut obligations = Obligations::default();
                for (_, _, o) in enforced() {
                    obligations.merge(o);
                }
                Decision::Allow { obligations }
            } else {
                Decision::Deny {
                    rule: "default".into(),
                    reason: "no policy rule allows this request".into(),
                }
            };
        Evaluation {
            decision,
            matched: matches.into_iter().map(|(m, _, _)| m).collect(),
        }
    }
}
