//! [`PolicyHandle`]: the policy in force, with atomic hot reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::{Evaluation, PolicyEngine, PolicyError, PolicyInput, RulesPolicy};

/// The policy in force. Clones share it; [`replace`](Self::replace) swaps
/// it atomically for every clone (requests in flight finish under the policy
/// they started with).
///
/// ```
/// use skillgate::policy::{PolicyHandle, RulesPolicy};
/// let handle = PolicyHandle::new(RulesPolicy::from_toml("", "empty.toml").unwrap());
/// let next = RulesPolicy::from_toml("[[rule]]\nid = \"all\"\neffect = \"allow\"\n", "p.toml").unwrap();
/// handle.replace(next);
/// ```
#[derive(Clone)]
pub struct PolicyHandle {
    current: Arc<RwLock<Arc<dyn PolicyEngine>>>,
    last_error: Arc<Mutex<Option<PolicyError>>>,
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandle").finish_non_exhaustive()
    }
}

impl PolicyHandle {
    /// A handle holding `engine`.
    pub fn new(engine: impl PolicyEngine) -> Self {
        PolicyHandle {
            current: Arc::new(RwLock::new(Arc::new(engine))),
            last_error: Arc::new(Mutex::new(None)),
        }
    }

    /// The engine in force now.
    pub fn current(&self) -> Arc<dyn PolicyEngine> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `engine` in force.
    pub fn replace(&self, engine: impl PolicyEngine) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(engine);
    }

    /// The error of the last failed reload, cleared by a successful one.
    pub fn last_error(&self) -> Option<PolicyError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads `path` as a [`RulesPolicy`] and puts it in force. On error the
    /// old policy stays in force, the error is logged and kept in
    /// [`last_error`](Self::last_error).
    ///
    /// # Errors
    /// The [`PolicyError`] (file, line, rule).
    pub fn reload_file(&self, path: &Path) -> Result<(), PolicyError> {
        self.reload_with(&path.display().to_string(), || RulesPolicy::from_file(path))
    }

    /// Builds an engine of any kind with `load` and puts it in force; the
    /// engine-agnostic form of [`reload_file`](Self::reload_file). `what`
    /// names the source in the log (e.g. the file). On error the old policy
    /// stays in force, the error is logged and kept in
    /// [`last_error`](Self::last_error).
    ///
    /// ```
    /// use skillgate::policy::{PolicyHandle, RulesPolicy};
    /// let handle = PolicyHandle::new(RulesPolicy::from_toml("", "empty.toml").unwrap());
    /// let err = handle.reload_with("p.toml", || RulesPolicy::from_toml("[[rule]]\nid = 1\n", "p.toml"));
    /// assert!(err.is_err() && handle.last_error().is_some());
    /// ```
    ///
    /// # Errors
    /// The [`PolicyError`] returned by `load`.
    pub fn reload_with<E: PolicyEngine>(
        &self,
        what: &str,
        load: impl FnOnce() -> Result<E, PolicyError>,
    ) -> Result<(), PolicyError> {
        match load() {
            Ok(p) => {
                self.replace(p);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!(source = what, "policy loaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the previous policy stays in force");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Reloads `path` whenever its modification time changes (checked every
    /// `interval`) and, on Unix, on SIGHUP. Runs until the returned task is
    /// aborted. Call from within a Tokio runtime.
    pub fn watch_file(
        &self,
        path: impl Into<PathBuf>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let path = path.into();
        let load = path.clone();
        self.watch_with(vec![path], interval, move || RulesPolicy::from_file(&load))
    }

    /// Reloads with `load` whenever the modification time of any of `paths`
    /// changes (checked every `interval`) and, on Unix, on SIGHUP; the
    /// engine-agnostic form of [`watch_file`](Self::watch_file) (a Cedar
    /// policy watches its policies, schema and context files). Runs until
    /// the returned task is aborted. Call from within a Tokio runtime.
    pub fn watch_with<E, F>(
        &self,
        paths: Vec<PathBuf>,
        interval: Duration,
        load: F,
    ) -> tokio::task::JoinHandle<()>
    where
        E: PolicyEngine,
        F: Fn() -> Result<E, PolicyError> + Send + 'static,
    {
        let handle = self.clone();
        let mtimes = move |ps: &[PathBuf]| -> Vec<Option<SystemTime>> {
            ps.iter()
                .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
                .collect()
        };
        let what = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // Taken now, not when the task first runs, so no change is missed.
        let mut seen = mtimes(&paths);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hup_fired = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await.is_some(),
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_fired = std::future::pending::<bool>();
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    fired = hup_fired => fired,
                };
                let now = mtimes(&paths);
                if forced || now != seen {
                    seen = now;
                    let _ = handle.reload_with(&what, &load);
                }
            }
        })
    }
}

impl PolicyEngine for PolicyHandle {
    fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation {
        self.current().evaluate(input)
    }
}
