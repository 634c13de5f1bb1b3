//! `admin.*`: defaults (off, also in the embedded default), loading from a file and from
//! `CHORUS_ADMIN_*`, the refusals of an enabled console without its password or secret, and
//! the warnings about weak or exposed settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const SECRET: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b";
const PASSWORD: &str = "long enough operator password";

#[test]
fn admin_defaults_keep_the_console_off() {
    for c in [Config::default(), Config::embedded_default()] {
        let a = &c.admin;
        assert!(!a.enabled);
        assert_eq!((a.password.as_str(), a.secret.as_str()), ("", ""));
        assert_eq!(a.session_ttl.get(), std::time::Duration::from_secs(86400));
        assert_eq!((a.login_rate_limit, a.login_burst), (1, 10));
        assert!(problems(&c).iter().all(|p| !p.contains("admin")));
    }
}

#[test]
fn admin_from_file_and_env() {
    let loaded = load_text(
        "a.yaml",
        &format!(
            "http_server:\n  address: 127.0.0.1\nadmin:\n  enabled: true\n  password: {PASSWORD}\n  \
             secret: {SECRET}\n  session_ttl: 2h\n  login_rate_limit: 3\n  login_burst: 0\n"
        ),
    )
    .unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("admin")),
        "{:?}",
        loaded.warnings
    );
    let a = &loaded.config.admin;
    assert!(a.enabled);
    assert_eq!((a.password.as_str(), a.secret.as_str()), (PASSWORD, SECRET));
    assert_eq!(a.session_ttl.get(), std::time::Duration::from_secs(7200));
    // Burst 0 = the rate.
    assert_eq!(a.login_limit().bucket(), 3);
    assert_eq!(a.login_limit().disconnect_after, 0);
    loaded.config.validate().unwrap();

    let loaded = Config::load(
        None,
        env(&[
            ("CHORUS_ADMIN_ENABLED", "true"),
            ("CHORUS_ADMIN_PASSWORD", "12345"),
            ("CHORUS_ADMIN_SECRET", SECRET),
            ("CHORUS_ADMIN_SESSION_TTL", "15m"),
            ("CHORUS_ADMIN_LOGIN_RATE_LIMIT", "2"),
            ("CHORUS_ADMIN_LOGIN_BURST", "4"),
        ]),
        &[],
    )
    .unwrap();
    let a = &loaded.config.admin;
    assert!(a.enabled);
    // A numeric-looking password stays a string.
    assert_eq!((a.password.as_str(), a.secret.as_str()), ("12345", SECRET));
    assert_eq!(a.session_ttl.get(), std::time::Duration::from_secs(900));
    assert_eq!((a.login_rate_limit, a.login_burst), (2, 4));
    // The embedded default with the console switched on by env validates.
    loaded.config.validate().unwrap();
}

#[test]
fn enabled_console_needs_password_and_secret() {
    let mut c = Config::embedded_default();
    c.admin.enabled = true;
    let p = problems(&c);
    assert_eq!(
        p,
        [
            "admin.enabled is true but admin.password is empty: set the console password \
             (e.g. CHORUS_ADMIN_PASSWORD)",
            "admin.enabled is true but admin.secret is empty: set a random key for the session \
             tokens (e.g. CHORUS_ADMIN_SECRET=$(openssl rand -hex 32))",
        ]
    );

    c.admin.password = PASSWORD.into();
    c.admin.secret = c.client.token.hmac_secret_key.clone();
    c.admin.session_ttl = chorus_core::duration::ConfigDuration::from_secs(0);
    c.admin.login_rate_limit = 0;
    c.websocket.handler_prefix = "/admin/ws".into();
    let p = problems(&c);
    assert_eq!(
        p,
        [
            "admin.secret must differ from client.token.hmac_secret_key: whoever can sign \
             client tokens could sign console sessions",
            "admin.session_ttl must be greater than 0",
            "admin.login_rate_limit must be at least 1 (login attempts per second)",
            "websocket.handler_prefix (\"/admin/ws\") is under /admin, where the admin console \
             lives",
        ]
    );

    // Off again: nothing about it is checked.
    c.admin.enabled = false;
    assert!(problems(&c).iter().all(|p| !p.contains("admin")), "{p:?}");
}

#[test]
fn weak_or_exposed_console_warns() {
    let warnings = |json: &str| load_text("c.json", json).unwrap().warnings;
    let admin = |address: &str, password: &str, secret: &str| {
        warnings(&format!(
            r#"{{"http_server": {{"address": "{address}"}}, "http_api": {{"key": "{SECRET}"}},
               "admin": {{"enabled": true, "password": "{password}", "secret": "{secret}"}}}}"#
        ))
    };
    let about_admin = |w: Vec<String>| -> Vec<String> {
        w.into_iter().filter(|w| w.contains("admin.")).collect()
    };

    assert_eq!(
        about_admin(admin("127.0.0.1", PASSWORD, SECRET)),
        Vec::<String>::new()
    );
    let w = about_admin(admin("127.0.0.1", "hunter2", "short-secret"));
    assert_eq!(
        w,
        [
            "admin.secret is 12 bytes: HMAC keys shorter than 32 bytes can be brute-forced from \
             one session token (use e.g. `openssl rand -hex 32`)",
            "admin.password is 7 bytes: use at least 12 (the console can publish to any channel \
             and disconnect any user)",
        ]
    );
    let w = about_admin(admin("127.0.0.1", "password", SECRET));
    assert!(
        w.iter()
            .any(|w| w
                == "admin.password looks like a placeholder (\"password\"): set a random secret"),
        "{w:?}"
    );
    // On the client port of a reachable address: served where clients connect.
    let w = about_admin(admin("0.0.0.0", PASSWORD, SECRET));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("admin.enabled is true without http_server.internal_port"),
        "{w:?}"
    );
    // An internal port keeps it private.
    let w = warnings(&format!(
        r#"{{"http_server": {{"address": "0.0.0.0", "internal_port": 9001, "internal_address": "127.0.0.1"}},
           "http_api": {{"key": "{SECRET}"}},
           "admin": {{"enabled": true, "password": "{PASSWORD}", "secret": "{SECRET}"}}}}"#
    ));
    assert!(about_admin(w).is_empty());
}
