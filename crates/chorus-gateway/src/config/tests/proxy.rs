//! Backend hook configuration: Centrifugo's keys load, every reference is checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::proxy::{NamedProxy, ProxyConfig, StatusTransform};
use chorus_core::proxy::ProxyName;

const HOOKS: &str = r#"{
  "client": {
    "proxy": {
      "connect": {"enabled": true, "endpoint": "http://127.0.0.1:9100/connect",
                  "timeout": "500ms", "http_headers": ["Cookie", "Authorization"],
                  "http": {"static_headers": {"X-From": "chorus"},
                           "status_to_code_transforms": [
                             {"status_code": 401, "to_disconnect": {"code": 4501, "reason": "unauthorized"}}]}},
      "refresh": {"enabled": true, "endpoint": "grpc://127.0.0.1:9200",
                  "grpc": {"credentials_key": "authorization", "credentials_value": "Bearer x"}}
    }
  },
  "channel": {
    "proxy": {"subscribe": {"endpoint": "http://127.0.0.1:9100/subscribe"}},
    "namespaces": [
      {"name": "room", "subscribe_proxy_enabled": true,
       "publish_proxy_enabled": true, "publish_proxy_name": "moderation"}
    ]
  },
  "rpc": {
    "namespace_boundary": ".",
    "ping": {"enabled": true},
    "without_namespace": {"proxy_enabled": true, "proxy_name": "moderation"},
    "namespaces": [{"name": "billing.v1", "proxy_enabled": true}],
    "proxy": {"endpoint": "127.0.0.1:9300", "binary_encoding": true}
  },
  "proxies": [
    {"name": "moderation", "endpoint": "http://127.0.0.1:9400/", "max_in_flight": 10,
     "include_connection_meta": true}
  ]
}"#;

#[test]
fn centrifugo_keys_load_and_validate() {
    let loaded = load_text("hooks.json", HOOKS).unwrap();
    // Every key is known; the connect hook stands in for token keys.
    assert_eq!(
        loaded.warnings,
        [
            "http_api.key is empty and http_server.address \"0.0.0.0\" is not loopback: every \
          HTTP API request is refused with 401 (set http_api.key to use the API)"
        ]
    );
    let c = loaded.config;
    assert_eq!(problems(&c), Vec::<String>::new());
    let connect = &c.client.proxy.connect;
    assert!(connect.enabled);
    assert_eq!(connect.proxy.timeout, ConfigDuration::from_millis(500));
    assert_eq!(connect.proxy.http_headers, ["Cookie", "Authorization"]);
    assert_eq!(connect.proxy.http.static_headers["X-From"], "chorus");
    let t = &connect.proxy.http.status_to_code_transforms[0];
    assert_eq!((t.status_code, t.to_disconnect.code), (401, 4501));
    assert_eq!(
        c.client.proxy.refresh.proxy.grpc.credentials_key,
        "authorization"
    );
    // Defaults fill what the file leaves out.
    let sub = &c.channel.proxy.subscribe;
    assert_eq!(sub.timeout, ConfigDuration::from_secs(1));
    assert_eq!(sub.max_in_flight, 1000);
    let room = &c.channel.namespaces[0].options;
    assert!(room.subscribe_proxy_enabled);
    assert_eq!(room.subscribe_proxy_name, ProxyName::Default);
    assert_eq!(room.publish_proxy_name, ProxyName::from("moderation"));
    assert_eq!(c.rpc.namespace_boundary, ".");
    assert_eq!(c.rpc.ping.method, "ping");
    assert_eq!(c.rpc.namespaces[0].name, "billing.v1");
    assert!(c.rpc.proxy.binary_encoding);
    assert_eq!(c.proxies[0].proxy.max_in_flight, 10);
    // The engine gets the routing.
    let o = crate::app::node_options(&c);
    assert_eq!(o.rpc.namespace_boundary, ".");
    assert!(o.channel.namespaces[0].options.publish_proxy_enabled);
}

#[test]
fn proxies_from_the_environment() {
    let f = TempFile::new("c.json", "{}");
    let env = env(&[
        (
            "CHORUS_PROXIES",
            r#"[{"name":"billing","endpoint":"http://127.0.0.1:1/x"}]"#,
        ),
        ("CHORUS_CLIENT_PROXY_CONNECT_ENABLED", "true"),
        ("CHORUS_CLIENT_PROXY_CONNECT_ENDPOINT", "grpc://127.0.0.1:2"),
        (
            "CHORUS_CLIENT_PROXY_CONNECT_HTTP_STATIC_HEADERS",
            r#"{"X-A":"b"}"#,
        ),
        ("CHORUS_CHANNEL_PROXY_PUBLISH_TIMEOUT", "250ms"),
        ("CHORUS_RPC_PING_ENABLED", "true"),
    ]);
    let loaded = Config::load(Some(f.path()), env, &[]).unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("unknown")),
        "{:?}",
        loaded.warnings
    );
    let c = loaded.config;
    assert_eq!(c.proxies[0].name, "billing");
    assert!(c.client.proxy.connect.enabled);
    assert_eq!(c.client.proxy.connect.proxy.endpoint, "grpc://127.0.0.1:2");
    assert_eq!(c.client.proxy.connect.proxy.http.static_headers["X-A"], "b");
    assert_eq!(
        c.channel.proxy.publish.timeout,
        ConfigDuration::from_millis(250)
    );
    assert!(c.rpc.ping.enabled);
}

#[test]
fn every_bad_reference_and_object_is_reported() {
    let mut c = Config::default();
    c.client.proxy.connect.enabled = true; // no endpoint
    c.client.proxy.refresh.enabled = true;
    c.client.proxy.refresh.proxy.endpoint = "https://auth.example/refresh".into();
    c.client.proxy.refresh.proxy.timeout = ConfigDuration::ZERO;
    c.client.proxy.refresh.proxy.http.tls.enabled = true;
    c.client.proxy.refresh.proxy.http.tls.server_ca_pem_file = "/nonexistent/ca.pem".into();
    c.channel.without_namespace.subscribe_proxy_enabled = true; // default without endpoint
    c.channel.namespaces.push(chorus_core::options::Namespace {
        name: "room".into(),
        options: chorus_core::options::ChannelOptions {
            publish_proxy_enabled: true,
            publish_proxy_name: ProxyName::from("nope"),
            ..Default::default()
        },
    });
    c.rpc.without_namespace.proxy_enabled = true; // rpc.proxy without endpoint
    c.rpc.namespaces = vec![chorus_core::options::RpcNamespace {
        name: "x".into(),
        ..Default::default()
    }];
    let named = |name: &str, endpoint: &str| NamedProxy {
        name: name.into(),
        proxy: ProxyConfig {
            endpoint: endpoint.into(),
            ..Default::default()
        },
    };
    c.proxies = vec![
        named("default", "http://127.0.0.1:1/"),
        named("dup", "127.0.0.1"),
        named("dup", "grpc://127.0.0.1:5"),
    ];
    c.proxies[2].proxy.http.status_to_code_transforms = vec![StatusTransform {
        status_code: 403,
        ..Default::default()
    }];
    c.proxies[2].proxy.http_headers = vec!["bad header".into()];
    let p = problems(&c);
    let expect = [
        "client.proxy.connect: endpoint must not be empty",
        "client.proxy.refresh.http.tls.server_ca_pem_file \"/nonexistent/ca.pem\": ",
        "client.proxy.refresh.timeout must be greater than 0",
        "channel.without_namespace.subscribe_proxy_name uses the default proxy, but channel.proxy.subscribe.endpoint is empty",
        "channel.namespaces[0].publish_proxy_name names proxy \"nope\", which is not in proxies",
        "rpc.without_namespace.proxy_name uses the default proxy, but rpc.proxy.endpoint is empty",
        "rpc.namespaces[0].name \"x\" must match",
        "proxies[0].name \"default\" is reserved",
        "proxies[2].name \"dup\" is defined twice",
        "proxies[1] (\"dup\"): endpoint \"127.0.0.1\": expected http(s)://host[:port]/path or grpc://host:port",
        "proxies[2] (\"dup\").http.status_to_code_transforms[0]: exactly one of to_error.code and to_disconnect.code must be set",
        "proxies[2] (\"dup\").http_headers: \"bad header\" is not a header name",
    ];
    for e in expect {
        assert!(
            p.iter().any(|x| x.starts_with(e)),
            "missing {e:?} in {p:#?}"
        );
    }
    assert_eq!(p.len(), expect.len(), "{p:#?}");
}

#[test]
fn tls_objects_are_loaded_and_risky_ones_warned_about() {
    let ck = rcgen::generate_simple_self_signed(vec!["backend".into()]).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let text = format!(
        r#"{{"client": {{"proxy": {{"connect": {{"enabled": true, "endpoint": "https://b:8443/c",
            "http": {{"tls": {{"enabled": true, "server_ca_pem": {cert:?}, "cert_pem": {cert:?},
                              "key_pem": {key:?}, "server_name": "backend"}}}}}}}}}},
          "rpc": {{"proxy": {{"endpoint": "grpc://b:9000", "grpc": {{"compression": true,
            "tls": {{"enabled": true, "insecure_skip_verify": true, "client_ca_pem": {cert:?}}}}}}}}},
          "proxies": [{{"name": "plain", "endpoint": "http://b:80/",
                        "http": {{"tls": {{"enabled": true}}}}, "grpc": {{"tls": {{"server_name": "x"}}}}}}]}}"#
    );
    let c = load_text("tls.json", &text).unwrap();
    assert!(
        !c.warnings.iter().any(|w| w.contains("unknown")),
        "{:?}",
        c.warnings
    );
    let c = c.config;
    assert_eq!(problems(&c), Vec::<String>::new());
    let tls = c.client.proxy.connect.proxy.load_tls("k").unwrap().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("backend"));
    assert!(c.rpc.proxy.grpc.compression);
    assert!(c.proxies[0].proxy.load_tls("k").unwrap().is_none());
    let w = c.warnings();
    for expected in [
        "rpc.proxy.grpc.tls.insecure_skip_verify is true",
        "rpc.proxy.grpc.tls.client_ca_pem has no effect",
        "proxies[0] (\"plain\").http.tls has no effect: the endpoint is http://, not https://",
        "proxies[0] (\"plain\").grpc.tls has no effect: the endpoint is not gRPC",
    ] {
        assert!(
            w.iter().any(|w| w.starts_with(expected)),
            "{expected:?} not in {w:#?}"
        );
    }

    // Both forms of one PEM, a certificate without its key, a PEM that is not one.
    let mut c = Config::default();
    c.rpc.proxy.endpoint = "127.0.0.1:9000".into();
    let tls = &mut c.rpc.proxy.grpc.tls;
    tls.enabled = true;
    tls.server_ca_pem = cert.clone();
    tls.server_ca_pem_file = "ca.pem".into();
    tls.cert_pem = cert.clone();
    assert_eq!(
        problems(&c),
        ["rpc.proxy.grpc.tls: server_ca_pem and server_ca_pem_file are both set; use one"]
    );
    c.rpc.proxy.grpc.tls.server_ca_pem_file.clear();
    assert_eq!(
        problems(&c),
        ["rpc.proxy.grpc.tls: the client certificate (cert_pem) and its key (key_pem) must be set together"]
    );
    c.rpc.proxy.grpc.tls.cert_pem.clear();
    c.rpc.proxy.grpc.tls.server_ca_pem =
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
    let p = problems(&c);
    assert!(
        p.len() == 1 && p[0].starts_with("rpc.proxy.grpc.tls: server CA: "),
        "{p:?}"
    );
    // Settings without `enabled` are not used, and said so.
    c.rpc.proxy.grpc.tls.enabled = false;
    assert_eq!(problems(&c), Vec::<String>::new());
    assert!(c.warnings().iter().any(|w| w
        .starts_with("rpc.proxy.grpc.tls has settings but rpc.proxy.grpc.tls.enabled is false")));
}

#[test]
fn a_timeout_over_pong_timeout_warns() {
    let mut c = Config::default();
    c.rpc.proxy.endpoint = "http://127.0.0.1:1/rpc".into();
    c.rpc.proxy.timeout = ConfigDuration::from_secs(10);
    let w = c.warnings();
    assert!(
        w.iter()
            .any(|w| w.starts_with("rpc.proxy.timeout (10s) is not below client.pong_timeout (8s)")),
        "{w:?}"
    );
}

#[tokio::test]
async fn build_registers_each_proxy_under_its_events() {
    use chorus_core::proxy::ProxyEvent;
    let c = load_text("hooks.json", HOOKS).unwrap().config;
    let p = crate::proxy::build(&c).unwrap();
    assert_eq!(p.connect().unwrap().label(), "client.proxy.connect");
    assert_eq!(p.refresh().unwrap().label(), "client.proxy.refresh");
    let moderation = ProxyName::from("moderation");
    for event in [
        ProxyEvent::Subscribe,
        ProxyEvent::Publish,
        ProxyEvent::SubRefresh,
        ProxyEvent::Rpc,
    ] {
        assert_eq!(p.get(event, &moderation).unwrap().label(), "moderation");
    }
    assert_eq!(
        p.get(ProxyEvent::Subscribe, &ProxyName::Default)
            .unwrap()
            .label(),
        "channel.proxy.subscribe"
    );
    assert!(p.get(ProxyEvent::Publish, &ProxyName::Default).is_none());
    assert_eq!(
        p.get(ProxyEvent::Rpc, &ProxyName::Default).unwrap().label(),
        "rpc.proxy"
    );
    assert_eq!(p.header_names(), ["authorization", "cookie"]);
}
