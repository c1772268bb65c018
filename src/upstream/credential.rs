//! Where the gateway's own upstream credential comes from: [`CredentialSource`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

/// The credential the gateway presents upstream. Caller credentials never are.
///
/// `Debug` never prints the secret.
///
/// ```
/// use skillgate::upstream::Credential;
/// let c = Credential::api_key("sk-ant-example");
/// assert_eq!(format!("{c:?}"), "Credential::ApiKey([REDACTED])");
/// ```
#[derive(Clone)]
pub enum Credential {
    /// Sent as `x-api-key` (an Anthropic API key).
    ApiKey(SecretString),
    /// Sent as `Authorization: Bearer`, as is (e.g. a static auth token).
    Bearer(SecretString),
    /// An access token from Anthropic's OAuth token endpoint (for example
    /// minted by [`FederatedCredential`](super::FederatedCredential)): sent
    /// as `Authorization: Bearer`, and the API beta
    /// [`OAUTH_BETA`](super::OAUTH_BETA) is added to `anthropic-beta`, which
    /// the API requires before it accepts such tokens.
    OAuthBearer(SecretString),
}

impl Credential {
    /// An API key credential.
    pub fn api_key(key: impl Into<String>) -> Self {
        Credential::ApiKey(SecretString::from(key.into()))
    }
    /// A bearer token credential.
    pub fn bearer(token: impl Into<String>) -> Self {
        Credential::Bearer(SecretString::from(token.into()))
    }
    /// An OAuth access token credential (see [`Credential::OAuthBearer`]).
    pub fn oauth_bearer(token: impl Into<String>) -> Self {
        Credential::OAuthBearer(SecretString::from(token.into()))
    }
    /// The header name and value to send.
    pub(crate) fn header(&self) -> (&'static str, String) {
        match self {
            Credential::ApiKey(k) => ("x-api-key", k.expose_secret().to_owned()),
            Credential::Bearer(t) | Credential::OAuthBearer(t) => {
                ("authorization", format!("Bearer {}", t.expose_secret()))
            }
        }
    }
    /// The `anthropic-beta` flag the API requires with this credential, if any.
    ///
    /// ```
    /// use skillgate::upstream::{Credential, OAUTH_BETA};
    /// assert_eq!(Credential::oauth_bearer("t").required_beta(), Some(OAUTH_BETA));
    /// assert_eq!(Credential::bearer("t").required_beta(), None);
    /// assert_eq!(Credential::api_key("k").required_beta(), None);
    /// ```
    pub fn required_beta(&self) -> Option<&'static str> {
        match self {
            Credential::OAuthBearer(_) => Some(super::OAUTH_BETA),
            Credential::ApiKey(_) | Credential::Bearer(_) => None,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("Credential::ApiKey([REDACTED])"),
            Credential::Bearer(_) => f.write_str("Credential::Bearer([REDACTED])"),
            Credential::OAuthBearer(_) => f.write_str("Credential::OAuthBearer([REDACTED])"),
        }
    }
}

/// Why no credential could be produced. Never contains the secret.
///
/// ```
/// use skillgate::upstream::CredentialError;
/// let e = CredentialError::Missing("ANTHROPIC_API_KEY is not set".into());
/// assert!(e.to_string().contains("not set"));
/// ```
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// Not configured or empty.
    #[error("upstream credential missing: {0}")]
    Missing(String),
    /// Could not be read.
    #[error("upstream credential unreadable: {0}")]
    Unreadable(String),
    /// A token exchange (e.g. RFC 7523 jwt-bearer at `/v1/oauth/token`)
    /// failed: unreachable, timed out, refused, or answered with something
    /// that is not a usable access token. `message` never contains the
    /// assertion or an access token.
    #[error("upstream token exchange failed: {message}")]
    Exchange {
        /// The token endpoint's HTTP status, when it answered.
        status: Option<u16>,
        /// What went wrong (the endpoint's RFC 6749 §5.2 `error` code and,
        /// when safe, a shortened `error_description`).
        message: String,
    },
}

/// Supplies the upstream credential for each forwarded request.
///
/// ```
/// use async_trait::async_trait;
/// use skillgate::upstream::{Credential, CredentialError, CredentialSource};
/// struct FromVault;
/// #[async_trait]
/// impl CredentialSource for FromVault {
///     async fn credential(&self) -> Result<Credential, CredentialError> {
///         Ok(Credential::api_key("sk-ant-from-vault"))
///     }
/// }
/// ```
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a skillgate `CredentialSource`",
    note = "implement `async fn credential(&self) -> Result<Credential, CredentialError>` with #[async_trait]"
)]
pub trait CredentialSource: Send + Sync + 'static {
    /// The credential to use now.
    async fn credential(&self) -> Result<Credential, CredentialError>;

    /// Called by [`Upstream`](super::Upstream) when the API answered `401`
    /// to a request made with `rejected`, which this source produced: a
    /// caching source should drop that credential so the next call obtains
    /// a fresh one. The default does nothing.
    fn invalidate(&self, rejected: &Credential) {
        let _ = rejected;
    }
}

/// A fixed credential, e.g. read once from an environment variable.
///
/// ```
/// use skillgate::upstream::{Credential, StaticCredential};
/// let fixed = StaticCredential::new(Credential::api_key("sk-ant-example"));
/// // From the environment; an unset variable is an error, never an empty key.
/// assert!(StaticCredential::from_env("SURELY_UNSET_UPSTREAM_KEY_VAR").is_err());
/// # let _ = fixed;
/// ```
#[derive(Clone, Debug)]
pub struct StaticCredential(Credential);

impl StaticCredential {
    /// Wraps a credential.
    pub fn new(c: Credential) -> Self {
        StaticCredential(c)
    }

    /// An API key from the environment variable `var`.
    ///
    /// # Errors
    /// [`CredentialError::Missing`] if unset or empty.
    pub fn from_env(var: &str) -> Result<Self, CredentialError> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(StaticCredential(Credential::api_key(v.trim()))),
            _ => Err(CredentialError::Missing(format!("{var} is not set"))),
        }
    }
}

#[async_trait]
impl CredentialSource for StaticCredential {
    async fn credential(&self) -> Result<Credential, CredentialError> {
        Ok(self.0.clone())
    }
}

/// An API key read from a file (e.g. a mounted secret), re-read whenever the
/// file's modification time changes, so rotation needs no restart.
/// Surrounding whitespace is ignored.
///
/// ```
/// use skillgate::upstream::FileCredential;
/// let c = FileCredential::new("/run/secrets/anthropic-api-key");
/// # let _ = c;
/// ```
#[derive(Debug)]
pub struct FileCredential {
    path: PathBuf,
    cache: Mutex<Option<(SystemTime, Credential)>>,
}

impl FileCredential {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileCredential {
            path: path.into(),
            cache: Mutex::new(None),
        }
    }
}

#[async_trait]
impl CredentialSource for FileCredential {
    async fn credential(&self) -> Result<Credential, CredentialError> {
        let shown = self.path.display().to_string();
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| CredentialError::Unreadable(format!("{shown}: {}", e.kind())))?;
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some((t, c)) = &*self.cache.lock().unwrap_or_else(|p| p.into_inner())
            && *t == mtime
        {
            return Ok(c.clone());
        }
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| CredentialError::Unreadable(format!("{shown}: {}", e.kind())))?;
        let key = text.trim();
        if key.is_empty() {
            return Err(CredentialError::Missing(format!("{shown} is empty")));
        }
        let c = Credential::api_key(key);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((mtime, c.clone()));
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_credential_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "sk-one\n").unwrap();
        let src = FileCredential::new(&p);
        assert_eq!(src.credential().await.unwrap().header().1, "sk-one");
        // Make sure the mtime moves even on coarse-grained filesystems.
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::write(&p, "sk-two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(src.credential().await.unwrap().header().1, "sk-two");
        std::fs::write(&p, "  ").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(matches!(
            src.credential().await,
            Err(CredentialError::Missing(_))
        ));
        std::fs::remove_file(&p).unwrap();
        let e = src.credential().await.unwrap_err();
        assert!(matches!(e, CredentialError::Unreadable(_)));
    }

    #[test]
    fn env_credential() {
        assert!(StaticCredential::from_env("SKILLGATE_TEST_SURELY_UNSET_VAR").is_err());
    }
}
