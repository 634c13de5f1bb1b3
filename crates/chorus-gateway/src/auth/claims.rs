//! Wire shapes of token claims and their conversion into the core's claim types.
//!
//! `info` and `data` keep the exact JSON text the token carried (`RawValue`), so what a
//! client sees in presence or join events is byte-for-byte what the backend signed. The
//! registered claims every check needs (`exp`, `nbf`, `aud`, `iss`) sit in [`Registered`],
//! reached through [`Raw`].

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use chorus_core::auth::{
    ConnectionClaims, ServerSubOptions, SubscribeOverride, SubscriptionClaims, TokenError,
};

/// A JSON number accepted for time claims; fractional seconds are truncated.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Timestamp {
    Int(i64),
    Float(f64),
}

impl Timestamp {
    fn secs(t: Option<Timestamp>) -> Option<i64> {
        Timestamp::secs_ref(&t)
    }

    fn secs_ref(t: &Option<Timestamp>) -> Option<i64> {
        t.as_ref().map(|t| match *t {
            Timestamp::Int(i) => i,
            // Truncation is intended (JWT NumericDate may carry fractions).
            #[allow(clippy::cast_possible_truncation)]
            Timestamp::Float(f) => f as i64,
        })
    }
}

/// `aud`: one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(super) fn as_slice(&self) -> &[String] {
        match self {
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(v) => v,
        }
    }
}

/// The registered claims the verifier checks itself (`exp`, `nbf`, `aud`, `iss`).
#[derive(Debug, Default)]
pub(super) struct Registered<'a> {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub aud: &'a [String],
    pub iss: Option<&'a str>,
}

/// A token's claims as parsed, before they become the core's claim type.
pub(super) trait Raw: DeserializeOwned {
    type Claims;
    fn registered(&self) -> Registered<'_>;
    /// Checks made before expiry (a connection token must not carry `channel`).
    fn check_before_expiry(&self) -> Result<(), TokenError> {
        Ok(())
    }
    /// Replaces the user id (`client.token.user_id_claim`).
    fn set_user(&mut self, user: String);
    /// The core's claims; checks made after expiry (a subscription token needs `channel`).
    fn into_claims(self) -> Result<Self::Claims, TokenError>;
}

fn registered<'a>(
    exp: &Option<Timestamp>,
    nbf: &Option<Timestamp>,
    aud: &'a Option<Audience>,
    iss: &'a Option<String>,
) -> Registered<'a> {
    Registered {
        exp: Timestamp::secs_ref(exp),
        nbf: Timestamp::secs_ref(nbf),
        aud: aud.as_ref().map(Audience::as_slice).unwrap_or_default(),
        iss: iss.as_deref(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct BoolValue {
    value: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawOverride {
    presence: Option<BoolValue>,
    join_leave: Option<BoolValue>,
    force_push_join_leave: Option<BoolValue>,
    force_positioning: Option<BoolValue>,
    force_recovery: Option<BoolValue>,
}

impl From<RawOverride> for SubscribeOverride {
    fn from(o: RawOverride) -> Self {
        let v = |b: Option<BoolValue>| b.map(|b| b.value);
        SubscribeOverride {
            presence: v(o.presence),
            join_leave: v(o.join_leave),
            force_push_join_leave: v(o.force_push_join_leave),
            force_positioning: v(o.force_positioning),
            force_recovery: v(o.force_recovery),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawSubOptions {
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    #[serde(rename = "override")]
    override_options: Option<RawOverride>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawConnection {
    #[serde(default)]
    sub: String,
    exp: Option<Timestamp>,
    expire_at: Option<Timestamp>,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    subs: HashMap<String, RawSubOptions>,
    channel: Option<Box<RawValue>>,
    meta: Option<Box<RawValue>>,
    nbf: Option<Timestamp>,
    aud: Option<Audience>,
    iss: Option<String>,
}

impl Raw for RawConnection {
    type Claims = ConnectionClaims;

    fn registered(&self) -> Registered<'_> {
        registered(&self.exp, &self.nbf, &self.aud, &self.iss)
    }

    fn check_before_expiry(&self) -> Result<(), TokenError> {
        if self.channel.is_some() {
            return Err(TokenError::Invalid(
                "connection token must not contain a \"channel\" claim".into(),
            ));
        }
        Ok(())
    }

    fn set_user(&mut self, user: String) {
        self.sub = user;
    }

    fn into_claims(self) -> Result<ConnectionClaims, TokenError> {
        self.check_before_expiry()?;
        let mut subs = HashMap::with_capacity(self.subs.len());
        for (channel, o) in self.subs {
            let options = ServerSubOptions {
                info: json_or_b64(o.info, o.b64info, "subs.b64info")?,
                data: json_or_b64(o.data, o.b64data, "subs.b64data")?,
                override_options: o.override_options.unwrap_or_default().into(),
            };
            subs.insert(channel, options);
        }
        Ok(ConnectionClaims {
            user: self.sub,
            exp: Timestamp::secs(self.exp),
            expire_at: Timestamp::secs(self.expire_at),
            info: json_or_b64(self.info, self.b64info, "b64info")?,
            channels: self.channels,
            subs,
            // `"meta": null` is no meta (an absent claim deserializes to `None` already).
            meta: self
                .meta
                .filter(|m| m.get() != "null")
                .map(|m| raw_bytes(Some(m))),
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawSubscription {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    client: String,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    exp: Option<Timestamp>,
    expire_at: Option<Timestamp>,
    #[serde(rename = "override")]
    override_options: Option<RawOverride>,
    nbf: Option<Timestamp>,
    aud: Option<Audience>,
    iss: Option<String>,
}

impl Raw for RawSubscription {
    type Claims = SubscriptionClaims;

    fn registered(&self) -> Registered<'_> {
        registered(&self.exp, &self.nbf, &self.aud, &self.iss)
    }

    fn set_user(&mut self, user: String) {
        self.sub = user;
    }

    fn into_claims(self) -> Result<SubscriptionClaims, TokenError> {
        if self.channel.is_empty() {
            return Err(TokenError::Invalid(
                "subscription token needs a non-empty \"channel\" claim".into(),
            ));
        }
        Ok(SubscriptionClaims {
            user: self.sub,
            channel: self.channel,
            client: self.client,
            info: json_or_b64(self.info, self.b64info, "b64info")?,
            data: json_or_b64(self.data, self.b64data, "b64data")?,
            exp: Timestamp::secs(self.exp),
            expire_at: Timestamp::secs(self.expire_at),
            override_options: self.override_options.unwrap_or_default().into(),
        })
    }
}

/// The base64 variant wins when non-empty (as in Centrifugo); else the raw JSON text.
fn json_or_b64(
    json: Option<Box<RawValue>>,
    b64: Option<String>,
    name: &str,
) -> Result<Bytes, TokenError> {
    match b64.filter(|s| !s.is_empty()) {
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Bytes::from)
            .map_err(|e| TokenError::Invalid(format!("invalid {name}: {e}"))),
        None => Ok(raw_bytes(json)),
    }
}

fn raw_bytes(raw: Option<Box<RawValue>>) -> Bytes {
    raw.map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
        .unwrap_or_default()
}
