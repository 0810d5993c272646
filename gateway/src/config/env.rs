//! Where settings read the environment from: the process in production, a map in
//! tests. This is the only place the process environment is read.

use std::collections::BTreeMap;

use hawser_crds::SecretValue;

use super::{ConfigError, SecretResolver, SpecError, invalid};

/// Where settings read environment variables from.
pub trait Env {
    /// A variable's value; unset and empty are the same.
    fn var(&self, key: &str) -> Option<String>;

    /// This machine's name (`HOSTNAME`).
    fn hostname(&self) -> Option<String> {
        self.var("HOSTNAME")
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one reader of the process environment"
    )]
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }

    fn hostname(&self) -> Option<String> {
        self.var("HOSTNAME")
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
    }
}

impl ProcessEnv {
    /// The process's variables whose names pass `keep`, for a child process that
    /// must inherit only what it needs.
    #[allow(
        clippy::disallowed_methods,
        reason = "the one reader of the process environment"
    )]
    pub fn vars_where(
        keep: impl Fn(&str) -> bool,
    ) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        std::env::vars_os()
            .filter(|(key, _)| key.to_str().is_some_and(&keep))
            .collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

/// A boolean variable: `true`/`1` or `false`/`0`; anything else is an error rather
/// than silently off.
pub(super) fn boolean(env: &dyn Env, var: &str) -> Result<Option<bool>, ConfigError> {
    match env.var(var).as_deref() {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(invalid(var, format!("{other:?}: use true or false"))),
    }
}

/// A comma-separated list, each entry trimmed and lower-cased.
pub(super) fn list(env: &dyn Env, var: &str) -> Option<Vec<String>> {
    env.var(var).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// A duration (`30s`, `24h`), named by its variable when it does not parse.
pub(super) fn duration(
    env: &dyn Env,
    var: &str,
) -> Result<Option<std::time::Duration>, ConfigError> {
    env.var(var)
        .map(|v| {
            hawser_crds::Duration::parse(&v)
                .map(|d| d.get())
                .map_err(|e| invalid(var, e.to_string()))
        })
        .transpose()
}

/// Resolves the config file's `env:` secrets from the environment; inline values
/// pass through.
pub(super) struct FileSecrets<'a>(pub &'a dyn Env);

impl SecretResolver for FileSecrets<'_> {
    fn resolve(&self, value: &SecretValue, field: &str) -> Result<String, SpecError> {
        match value {
            SecretValue::Inline(v) => Ok(v.clone()),
            SecretValue::Env(var) => self.0.var(var).ok_or_else(|| SpecError {
                field: field.to_owned(),
                message: format!("environment variable {var} is not set"),
            }),
            SecretValue::SecretKeyRef(_) => Err(SpecError {
                field: field.to_owned(),
                message: "secretKeyRef is only valid in an McpConnection resource; use env: VAR in the config file".to_owned(),
            }),
        }
    }
}
