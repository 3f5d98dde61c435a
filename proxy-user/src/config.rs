//! The proxy's TOML configuration, with the defaults documented in
//! `proxy.example.toml` (which is also the embedded default).

use std::path::Path;

use serde::Deserialize;

/// The embedded default configuration, used when `--config` is not given.
pub const DEFAULT_TOML: &str = include_str!("../../proxy.example.toml");

/// Errors reading a configuration. The message names the bad field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML did not parse or a field is wrong; toml's message names the
    /// field and the line.
    #[error("{origin}: {source}")]
    Parse {
        /// File name or "embedded default".
        origin: String,
        /// The cause.
        source: toml::de::Error,
    },
    /// A value parsed but is not acceptable.
    #[error("{origin}: field `{field}`: {reason}")]
    Invalid {
        /// File name or "embedded default".
        origin: String,
        /// Dotted path of the field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Top-level configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of this proxy instance: maps are pinned under `/sys/fs/bpf/<instance>/`.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Kernel fast path.
    #[serde(default)]
    pub fastpath: FastPathConfig,
}

/// `[fastpath]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FastPathConfig {
    /// Load the XDP programs at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Endpoint-facing interfaces to attach XDP to.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Seconds between counter log lines (0: never).
    #[serde(default = "default_stats_interval")]
    pub stats_interval_secs: u64,
}

impl Default for FastPathConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interfaces: Vec::new(),
            stats_interval_secs: default_stats_interval(),
        }
    }
}

/// Whether `name` is safe as a directory name under bpffs.
pub fn valid_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn default_instance() -> String {
    "h323proxy".into()
}
fn yes() -> bool {
    true
}
fn default_stats_interval() -> u64 {
    10
}

impl Config {
    /// Parse and validate TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        let invalid = |field, reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            field,
            reason,
        };
        if !valid_instance(&cfg.instance) {
            return Err(invalid(
                "instance",
                format!(
                    "{:?} must be 1-64 characters of [A-Za-z0-9_-]",
                    cfg.instance
                ),
            ));
        }
        if let Some(bad) = cfg
            .fastpath
            .interfaces
            .iter()
            .find(|i| i.is_empty() || i.len() > 15)
        {
            return Err(invalid(
                "fastpath.interfaces",
                format!("{bad:?} is not an interface name (1-15 characters)"),
            ));
        }
        Ok(cfg)
    }

    /// Read a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Self::parse(DEFAULT_TOML, "embedded default"),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let cfg = Config::load(None).expect("default config");
        assert_eq!(cfg.instance, "h323proxy");
        assert!(cfg.fastpath.enabled);
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Config::parse("[fastpath]\nenabeld = true\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("enabeld"), "{err}");
    }

    #[test]
    fn bad_instance_is_named() {
        let err = Config::parse("instance = \"../etc\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("field `instance`"), "{err}");
    }
}
