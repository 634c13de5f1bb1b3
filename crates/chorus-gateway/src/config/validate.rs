//! Semantic checks of a loaded [`Config`]: every problem is collected (not just the first) and
//! named by its dotted key, so `chorus checkconfig` reports a whole broken file at once.

use std::collections::HashSet;

use chorus_core::options::ChannelOptions;

use super::{Config, ConfigError, EngineType};

/// Smallest accepted `websocket.message_size_limit` and `client.queue_max_size`: below this a
/// single connect reply may not fit.
pub const MIN_BUFFER_SIZE: usize = 1024;

/// Largest accepted `client.json_max_depth`: serde_json's own recursion limit, which bounds
/// how deep a JSON command can nest anyway.
pub const MAX_JSON_DEPTH: usize = 128;

impl Config {
    /// Checks cross-field rules. All problems are reported together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p: Vec<String> = Vec::new();

        // http_server
        if self.http_server.address.trim().is_empty() {
            p.push("http_server.address must not be empty".into());
        }
        if self.http_server.header_read_timeout.is_zero() {
            p.push("http_server.header_read_timeout must be greater than 0".into());
        }
        if self.http_server.max_header_size < MIN_BUFFER_SIZE {
            p.push(format!(
                "http_server.max_header_size ({}) must be at least {MIN_BUFFER_SIZE} bytes",
                self.http_server.max_header_size
            ));
        }
        if self.http_server.request_timeout.is_zero() {
            p.push("http_server.request_timeout must be greater than 0".into());
        }
        if self.http_server.max_request_body_size == 0 {
            p.push("http_server.max_request_body_size must be greater than 0".into());
        }
        if self.http_server.tcp_backlog == 0 {
            p.push("http_server.tcp_backlog must be greater than 0".into());
        }
        let t = &self.http_server.tls;
        match (
            t.cert_pem_file.trim().is_empty(),
            t.key_pem_file.trim().is_empty(),
        ) {
            (true, true) => {}
            (false, false) => {
                // Loaded here, so checkconfig refuses what serve would (not only at start).
                let (cert, key) = (
                    std::path::Path::new(&t.cert_pem_file),
                    std::path::Path::new(&t.key_pem_file),
                );
                if let Err(e) = crate::server::tls::load_certified_key(cert, key) {
                    p.push(format!("http_server.tls: {e}"));
                }
            }
            _ => {
                p.push("http_server.tls.cert_pem_file and key_pem_file must be set together".into())
            }
        }
        let h = &self.http_server;
        if h.internal_port != 0 {
            if h.internal_port == h.port && h.internal_address() == h.address {
                p.push(format!(
                    "http_server.internal_port ({}) must differ from http_server.port on the same address",
                    h.internal_port
                ));
            }
            if h.internal_max_connections == 0 {
                p.push("http_server.internal_max_connections must be greater than 0".into());
            }
        }

        // client
        let c = &self.client.options;
        let personal = &c.subscribe_to_user_personal_channel;
        if personal.enabled {
            let ns = personal.personal_channel_namespace.as_str();
            let options = if ns.is_empty() {
                Some(&self.channel.without_namespace)
            } else {
                self.channel
                    .namespaces
                    .iter()
                    .find(|n| n.name == ns)
                    .map(|n| &n.options)
            };
            match options {
                None => p.push(format!(
                    "client.subscribe_to_user_personal_channel.personal_channel_namespace {ns:?} \
                     is not a namespace in channel.namespaces"
                )),
                Some(o) if personal.single_connection && !o.presence => {
                    p.push(format!(
                    "client.subscribe_to_user_personal_channel.single_connection needs presence \
                     on the personal channels' namespace ({})",
                    if ns.is_empty() { "channel.without_namespace" } else { ns }
                ))
                }
                Some(_) => {}
            }
        }
        if !c.ping_interval.is_zero() && c.ping_interval.get() < std::time::Duration::from_secs(1) {
            // The connect reply carries whole seconds: below 1 s it would say "no pings" (and
            // "no pongs"), and the server would then close the client for the pongs it skips.
            p.push(format!(
                "client.ping_interval ({}) must be at least 1s (the connect reply carries whole \
                 seconds), or 0 to disable",
                c.ping_interval
            ));
        }
        if !c.ping_interval.is_zero()
            && !c.pong_timeout.is_zero()
            && c.ping_interval <= c.pong_timeout
        {
            p.push(format!(
                "client.ping_interval ({}) must be greater than client.pong_timeout ({}) \
                 (or set either to 0 to disable)",
                c.ping_interval, c.pong_timeout
            ));
        }
        if c.queue_max_size < MIN_BUFFER_SIZE {
            p.push(format!(
                "client.queue_max_size ({}) must be at least {MIN_BUFFER_SIZE} bytes",
                c.queue_max_size
            ));
        }
        if c.reply_max_size < MIN_BUFFER_SIZE {
            p.push(format!(
                "client.reply_max_size ({}) must be at least {MIN_BUFFER_SIZE} bytes",
                c.reply_max_size
            ));
        }
        if !(1..=MAX_JSON_DEPTH).contains(&c.json_max_depth) {
            p.push(format!(
                "client.json_max_depth ({}) must be between 1 and {MAX_JSON_DEPTH}",
                c.json_max_depth
            ));
        }
        let rl = &c.command_rate_limit;
        if rl.rate == 0 && rl.burst > 0 {
            p.push(
                "client.command_rate_limit.burst is set but rate is 0 (no limit): set a rate"
                    .into(),
            );
        }
        if c.write_batch_max_messages == 0 {
            p.push("client.write_batch_max_messages must be at least 1".into());
        }
        if c.write_batch_max_bytes == 0 {
            p.push("client.write_batch_max_bytes must be at least 1".into());
        }
        for (n, origin) in self.client.allowed_origins.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(origin) {
                p.push(format!(
                    "client.allowed_origins[{n}] ({origin:?}) is not a valid glob: {e}"
                ));
            }
        }
        let token_problems: Vec<String> = (self.client.token.problems("client.token").into_iter())
            .chain(self.client.subscription_token.problems())
            .collect();
        // Key material is parsed by the verifier, once the fields themselves are sound.
        if token_problems.is_empty() {
            if let Err(e) = crate::auth::JwtVerifier::from_config(&self.client) {
                p.push(e.to_string());
            }
        }
        p.extend(token_problems);

        // channel
        let ch = &self.channel;
        if ch.max_length == 0 {
            p.push("channel.max_length must be greater than 0".into());
        }
        for (key, value) in [
            ("channel.namespace_boundary", &ch.namespace_boundary),
            ("channel.user_boundary", &ch.user_boundary),
            ("channel.user_separator", &ch.user_separator),
        ] {
            if value.is_empty() {
                p.push(format!("{key} must not be empty"));
            }
        }
        check_channel_options("channel.without_namespace", &ch.without_namespace, &mut p);
        let mut seen = HashSet::new();
        for (n, ns) in ch.namespaces.iter().enumerate() {
            let key = format!("channel.namespaces[{n}]");
            if !valid_namespace_name(&ns.name) {
                p.push(format!(
                    "{key}.name {:?} must match ^[-a-zA-Z0-9_]{{2,}}$",
                    ns.name
                ));
            }
            if !seen.insert(ns.name.as_str()) {
                p.push(format!("{key}.name {:?} is defined twice", ns.name));
            }
            check_channel_options(&format!("{key} ({:?})", ns.name), &ns.options, &mut p);
        }

        // websocket
        let ws = &self.websocket;
        if ws.message_size_limit < MIN_BUFFER_SIZE {
            p.push(format!(
                "websocket.message_size_limit ({}) must be at least {MIN_BUFFER_SIZE} bytes",
                ws.message_size_limit
            ));
        }
        if ws.write_timeout.is_zero() {
            p.push("websocket.write_timeout must be greater than 0".into());
        }
        if ws.compression_level > 9 {
            p.push(format!(
                "websocket.compression_level ({}) must be 0-9",
                ws.compression_level
            ));
        }

        // routes
        let ws_path = ws.handler_prefix.as_str();
        let api_path = self.http_api.handler_prefix.as_str();
        for (key, path) in [
            ("websocket.handler_prefix", ws_path),
            ("http_api.handler_prefix", api_path),
        ] {
            if !path.starts_with('/') {
                p.push(format!("{key} ({path:?}) must start with '/'"));
            }
        }
        if overlaps(ws_path, api_path) {
            p.push(format!(
                "websocket.handler_prefix ({ws_path:?}) and http_api.handler_prefix \
                 ({api_path:?}) overlap"
            ));
        }
        if self.http_stream.enabled || self.sse.enabled {
            let mut emulation = vec![("emulation.handler_prefix", &self.emulation.handler_prefix)];
            if self.http_stream.enabled {
                emulation.push((
                    "http_stream.handler_prefix",
                    &self.http_stream.handler_prefix,
                ));
            }
            if self.sse.enabled {
                emulation.push(("sse.handler_prefix", &self.sse.handler_prefix));
            }
            for (i, (key, path)) in emulation.iter().enumerate() {
                if !path.starts_with('/') {
                    p.push(format!("{key} ({path:?}) must start with '/'"));
                }
                if overlaps(path, api_path) || path.as_str() == ws_path {
                    p.push(format!(
                        "{key} ({path:?}) overlaps websocket.handler_prefix or \
                         http_api.handler_prefix"
                    ));
                }
                if emulation[..i].iter().any(|(_, other)| other == path) {
                    p.push(format!("{key} ({path:?}) is used by another endpoint"));
                }
            }
        }

        // grpc_api
        let g = &self.grpc_api;
        if g.max_receive_message_size < MIN_BUFFER_SIZE {
            p.push(format!(
                "grpc_api.max_receive_message_size ({}) must be at least {MIN_BUFFER_SIZE} bytes",
                g.max_receive_message_size
            ));
        }
        if g.enabled
            && g.port != 0
            && g.port == self.http_server.port
            && g.bind_address(&self.http_server) == self.http_server.address.trim()
        {
            p.push(format!(
                "grpc_api.port ({}) must differ from http_server.port on the same address",
                g.port
            ));
        }

        // engine (`engine.type` itself is checked when the config is read)
        let m = &self.engine.memory;
        if m.max_streams == 0 {
            p.push("engine.memory.max_streams must be at least 1".into());
        }
        if m.max_history_bytes == 0 {
            p.push("engine.memory.max_history_bytes must be at least 1".into());
        }
        if self.engine.kind == EngineType::Redis {
            p.extend(self.engine.redis.problems());
        }

        // proxies (backend hooks)
        p.extend(super::proxy::problems(self));

        // admin
        p.extend(super::admin::problems(self));

        // presence
        p.extend(self.presence.problems());
        p.extend(self.presence_server.problems());

        // shutdown
        if self.shutdown.drain_window > self.shutdown.timeout {
            p.push(format!(
                "shutdown.drain_window ({}) must not exceed shutdown.timeout ({})",
                self.shutdown.drain_window, self.shutdown.timeout
            ));
        }

        // log
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            p.push(format!("log.level {:?} is invalid: {e}", self.log.level));
        }

        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems: p })
        }
    }

    /// Legal but risky settings, worth a warning at startup.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        // The connect hook authenticates clients without a token.
        if !self.client.options.insecure
            && !self.client.has_token_key()
            && !self.client.proxy.connect.enabled
        {
            w.push(
                "no client.token key is configured and client.insecure is false: \
                 connections need a token and none can be verified"
                    .to_string(),
            );
        }
        let address = self.http_server.address.trim();
        // The HTTP API is served on the internal listener when there is one.
        let (api_key, api_address, api_port) = match self.http_server.internal_port {
            0 => ("http_server.address", address, self.http_server.port),
            port => (
                "http_server.internal_address",
                self.http_server.internal_address().trim(),
                port,
            ),
        };
        if !is_loopback_address(api_address) {
            let port = match api_port {
                0 => "the port it binds".to_string(),
                port => format!("port {port}"),
            };
            if self.http_api.insecure {
                w.push(format!(
                    "http_api.insecure is true and {api_key} {api_address:?} is not \
                     loopback: anyone who can reach {port} can publish and disconnect users \
                     through the HTTP API without a key"
                ));
            } else if self.http_api.key.is_empty() {
                w.push(format!(
                    "http_api.key is empty and {api_key} {api_address:?} is not loopback: \
                     every HTTP API request is refused with 401 (set http_api.key to use the API)"
                ));
            }
        }
        if self.engine.kind == EngineType::Redis {
            w.extend(self.engine.redis.warnings());
        }
        let g = &self.grpc_api;
        let grpc_address = g.bind_address(&self.http_server);
        if g.enabled && g.key.is_empty() && !is_loopback_address(grpc_address) {
            let port = match g.port {
                0 => "the port it binds".to_string(),
                port => format!("port {port}"),
            };
            w.push(format!(
                "grpc_api.key is empty and the gRPC API address {grpc_address:?} is not loopback: \
                 anyone who can reach {port} can publish and disconnect users through the gRPC \
                 API without a key"
            ));
        }
        if self.client.options.insecure && !is_loopback_address(address) {
            w.push(format!(
                "client.insecure is true and http_server.address {address:?} is not loopback: \
                 anyone who can reach it connects and subscribes without a token"
            ));
        }
        if self.client.options.insecure
            && self.client.allowed_origins.iter().any(|o| o.trim() == "*")
        {
            w.push(
                "client.allowed_origins contains \"*\" and client.insecure is true: any web \
                 page can open connections in its visitors' browsers without a token"
                    .to_string(),
            );
        }
        for (section, t) in [
            ("client.token", &self.client.token),
            (
                "client.subscription_token",
                &*self.client.subscription_token,
            ),
        ] {
            if t.uses_jwks()
                && !(t.hmac_secret_key.is_empty()
                    && t.rsa_public_key.is_empty()
                    && t.ecdsa_public_key.is_empty())
            {
                w.push(format!(
                    "{section}.jwks_public_endpoint is set: its hmac_secret_key, rsa_public_key \
                     and ecdsa_public_key are ignored (every token is checked against the JWKS)"
                ));
            }
        }
        let hmac = &self.client.token.hmac_secret_key;
        if !hmac.is_empty() && hmac.len() < MIN_HMAC_KEY_BYTES {
            w.push(format!(
                "client.token.hmac_secret_key is {} bytes: HMAC keys shorter than \
                 {MIN_HMAC_KEY_BYTES} bytes can be brute-forced from one token (use e.g. \
                 `openssl rand -hex 32`)",
                hmac.len()
            ));
        }
        for (key, value) in [
            ("client.token.hmac_secret_key", hmac.as_str()),
            (
                "client.subscription_token.hmac_secret_key",
                self.client.subscription_token.hmac_secret_key.as_str(),
            ),
            ("http_api.key", self.http_api.key.as_str()),
            ("grpc_api.key", self.grpc_api.key.as_str()),
            ("presence.key", self.presence.key.as_str()),
            ("presence_server.key", self.presence_server.key.as_str()),
            ("engine.redis.password", self.engine.redis.password.as_str()),
            (
                "engine.redis.sentinel_password",
                self.engine.redis.sentinel_password.as_str(),
            ),
            ("admin.password", self.admin.password.as_str()),
            ("admin.secret", self.admin.secret.as_str()),
        ] {
            if is_placeholder_secret(value) {
                w.push(format!(
                    "{key} looks like a placeholder ({value:?}): set a random secret"
                ));
            }
        }
        if self.demo.enabled && self.client.token.hmac_secret_key.is_empty() {
            w.push(
                "demo.enabled is true but client.token.hmac_secret_key is empty: \
                 the demo page cannot get tokens"
                    .to_string(),
            );
        }
        w.extend(super::admin::warnings(self));
        w.extend(super::proxy::warnings(self));
        w
    }
}

fn check_channel_options(key: &str, o: &ChannelOptions, p: &mut Vec<String>) {
    let size = o.history_size > 0;
    let ttl = !o.history_ttl.is_zero();
    if size && !ttl {
        p.push(format!(
            "{key}: history_size is set, so history_ttl must be > 0"
        ));
    }
    if ttl && !size {
        p.push(format!(
            "{key}: history_ttl is set, so history_size must be > 0"
        ));
    }
    for (name, on) in [
        ("force_recovery", o.force_recovery),
        ("allow_recovery", o.allow_recovery),
        ("force_positioning", o.force_positioning),
        ("allow_positioning", o.allow_positioning),
    ] {
        if on && !(size && ttl) {
            p.push(format!(
                "{key}: {name} needs history (history_size and history_ttl > 0)"
            ));
        }
    }
}

/// Whether `http_server.address` only accepts connections from this machine: a 127.0.0.0/8
/// or `::1` address (brackets allowed) or `localhost`. An empty address binds every interface,
/// and any other host name may resolve to a reachable address, so neither is loopback.
/// Shortest HMAC key (bytes) that passes without a warning: 256 bits, the hash's size.
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// A secret that was obviously not chosen: a template's placeholder or a common word.
pub fn is_placeholder_secret(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return false;
    }
    const MARKERS: [&str; 8] = [
        "change_me",
        "changeme",
        "change-me",
        "replace_me",
        "replaceme",
        "placeholder",
        "your_",
        "<",
    ];
    const WORDS: [&str; 8] = [
        "secret", "password", "key", "apikey", "api_key", "test", "token", "example",
    ];
    MARKERS.iter().any(|m| v.contains(m)) || WORDS.contains(&v.as_str())
}

pub fn is_loopback_address(address: &str) -> bool {
    let address = address.trim();
    if address.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `^[-a-zA-Z0-9_]{2,}$`
pub fn valid_namespace_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Two route prefixes overlap when one is the other or a path-segment prefix of it.
fn overlaps(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('/');
    let b = b.trim_end_matches('/');
    let prefix_of = |short: &str, long: &str| {
        long == short || long.starts_with(&format!("{short}/")) || short.is_empty()
    };
    prefix_of(a, b) || prefix_of(b, a)
}
