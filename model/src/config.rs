//! The configuration file, `scopewatch.toml`, in the project's two steps:
//! [`ConfigFile`] is what serde reads (unknown keys are errors, every field
//! documented, units in names), and [`Config`] is the validated runtime form
//! that the rest of the program uses. Later parts add their own sections.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::request::FhirBase;

/// The data directory used when neither `--data` nor the config names one.
pub const DEFAULT_DATA_DIR: &str = "./scopewatch-data";

/// `scopewatch.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the lake, checkpoints and state live (default `./scopewatch-data`;
    /// `--data` overrides it).
    pub data_dir: Option<PathBuf>,
    /// The app registry TOML (relative paths are relative to the config file).
    pub registry: Option<PathBuf>,
    /// How FHIR request paths are read.
    #[serde(default)]
    pub fhir: FhirSection,
    /// Scope analysis settings.
    #[serde(default)]
    pub analysis: AnalysisSection,
}

/// `[fhir]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSection {
    /// Path prefixes of the FHIR base, e.g. `["/fhir/r4/{tenant}"]`; a `{name}`
    /// segment matches any one segment. Empty: the base is found by the first
    /// segment that is an R4 resource type.
    #[serde(default)]
    pub base_paths: Vec<String>,
}

/// `[analysis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSection {
    /// Days of history a scope must go unused before it is called unused.
    #[serde(default = "default_window_days")]
    pub observation_window_days: u32,
    /// Days without calls or grants after which an app is stale.
    #[serde(default = "default_window_days")]
    pub stale_after_days: u32,
}

fn default_window_days() -> u32 {
    90
}

impl Default for AnalysisSection {
    fn default() -> Self {
        AnalysisSection {
            observation_window_days: default_window_days(),
            stale_after_days: default_window_days(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub registry: Option<PathBuf>,
    pub fhir_base: FhirBase,
    pub observation_window_days: u32,
    pub stale_after_days: u32,
}

/// A configuration that cannot be used, with where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source} (check the path given to --config)")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("config file {file}: {message}")]
    Syntax { file: String, message: String },
    #[error("config file {file}: field `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            registry: None,
            fhir_base: FhirBase::auto(),
            observation_window_days: default_window_days(),
            stale_after_days: default_window_days(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Config::from_toml_str(&text, &file, base_dir)
    }

    /// Parses and validates config text; `file` names it in errors and
    /// relative paths are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        raw.validate(file, base_dir)
    }
}

impl ConfigFile {
    /// Turns what was read into the runtime form, or says which field is wrong.
    pub fn validate(self, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            file: file.to_string(),
            field: field.to_string(),
            message,
        };
        let resolve = |p: PathBuf| if p.is_relative() { base_dir.join(p) } else { p };
        let fhir_base = if self.fhir.base_paths.is_empty() {
            FhirBase::auto()
        } else {
            FhirBase::parse_many(self.fhir.base_paths.iter().map(String::as_str))
                .map_err(|e| invalid("fhir.base_paths", e.to_string()))?
        };
        for (field, days) in [
            (
                "analysis.observation_window_days",
                self.analysis.observation_window_days,
            ),
            ("analysis.stale_after_days", self.analysis.stale_after_days),
        ] {
            if days == 0 || days > 3660 {
                return Err(invalid(field, format!("{days} days: use 1 to 3660")));
            }
        }
        Ok(Config {
            data_dir: self
                .data_dir
                .map(resolve)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            registry: self.registry.map(resolve),
            fhir_base,
            observation_window_days: self.analysis.observation_window_days,
            stale_after_days: self.analysis.stale_after_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::from_toml_str("registry = \"reg.toml\"\n", "x.toml", Path::new("/etc/sw"))
            .unwrap();
        assert_eq!(c.registry, Some(PathBuf::from("/etc/sw/reg.toml")));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.observation_window_days, 90);
        assert!(c.fhir_base.is_auto());
    }

    #[test]
    fn unknown_and_bad_fields_are_named() {
        let e = Config::from_toml_str("registy = \"x\"\n", "sw.toml", Path::new(".")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("sw.toml") && msg.contains("registy"), "{msg}");
        let e = Config::from_toml_str(
            "[analysis]\nobservation_window_days = 0\n",
            "sw.toml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("analysis.observation_window_days"), "{e}");
        let c = Config::from_toml_str(
            "[fhir]\nbase_paths = [\"/fhir/r4/{tenant}\"]\n",
            "sw.toml",
            Path::new("."),
        )
        .unwrap();
        assert!(!c.fhir_base.is_auto());
    }
}
