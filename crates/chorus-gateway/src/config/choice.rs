//! Config keys that take one of a few names (`engine.type`, `log.format`,
//! `grpc_api.error_mode`): enums for the code
//! that `match`es on them, their names in config files. An unknown name is a load error that
//! names the key and the accepted values (with the file position, variable or flag, like any
//! other value of the wrong type).

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize, Serializer};

/// A config value with a fixed set of names.
pub trait Choice: Copy + Sized + 'static {
    /// The dotted config key, for error messages.
    const KEY: &'static str;
    /// Every value, in documentation order.
    const ALL: &'static [Self];
    /// The value's name in config files.
    fn name(self) -> &'static str;

    /// The value named `name` (exact, lowercase).
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

fn serialize<S: Serializer, T: Choice>(value: T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.name())
}

fn deserialize<'de, D: Deserializer<'de>, T: Choice>(d: D) -> Result<T, D::Error> {
    let name = String::deserialize(d)?;
    T::from_name(&name).ok_or_else(|| {
        let allowed: Vec<&str> = T::ALL
            .iter()
            .map(|v| match v.name() {
                "" => "\"\"",
                name => name,
            })
            .collect();
        D::Error::custom(format!(
            "{} {name:?} is not supported; supported: {}",
            T::KEY,
            allowed.join(", ")
        ))
    })
}

/// `engine.type`: where publications, history and cross-node messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineType {
    /// In-process: one node (`"memory"`, the default).
    #[default]
    Memory,
    /// Redis: several nodes share publications and history (`"redis"`).
    Redis,
}

impl Choice for EngineType {
    const KEY: &'static str = "engine.type";
    const ALL: &'static [Self] = &[EngineType::Memory, EngineType::Redis];
    fn name(self) -> &'static str {
        match self {
            EngineType::Memory => "memory",
            EngineType::Redis => "redis",
        }
    }
}

/// `log.format`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (`"text"`, the default).
    #[default]
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

impl Choice for LogFormat {
    const KEY: &'static str = "log.format";
    const ALL: &'static [Self] = &[LogFormat::Text, LogFormat::Json];
    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `grpc_api.error_mode`: how the gRPC server API reports an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrpcErrorMode {
    /// In the response's `error` field, status OK (`""`, the default; Centrifugo's default).
    #[default]
    Body,
    /// As a gRPC status (`"transport"`).
    Transport,
}

impl Choice for GrpcErrorMode {
    const KEY: &'static str = "grpc_api.error_mode";
    const ALL: &'static [Self] = &[GrpcErrorMode::Body, GrpcErrorMode::Transport];
    fn name(self) -> &'static str {
        match self {
            GrpcErrorMode::Body => "",
            GrpcErrorMode::Transport => "transport",
        }
    }
}

impl Serialize for GrpcErrorMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(*self, s)
    }
}

impl<'de> Deserialize<'de> for GrpcErrorMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d)
    }
}

impl Serialize for EngineType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(*self, s)
    }
}

impl<'de> Deserialize<'de> for EngineType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d)
    }
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(*self, s)
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d)
    }
}
