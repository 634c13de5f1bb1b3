//! Layered loading: defaults < file < `CHORUS_*` environment < `--set` flags, merged on
//! `serde_json::Value`, then deserialized into [`Config`]. Unknown keys are found by comparing
//! what the user wrote with the re-serialized typed config, which also sees through
//! `#[serde(flatten)]` (a flattened struct silently swallows unknown keys otherwise).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Config;

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "CHORUS_";

/// Environment variable naming the config file (read by the binary, ignored by the key lookup).
pub const ENV_CONFIG_FILE: &str = "CHORUS_CONFIG";

/// A loaded configuration plus everything worth telling the operator about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys in the file, unknown `CHORUS_*` variables, risky settings.
    pub warnings: Vec<String>,
}

/// `:line:column` suffix of a parse error, when the parser knows it (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}"),
            (Some(l), None) => write!(f, ":{l}"),
            _ => Ok(()),
        }
    }
}

/// Why a configuration could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The message carries the I/O error (it is not chained as `source`, so `{:#}` prints it
    /// once).
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {}: unsupported extension (use .json, .yaml, .yml or .toml)", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("config file {}{location}: {message}", path.display())]
    Parse {
        path: PathBuf,
        location: Location,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("--set {key}: {message}")]
    Override { key: String, message: String },
    #[error("invalid config:\n  - {}", problems.join("\n  - "))]
    Invalid { problems: Vec<String> },
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Yaml,
    Toml,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

struct File {
    path: PathBuf,
    format: Format,
    text: String,
    value: Value,
}

impl Config {
    /// Loads a configuration. `path: None` starts from [`Config::embedded_default`], a file
    /// starts from [`Config::default`]. `env` is usually `std::env::vars()`; `overrides` are
    /// `--set` flags as (dotted key, value). Does not call [`Config::validate`].
    pub fn load<I>(
        path: Option<&Path>,
        env: I,
        overrides: &[(String, String)],
    ) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let base = match path {
            None => Config::embedded_default(),
            Some(_) => Config::default(),
        };
        let base = to_value(&base);
        let leaves = leaf_paths();
        let mut warnings = Vec::new();

        let file = path.map(read_file).transpose()?;
        let mut merged = base.clone();
        if let Some(file) = &file {
            merge(&mut merged, file.value.clone());
        }
        let after_file = merged.clone();

        // Environment, resolved against known leaf paths (names contain underscores, so
        // splitting on `_` cannot work).
        let by_env_name: HashMap<String, &Leaf> = leaves
            .iter()
            .map(|leaf| (env_name(&leaf.path), leaf))
            .collect();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != ENV_CONFIG_FILE)
            .collect();
        env.sort();
        let mut env_sets = Vec::new();
        for (var, raw) in env {
            match by_env_name.get(&var) {
                Some(leaf) => {
                    let value = parse_typed(&leaf.default, &raw);
                    set_path(&mut merged, &leaf.path, value.clone());
                    env_sets.push((var, leaf.path.clone(), value));
                }
                None => warnings.push(format!(
                    "unknown environment variable {var:?} (no config key matches)"
                )),
            }
        }

        let mut flag_sets = Vec::new();
        for (key, raw) in overrides {
            let leaf =
                leaves
                    .iter()
                    .find(|l| &l.path == key)
                    .ok_or_else(|| ConfigError::Override {
                        key: key.clone(),
                        message: match suggest(key, leaves.iter().map(|l| l.path.as_str())) {
                            Some(s) => format!("unknown config key (did you mean {s:?}?)"),
                            None => "unknown config key".into(),
                        },
                    })?;
            let value = parse_typed(&leaf.default, raw);
            set_path(&mut merged, &leaf.path, value.clone());
            flag_sets.push((key.clone(), leaf.path.clone(), value));
        }

        let config: Config = match serde_json::from_value(merged) {
            Ok(config) => config,
            Err(err) => {
                return Err(attribute_error(
                    err,
                    file.as_ref(),
                    after_file,
                    &env_sets,
                    &flag_sets,
                ))
            }
        };

        if let Some(file) = &file {
            let typed = to_value(&config);
            let mut unknown = Vec::new();
            unknown_keys(&file.value, &typed, "", &mut unknown);
            warnings.extend(unknown);
        }
        warnings.extend(config.warnings());
        Ok(Loaded { config, warnings })
    }
}

fn to_value(config: &Config) -> Value {
    // Serializing plain structs of strings, numbers and durations cannot fail.
    serde_json::to_value(config).unwrap_or(Value::Null)
}

fn read_file(path: &Path) -> Result<File, ConfigError> {
    let format = Format::of(path).ok_or_else(|| ConfigError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let parse_err = |location: Location, message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        location,
        message,
    };
    let value: Value =
        match format {
            Format::Json => serde_json::from_str(&text)
                .map_err(|e| parse_err(json_location(&e), e.to_string()))?,
            Format::Yaml => serde_yaml::from_str(&text)
                .map_err(|e| parse_err(yaml_location(&e), e.to_string()))?,
            Format::Toml => toml::from_str(&text)
                .map_err(|e| parse_err(toml_location(&text, &e), e.message().trim().to_string()))?,
        };
    let value = match value {
        Value::Null => Value::Object(Map::new()),
        Value::Object(_) => value,
        _ => {
            return Err(parse_err(
                Location::default(),
                "the top level must be a mapping of sections".into(),
            ))
        }
    };
    Ok(File {
        path: path.to_path_buf(),
        format,
        text,
        value,
    })
}

fn json_location(e: &serde_json::Error) -> Location {
    if e.line() == 0 {
        Location::default()
    } else {
        Location {
            line: Some(e.line()),
            column: Some(e.column()),
        }
    }
}

fn yaml_location(e: &serde_yaml::Error) -> Location {
    e.location()
        .map(|l| Location {
            line: Some(l.line()),
            column: Some(l.column()),
        })
        .unwrap_or_default()
}

fn toml_location(text: &str, e: &toml::de::Error) -> Location {
    let Some(span) = e.span() else {
        return Location::default();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Location {
        line: Some(line),
        column: Some(column),
    }
}

/// Finds which layer made typed deserialization fail, so the message names the file position,
/// the variable or the flag.
fn attribute_error(
    err: serde_json::Error,
    file: Option<&File>,
    after_file: Value,
    env_sets: &[(String, String, Value)],
    flag_sets: &[(String, String, Value)],
) -> ConfigError {
    if let Some(file) = file {
        if serde_json::from_value::<Config>(after_file.clone()).is_err() {
            // Re-parse the text straight into the typed config: the format's own deserializer
            // knows line and column.
            let (location, message) = match file.format {
                Format::Json => match serde_json::from_str::<Config>(&file.text) {
                    Err(e) => (json_location(&e), e.to_string()),
                    Ok(_) => (Location::default(), err.to_string()),
                },
                Format::Yaml => match serde_yaml::from_str::<Config>(&file.text) {
                    Err(e) => (yaml_location(&e), e.to_string()),
                    Ok(_) => (Location::default(), err.to_string()),
                },
                Format::Toml => match toml::from_str::<Config>(&file.text) {
                    Err(e) => (
                        toml_location(&file.text, &e),
                        e.message().trim().to_string(),
                    ),
                    Ok(_) => (Location::default(), err.to_string()),
                },
            };
            return ConfigError::Parse {
                path: file.path.clone(),
                location,
                message,
            };
        }
    }
    let mut value = after_file;
    for (var, path, v) in env_sets {
        set_path(&mut value, path, v.clone());
        if let Err(e) = serde_json::from_value::<Config>(value.clone()) {
            return ConfigError::Env {
                var: var.clone(),
                message: format!("{path}: {e}"),
            };
        }
    }
    for (key, path, v) in flag_sets {
        set_path(&mut value, path, v.clone());
        if let Err(e) = serde_json::from_value::<Config>(value.clone()) {
            return ConfigError::Override {
                key: key.clone(),
                message: e.to_string(),
            };
        }
    }
    ConfigError::Invalid {
        problems: vec![err.to_string()],
    }
}

/// A settable key: its dotted path and its default value (whose JSON type drives how env and
/// flag values are parsed).
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub path: String,
    pub default: Value,
}

/// Every leaf of the typed config (non-object values and maps empty by default; arrays such as
/// `channel.namespaces` and `client.allowed_origins` are leaves), derived from a serialized
/// `Config::default()`.
pub(crate) fn leaf_paths() -> Vec<Leaf> {
    let mut out = Vec::new();
    walk_leaves(&to_value(&Config::default()), String::new(), &mut out);
    out
}

fn walk_leaves(value: &Value, prefix: String, out: &mut Vec<Leaf>) {
    match value {
        // An empty map by default (`http.static_headers`) is a leaf: set as a JSON object.
        Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk_leaves(v, path, out);
            }
        }
        _ => out.push(Leaf {
            path: prefix,
            default: value.clone(),
        }),
    }
}

/// `client.token.hmac_secret_key` → `CHORUS_CLIENT_TOKEN_HMAC_SECRET_KEY`.
pub fn env_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

/// Parses an env/flag value for a key whose default is `default`: string keys (including
/// durations) take the text verbatim; arrays take a JSON array or a comma-separated list of
/// strings; everything else parses as JSON when possible, else stays a string (and fails typed
/// deserialization with a clear message).
fn parse_typed(default: &Value, raw: &str) -> Value {
    match default {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Array(_) => {
            let t = raw.trim();
            if t.starts_with('[') {
                serde_json::from_str(t).unwrap_or_else(|_| Value::String(raw.to_string()))
            } else if t.is_empty() {
                Value::Array(Vec::new())
            } else {
                Value::Array(
                    t.split(',')
                        .map(|s| Value::String(s.trim().to_string()))
                        .collect(),
                )
            }
        }
        _ => serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.to_string())),
    }
}

/// Deep merge: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Sets a dotted path, creating objects on the way.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut cur = root;
    for part in path.split('.') {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else { return };
        cur = map.entry(part.to_string()).or_insert(Value::Null);
    }
    *cur = value;
}

/// Reports keys present in `input` but absent from the re-serialized typed config.
fn unknown_keys(input: &Value, typed: &Value, prefix: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_keys(v, tv, &path, out),
                    None => out.push(match suggest(k, t.keys().map(String::as_str)) {
                        Some(s) => format!("unknown config key {path:?} (did you mean {s:?}?)"),
                        None => format!("unknown config key {path:?}"),
                    }),
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                unknown_keys(iv, tv, &format!("{prefix}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// The closest candidate within edit distance 2, if any.
fn suggest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
