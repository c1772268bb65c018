//! [`RedactionConfig`]: the `[redaction]` section of the gateway's TOML.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{CustomPattern, Mode, Operator, RedactionError, RedactionLayer, Redactor, VaultKind};

/// `[redaction]`: what is masked and how (see `docs/redaction.md`).
///
/// ```
/// use skillgate::redaction::{Mode, Operator, RedactionConfig, RedactionLayer};
/// let cfg: RedactionConfig = toml::from_str(r#"
///     enabled = true
///     mode = "strict"
///     entity_types = ["CREDIT_CARD", "EMAIL_ADDRESS", "ANTHROPIC_API_KEY"]
///     default_operator = { kind = "replace" }
///     redact_requests = false
///     [operators]
///     CREDIT_CARD = { kind = "mask", keep_last = 4 }
///     [[custom_patterns]]
///     entity_type = "EMPLOYEE_ID"
///     pattern = "EMP-[0-9]{6}"
/// "#).unwrap();
/// assert_eq!(cfg.operators["CREDIT_CARD"], Operator::Mask { keep_last: 4 });
/// let layer = RedactionLayer::from_config(&cfg).unwrap().unwrap();
/// let out = layer.redactor().redact_text("EMP-123456 paid with 4111 1111 1111 1111");
/// assert_eq!(out.text, "[REDACTED:EMPLOYEE_ID] paid with **** **** **** 1111");
/// assert!(RedactionLayer::from_config(&RedactionConfig::default()).unwrap().is_none());
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// Whether the layer runs at all (default `false`).
    pub enabled: bool,
    /// `strict` (default) or `best_effort`.
    pub mode: Mode,
    /// Entity types detected (default: every built-in type).
    pub entity_types: Option<Vec<String>>,
    /// Operator for types without their own (default `{ kind = "replace" }`).
    pub default_operator: Option<Operator>,
    /// Operator per entity type.
    pub operators: HashMap<String, Operator>,
    /// Patterns of your own (always enabled).
    pub custom_patterns: Vec<CustomPattern>,
    /// File with the HMAC key for `hash` and `token` (raw bytes, at least 16;
    /// default: a random key per process).
    pub hmac_key_file: Option<PathBuf>,
    /// Mask prompts of `POST /v1/messages` before they go upstream (default `false`).
    pub redact_requests: bool,
    /// Most bytes held back per content block (default 65,536).
    pub max_hold_bytes: Option<usize>,
    /// What happens to prompts: `off` (default), `mask` (same as
    /// `redact_requests = true`) or `reversible` (tokens upstream, the
    /// caller's values restored in the response).
    pub request: RequestRedaction,
    /// Where reversible tokens live: `memory` (default, per request) or
    /// `redis` (feature `redis`; per principal, for multi-turn use).
    pub vault: VaultKind,
    /// Redis URL of the `redis` vault (required with it).
    pub vault_redis_url: Option<String>,
    /// Lifetime of a token in the `redis` vault, seconds (default 86,400).
    pub vault_ttl_secs: Option<u64>,
    /// Key prefix in the `redis` vault (default `skillgate:vault:`).
    pub vault_key_prefix: Option<String>,
}

/// `[redaction] request`: what happens to the prompts of `POST /v1/messages`.
///
/// ```
/// use skillgate::redaction::RequestRedaction;
/// let r: RequestRedaction = serde_json::from_str(r#""reversible""#).unwrap();
/// assert_eq!(r, RequestRedaction::Reversible);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestRedaction {
    /// Prompts go upstream as sent (unless `redact_requests = true`).
    #[default]
    Off,
    /// Prompts are masked with the configured operators.
    Mask,
    /// Prompts are masked with tokens; the caller gets its values back.
    Reversible,
}

impl RedactionLayer {
    /// The layer a `[redaction]` section describes, or `None` when disabled.
    ///
    /// # Errors
    /// [`RedactionError::Config`] for an unreadable or short key file, an
    /// unknown entity type, or a custom pattern that does not compile.
    pub fn from_config(cfg: &RedactionConfig) -> Result<Option<RedactionLayer>, RedactionError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let mut b = Redactor::builder();
        if let Some(t) = &cfg.entity_types {
            b = b.entity_types(t.iter().cloned());
        }
        if let Some(op) = &cfg.default_operator {
            b = b.default_operator(op.clone());
        }
        for (t, op) in &cfg.operators {
            b = b.operator(t.clone(), op.clone());
        }
        for p in &cfg.custom_patterns {
            b = b.custom_pattern(p.clone());
        }
        if let Some(path) = &cfg.hmac_key_file {
            let key = std::fs::read(path).map_err(|e| {
                RedactionError::Config(format!("hmac_key_file {}: {e}", path.display()))
            })?;
            if key.len() < 16 {
                return Err(RedactionError::Config(format!(
                    "hmac_key_file {}: key shorter than 16 bytes",
                    path.display()
                )));
            }
            b = b.hmac_key(key);
        }
        if let Some(n) = cfg.max_hold_bytes {
            b = b.max_hold_bytes(n);
        }
        let redactor = b.build()?;
        #[allow(unused_mut)]
        let mut lb = RedactionLayer::builder()
            .redactor(redactor)
            .mode(cfg.mode)
            .redact_requests(cfg.redact_requests || cfg.request == RequestRedaction::Mask)
            .reversible(cfg.request == RequestRedaction::Reversible);
        if cfg.vault == VaultKind::Redis {
            if cfg.request != RequestRedaction::Reversible {
                return Err(RedactionError::Config(
                    "vault = \"redis\" needs request = \"reversible\"".into(),
                ));
            }
            let Some(url) = &cfg.vault_redis_url else {
                return Err(RedactionError::Config(
                    "vault = \"redis\" needs vault_redis_url".into(),
                ));
            };
            #[cfg(feature = "redis")]
            {
                let v = super::RedisVault::open(
                    url,
                    cfg.vault_key_prefix
                        .as_deref()
                        .unwrap_or("skillgate:vault:"),
                    std::time::Duration::from_secs(cfg.vault_ttl_secs.unwrap_or(86_400)),
                    std::time::Duration::from_secs(2),
                )?;
                lb = lb.redis_vault(v);
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = url;
                return Err(RedactionError::Config(
                    "vault = \"redis\" needs the `redis` feature".into(),
                ));
            }
        }
        Ok(Some(lb.build()))
    }
}
