//! Claim-shape presets for real identity providers ([`Preset`]) and the
//! per-issuer configuration ([`IssuerConfig`], one `[[identity.issuers]]`
//! table of the gateway configuration).
//!
//! A preset sets the defaults of one issuer: algorithms, `typ` rule, issuer
//! aliases, claim mapping, acceptance conditions and attributes. Every one
//! of them can be overridden field by field; `docs/identity.md` has the table
//! of what each preset maps.
//!
//! ```
//! use skillgate::identity::{IssuerConfig, Preset};
//! let cfg: IssuerConfig = toml::from_str(r#"
//!     preset = "github-actions"
//!     audience = "https://skillgate.acme.example"
//!     require = { repository_owner = "acme" }
//!     group_rules = [
//!         { when = { repository = "acme/billing", ref = "refs/heads/main" }, groups = ["billing-ci"] },
//!     ]
//! "#).unwrap();
//! assert_eq!(cfg.preset, Some(Preset::GithubActions));
//! let verifier = cfg.verifier().unwrap();
//! assert_eq!(verifier.issuer(), "https://token.actions.githubusercontent.com");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer};

use super::KeySource;
use super::jwt::{ConfigError, JwtVerifier, JwtVerifierBuilder, SUPPORTED_ALGORITHMS};
use super::mapping::{ClaimMapping, Conditions, GroupRule, TypRule};

/// The issuer of GitHub Actions OIDC tokens.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The issuer of Google ID tokens (Google also writes it without `https://`).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The claim layout of a known identity provider.
///
/// | preset | name | issuer |
/// |---|---|---|
/// | [`EntraV1`](Preset::EntraV1) | `entra-v1` | `https://sts.windows.net/{tenant-id}/` (required) |
/// | [`EntraV2`](Preset::EntraV2) | `entra-v2` | `https://login.microsoftonline.com/{tenant-id}/v2.0` (required) |
/// | [`Okta`](Preset::Okta) | `okta` | `https://{org}.okta.com/oauth2/{server}` (required) |
/// | [`Google`](Preset::Google) | `google` | `https://accounts.google.com` (default; alias `accounts.google.com`) |
/// | [`Kubernetes`](Preset::Kubernetes) | `kubernetes` | the cluster's service-account issuer (required) |
/// | [`GithubActions`](Preset::GithubActions) | `github-actions` | `https://token.actions.githubusercontent.com` (default) |
/// | [`Spiffe`](Preset::Spiffe) | `spiffe` | the SPIRE server's `jwt_issuer` (required) |
///
/// `google` and `github-actions` are *public* issuers: anyone can obtain a
/// token from them with any audience. A verifier built with either preset
/// must have at least one `require` condition (for example
/// `repository_owner = "acme"`), else building fails.
///
/// ```
/// use skillgate::identity::Preset;
/// let p: Preset = "github-actions".parse().unwrap();
/// assert_eq!(p, Preset::GithubActions);
/// assert_eq!(p.to_string(), "github-actions");
/// assert!("entra".parse::<Preset>().unwrap_err().contains("entra-v1"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// Microsoft Entra ID, v1.0 access tokens (`appid`).
    EntraV1,
    /// Microsoft Entra ID, v2.0 access tokens (`azp`).
    EntraV2,
    /// Okta custom authorization server access tokens.
    Okta,
    /// Google service-account ID tokens.
    Google,
    /// Kubernetes projected service-account tokens.
    Kubernetes,
    /// GitHub Actions OIDC tokens.
    GithubActions,
    /// SPIFFE JWT-SVIDs.
    Spiffe,
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn attrs(v: &[(&str, &str)]) -> BTreeMap<String, String> {
    v.iter()
        .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
        .collect()
}

fn cond(path: &str, glob: &str) -> Conditions {
    Conditions::new()
        .glob(path, glob)
        .expect("preset conditions are valid globs")
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 7] = [
        Preset::EntraV1,
        Preset::EntraV2,
        Preset::Okta,
        Preset::Google,
        Preset::Kubernetes,
        Preset::GithubActions,
        Preset::Spiffe,
    ];

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::EntraV1 => "entra-v1",
            Preset::EntraV2 => "entra-v2",
            Preset::Okta => "okta",
            Preset::Google => "google",
            Preset::Kubernetes => "kubernetes",
            Preset::GithubActions => "github-actions",
            Preset::Spiffe => "spiffe",
        }
    }

    /// The issuer used when none is configured, for IdPs with one global issuer.
    pub fn default_issuer(self) -> Option<&'static str> {
        match self {
            Preset::Google => Some(GOOGLE_ISSUER),
            Preset::GithubActions => Some(GITHUB_ACTIONS_ISSUER),
            _ => None,
        }
    }

    /// Other spellings of the issuer that tokens may carry in `iss`; the
    /// principal always gets the configured issuer.
    pub fn issuer_aliases(self) -> &'static [&'static str] {
        match self {
            Preset::Google => &["accounts.google.com"],
            _ => &[],
        }
    }

    /// Whether anyone can get a token from this issuer for any audience, so a
    /// `require` condition is mandatory.
    pub fn is_public(self) -> bool {
        matches!(self, Preset::Google | Preset::GithubActions)
    }

    /// The algorithm allow-list.
    pub fn algorithms(self) -> Vec<Algorithm> {
        use Algorithm::*;
        match self {
            Preset::EntraV1
            | Preset::EntraV2
            | Preset::Okta
            | Preset::Google
            | Preset::GithubActions => vec![RS256],
            Preset::Kubernetes => vec![RS256, ES256, ES384],
            // JWT-SVID §2.1 (ES512 is not supported by skillgate).
            Preset::Spiffe => vec![RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384],
        }
    }

    /// The `typ` header rule (JWT-SVID §2.3: optional, `JWT` or `JOSE`).
    pub fn typ_rule(self) -> TypRule {
        match self {
            Preset::Spiffe => TypRule::IfPresent(strs(&["JWT", "JOSE"])),
            _ => TypRule::Any,
        }
    }

    /// The claim mapping, including the preset's own `require` conditions.
    pub fn mapping(self) -> ClaimMapping {
        let mut m = ClaimMapping::default();
        match self {
            Preset::EntraV1 | Preset::EntraV2 => {
                let app = if self == Preset::EntraV1 {
                    "appid"
                } else {
                    "azp"
                };
                m.subject = "oid".into();
                m.groups = strs(&["roles"]);
                m.scopes = strs(&["scp"]);
                m.client_id = strs(&[app]);
                m.attributes =
                    attrs(&[("tenant_id", "tid"), ("object_id", "oid"), ("app_id", app)]);
            }
            Preset::Okta => {
                m.groups = strs(&["groups"]);
                m.scopes = strs(&["scp"]);
                m.client_id = strs(&["cid"]);
                m.attributes = attrs(&[("user_id", "uid")]);
            }
            Preset::Google => {
                m.groups = Vec::new();
                m.scopes = Vec::new();
                m.client_id = strs(&["azp"]);
                m.attributes = attrs(&[("email", "email")]);
            }
            Preset::Kubernetes => {
                m.groups = Vec::new();
                m.scopes = Vec::new();
                m.client_id = Vec::new();
                m.attributes = attrs(&[
                    ("namespace", "kubernetes.io.namespace"),
                    ("service_account", "kubernetes.io.serviceaccount.name"),
                    ("service_account_uid", "kubernetes.io.serviceaccount.uid"),
                    ("pod", "kubernetes.io.pod.name"),
                ]);
                m.require = cond("sub", "system:serviceaccount:?*:?*");
            }
            Preset::GithubActions => {
                m.groups = Vec::new();
                m.scopes = Vec::new();
                m.client_id = Vec::new();
                m.attributes = [
                    "repository",
                    "repository_owner",
                    "repository_id",
                    "repository_owner_id",
                    "ref",
                    "ref_type",
                    "sha",
                    "environment",
                    "workflow_ref",
                    "job_workflow_ref",
                    "event_name",
                    "actor",
                    "run_id",
                ]
                .iter()
                .map(|c| ((*c).to_owned(), (*c).to_owned()))
                .collect();
            }
            Preset::Spiffe => {
                m.groups = Vec::new();
                m.scopes = Vec::new();
                m.client_id = Vec::new();
                m.require = cond("sub", "spiffe://?**");
            }
        }
        m
    }

    /// Where keys come from when the configuration names no JWKS file or URL
    /// (`None`: OIDC discovery). Entra v1 metadata is served under
    /// `login.microsoftonline.com`, not under its `sts.windows.net` issuer.
    pub fn default_keys(self, issuer: &str) -> Option<KeySource> {
        match self {
            Preset::EntraV1 => entra_v1_tenant(issuer).map(|tid| {
                KeySource::JwksUrl(format!(
                    "https://login.microsoftonline.com/{tid}/discovery/keys"
                ))
            }),
            _ => None,
        }
    }

    /// Checks that `issuer` has the shape this IdP uses.
    ///
    /// # Errors
    /// A sentence naming the expected shape.
    pub fn check_issuer(self, issuer: &str) -> Result<(), String> {
        let ok = match self {
            Preset::EntraV1 => entra_v1_tenant(issuer).is_some(),
            Preset::EntraV2 => issuer
                .strip_prefix("https://login.microsoftonline.com/")
                .and_then(|r| r.strip_suffix("/v2.0"))
                .is_some_and(tenant_ok),
            Preset::Google => issuer == GOOGLE_ISSUER,
            Preset::GithubActions => {
                issuer == GITHUB_ACTIONS_ISSUER
                    || issuer
                        .strip_prefix(GITHUB_ACTIONS_ISSUER)
                        .and_then(|r| r.strip_prefix('/'))
                        .is_some_and(|e| !e.is_empty() && !e.contains('/'))
            }
            Preset::Okta | Preset::Kubernetes | Preset::Spiffe => !issuer.is_empty(),
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Preset::EntraV1 => {
                "preset entra-v1 expects issuer https://sts.windows.net/{tenant-id}/ \
                 (tokens from the v2.0 endpoint use preset entra-v2)"
                    .into()
            }
            Preset::EntraV2 => "preset entra-v2 expects issuer \
                 https://login.microsoftonline.com/{tenant-id}/v2.0 with a real tenant id \
                 (tokens from the v1.0 endpoint use preset entra-v1)"
                .into(),
            Preset::Google => format!("preset google expects issuer {GOOGLE_ISSUER}"),
            Preset::GithubActions => format!(
                "preset github-actions expects issuer {GITHUB_ACTIONS_ISSUER} \
                 (or {GITHUB_ACTIONS_ISSUER}/{{enterprise}})"
            ),
            _ => "issuer is required".into(),
        })
    }
}

/// Multi-tenant names never appear in a token's `iss`.
fn tenant_ok(t: &str) -> bool {
    !t.is_empty() && !t.contains('/') && !["common", "organizations", "consumers"].contains(&t)
}

fn entra_v1_tenant(issuer: &str) -> Option<&str> {
    issuer
        .strip_prefix("https://sts.windows.net/")
        .and_then(|r| r.strip_suffix('/'))
        .filter(|t| tenant_ok(t))
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                format!("unknown preset {s:?}; known presets: {}", names.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for Preset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Vec<String> {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    OneOrMany::deserialize(d).map(Into::into)
}

fn opt_one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    OneOrMany::deserialize(d).map(|v| Some(v.into()))
}

/// Why an [`IssuerConfig`] cannot become a verifier.
///
/// ```
/// use skillgate::identity::{IssuerConfig, IssuerConfigError};
/// let cfg: IssuerConfig = toml::from_str(r#"preset = "okta"
///     audience = "api://skillgate""#).unwrap();
/// assert!(matches!(cfg.verifier(), Err(IssuerConfigError::NoIssuer)));
/// ```
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerConfigError {
    /// No `issuer`, and the preset has no default one.
    #[error("issuer is required")]
    NoIssuer,
    /// The issuer does not have the shape the preset expects.
    #[error("{0}")]
    BadIssuer(String),
    /// An algorithm name that is unknown, symmetric or `none`.
    #[error("algorithms: {0:?} is not an accepted asymmetric algorithm")]
    BadAlgorithm(String),
    /// `typ_required` without any `typ` values.
    #[error("typ_required needs typ (the accepted values)")]
    TypRequiredWithoutTyp,
    /// The verifier builder refused the result.
    #[error(transparent)]
    Build(#[from] ConfigError),
}

/// One trusted issuer (a `[[identity.issuers]]` table). Every field but
/// `audience` is optional; `preset` supplies defaults that the other fields
/// override one by one.
///
/// | key | meaning |
/// |---|---|
/// | `preset` | one of [`Preset`]'s names |
/// | `issuer` | exact `iss` (required unless the preset has a default) |
/// | `issuer_aliases` | other `iss` spellings routed to this issuer |
/// | `audience` (alias `audiences`) | one string or a list; a token must name one (RFC 7519 §4.1.3) |
/// | `algorithms` | e.g. `["RS256"]` (default: the preset's, else every asymmetric one) |
/// | `typ`, `typ_required` | accepted `typ` values; required unless `typ_required = false` |
/// | `leeway_secs` | clock skew on `exp` / `nbf` (default 60) |
/// | `key_refresh_interval_secs` | minimum time between unknown-`kid` refreshes (default 30) |
/// | `key_max_stale_secs` | cached keys served while the IdP is down, at most this old (default 86,400) |
/// | `jwks_file`, `jwks_url` | key source; neither = the preset's default, else OIDC discovery |
/// | `subject_claim` | claim path of the subject |
/// | `groups_claim`, `scopes_claim`, `client_id_claim` | one path or a list |
/// | `attributes` | table of attribute name = claim path, merged over the preset's |
/// | `require` | conditions every token must meet, merged over the preset's by path |
/// | `group_rules` | list of `{ when = {…}, groups = [...] }` |
///
/// ```
/// use skillgate::identity::IssuerConfig;
/// let cfg = IssuerConfig::new("https://idp.example.com", ["skillgate"]);
/// assert_eq!(cfg.verifier().unwrap().issuer(), "https://idp.example.com");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// The claim-shape preset.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// The issuer identifier (`iss`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Other accepted spellings of `iss`.
    #[serde(default)]
    pub issuer_aliases: Vec<String>,
    /// Accepted audiences (at least one).
    #[serde(alias = "audiences", deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Algorithm names.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Accepted `typ` values.
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub typ: Option<Vec<String>>,
    /// Whether `typ` must be present (default true when `typ` is set here).
    #[serde(default)]
    pub typ_required: Option<bool>,
    /// Clock-skew leeway in seconds.
    #[serde(default)]
    pub leeway_secs: Option<u64>,
    /// Minimum seconds between key refreshes caused by an unknown `kid` (default 30).
    #[serde(default)]
    pub key_refresh_interval_secs: Option<u64>,
    /// Longest time cached keys are served while the IdP cannot be reached,
    /// in seconds (default 86,400); after that every token is refused.
    #[serde(default)]
    pub key_max_stale_secs: Option<u64>,
    /// A JWKS file.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Claim path of the subject.
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Claim paths of groups.
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub groups_claim: Option<Vec<String>>,
    /// Claim paths of scopes.
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub scopes_claim: Option<Vec<String>>,
    /// Claim paths of the client id, first present wins.
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub client_id_claim: Option<Vec<String>>,
    /// Attribute name → claim path, merged over the preset's.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Acceptance conditions, merged over the preset's by claim path.
    #[serde(default)]
    pub require: Conditions,
    /// Group rules, after the preset's (presets have none).
    #[serde(default)]
    pub group_rules: Vec<GroupRule>,
}

impl IssuerConfig {
    /// A configuration for `issuer` and `audiences` with every other field unset.
    pub fn new<I, A>(issuer: impl Into<String>, audiences: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        IssuerConfig {
            preset: None,
            issuer: Some(issuer.into()),
            issuer_aliases: Vec::new(),
            audience: audiences.into_iter().map(Into::into).collect(),
            algorithms: None,
            typ: None,
            typ_required: None,
            leeway_secs: None,
            key_refresh_interval_secs: None,
            key_max_stale_secs: None,
            jwks_file: None,
            jwks_url: None,
            subject_claim: None,
            groups_claim: None,
            scopes_claim: None,
            client_id_claim: None,
            attributes: BTreeMap::new(),
            require: Conditions::new(),
            group_rules: Vec::new(),
        }
    }

    /// The issuer this configuration trusts (configured, else the preset's default).
    pub fn effective_issuer(&self) -> Option<&str> {
        self.issuer
            .as_deref()
            .or_else(|| self.preset.and_then(Preset::default_issuer))
    }

    /// The verifier builder this configuration describes (no I/O).
    ///
    /// # Errors
    /// [`IssuerConfigError`] naming the problem.
    pub fn builder(&self) -> Result<JwtVerifierBuilder, IssuerConfigError> {
        let issuer = self
            .effective_issuer()
            .filter(|i| !i.is_empty())
            .ok_or(IssuerConfigError::NoIssuer)?
            .to_owned();
        if let Some(p) = self.preset {
            p.check_issuer(&issuer)
                .map_err(IssuerConfigError::BadIssuer)?;
        }
        let source = match (&self.jwks_file, &self.jwks_url) {
            (Some(f), _) => KeySource::JwksFile(f.clone()),
            (None, Some(u)) => KeySource::JwksUrl(u.clone()),
            (None, None) => self
                .preset
                .and_then(|p| p.default_keys(&issuer))
                .unwrap_or(KeySource::Discovery),
        };
        let mut b = JwtVerifier::builder(issuer.clone()).keys(source);
        if let Some(p) = self.preset {
            b = b.preset(p);
        }
        for alias in &self.issuer_aliases {
            b = b.issuer_alias(alias.clone());
        }
        for aud in &self.audience {
            b = b.audience(aud.clone());
        }
        if let Some(algs) = &self.algorithms {
            b = b.algorithms(
                algs.iter()
                    .map(|a| parse_algorithm(a))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let preset_typ = match self.preset.map(Preset::typ_rule) {
            Some(TypRule::Require(v) | TypRule::IfPresent(v)) => Some(v),
            _ => None,
        };
        match (&self.typ, self.typ_required) {
            (Some(t), req) => {
                b = b.typ_rule(if req.unwrap_or(true) {
                    TypRule::Require(t.clone())
                } else {
                    TypRule::IfPresent(t.clone())
                });
            }
            (None, Some(req)) => {
                let t = preset_typ.ok_or(IssuerConfigError::TypRequiredWithoutTyp)?;
                b = b.typ_rule(if req {
                    TypRule::Require(t)
                } else {
                    TypRule::IfPresent(t)
                });
            }
            (None, None) => {}
        }
        if let Some(l) = self.leeway_secs {
            b = b.leeway(Duration::from_secs(l));
        }
        if let Some(i) = self.key_refresh_interval_secs {
            b = b.refresh_interval(Duration::from_secs(i));
        }
        if let Some(m) = self.key_max_stale_secs {
            b = b.max_stale(Duration::from_secs(m));
        }
        if let Some(s) = &self.subject_claim {
            b = b.subject_claim(s.clone());
        }
        if let Some(g) = &self.groups_claim {
            b = b.groups_claims(g.iter().cloned());
        }
        if let Some(s) = &self.scopes_claim {
            b = b.scopes_claims(s.iter().cloned());
        }
        if let Some(c) = &self.client_id_claim {
            b = b.client_id_claims(c.iter().cloned());
        }
        for (name, path) in &self.attributes {
            b = b.attribute(name.clone(), path.clone());
        }
        b = b.require(&self.require);
        for r in &self.group_rules {
            b = b.group_rule(r.clone());
        }
        Ok(b)
    }

    /// Builds the verifier (no I/O; see [`JwtVerifier::preload`]).
    ///
    /// # Errors
    /// [`IssuerConfigError`] naming the problem.
    pub fn verifier(&self) -> Result<JwtVerifier, IssuerConfigError> {
        Ok(self.builder()?.build()?)
    }
}

/// Parses an algorithm name, refusing anything outside [`SUPPORTED_ALGORITHMS`].
///
/// # Errors
/// [`IssuerConfigError::BadAlgorithm`].
pub(crate) fn parse_algorithm(name: &str) -> Result<Algorithm, IssuerConfigError> {
    name.parse::<Algorithm>()
        .ok()
        .filter(|a| SUPPORTED_ALGORITHMS.contains(a))
        .ok_or_else(|| IssuerConfigError::BadAlgorithm(name.to_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_cache_settings_parse_and_build() {
        let c: IssuerConfig = toml::from_str(
            "issuer = \"https://idp.example.com\"\naudience = \"a\"\nkey_refresh_interval_secs = 5\nkey_max_stale_secs = 600",
        )
        .unwrap();
        assert_eq!(
            (c.key_refresh_interval_secs, c.key_max_stale_secs),
            (Some(5), Some(600))
        );
        assert!(c.verifier().is_ok());
    }

    use super::*;

    #[test]
    fn preset_names_round_trip() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
            assert!(p.mapping().validate().is_ok(), "{p}");
        }
        let e = toml::from_str::<IssuerConfig>("preset = \"gitlab\"\naudience = \"a\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown preset \"gitlab\""), "{e}");
        assert!(e.contains("github-actions"), "{e}");
    }

    #[test]
    fn issuer_shapes_are_checked() {
        let v1 = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
        let v2 = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
        assert!(Preset::EntraV1.check_issuer(v1).is_ok());
        assert!(Preset::EntraV1.check_issuer(v2).is_err());
        assert!(Preset::EntraV2.check_issuer(v2).is_ok());
        assert!(Preset::EntraV2.check_issuer(v1).is_err());
        assert!(
            Preset::EntraV2
                .check_issuer("https://login.microsoftonline.com/common/v2.0")
                .is_err()
        );
        assert!(
            Preset::GithubActions
                .check_issuer(GITHUB_ACTIONS_ISSUER)
                .is_ok()
        );
        assert!(
            Preset::GithubActions
                .check_issuer("https://token.actions.githubusercontent.com/acme")
                .is_ok()
        );
        assert!(
            Preset::GithubActions
                .check_issuer("https://evil.example")
                .is_err()
        );
        assert!(Preset::Google.check_issuer("accounts.google.com").is_err());
        assert!(matches!(
            Preset::EntraV1.default_keys(v1),
            Some(KeySource::JwksUrl(u)) if u == "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/keys"
        ));
    }

    #[test]
    fn missing_audience_and_public_issuers_without_require_are_errors() {
        let e = toml::from_str::<IssuerConfig>("preset = \"kubernetes\"\nissuer = \"https://k\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `audience`"), "{e}");
        let cfg: IssuerConfig =
            toml::from_str("preset = \"github-actions\"\naudience = \"a\"").unwrap();
        let e = cfg.verifier().unwrap_err();
        assert!(e.to_string().contains("require"), "{e}");
        let cfg: IssuerConfig =
            toml::from_str("preset = \"kubernetes\"\nissuer = \"https://k\"\naudience = []")
                .unwrap();
        assert_eq!(
            cfg.verifier().unwrap_err(),
            IssuerConfigError::Build(ConfigError::NoAudience)
        );
    }

    #[test]
    fn typ_and_algorithms_config() {
        let cfg: IssuerConfig =
            toml::from_str("issuer = \"https://i\"\naudience = \"a\"\nalgorithms = [\"HS256\"]")
                .unwrap();
        assert_eq!(
            cfg.verifier().unwrap_err(),
            IssuerConfigError::BadAlgorithm("HS256".into())
        );
        let cfg: IssuerConfig =
            toml::from_str("issuer = \"https://i\"\naudience = \"a\"\ntyp_required = true")
                .unwrap();
        assert_eq!(
            cfg.verifier().unwrap_err(),
            IssuerConfigError::TypRequiredWithoutTyp
        );
    }
}
