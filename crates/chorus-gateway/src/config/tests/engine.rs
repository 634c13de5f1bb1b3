//! `engine.*`: the Redis and memory engine sections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn redis_engine_keys() {
    let yaml = "engine:\n  type: redis\n  redis:\n    address: 10.0.0.1:6379\n    cluster: true\n    partitions: 16\n    command_timeout: 250ms\n";
    let loaded = load_text("c.yaml", yaml).unwrap();
    let r = &loaded.config.engine.redis;
    assert_eq!(r.address, ["10.0.0.1:6379"]);
    assert!(r.cluster);
    assert_eq!(r.partitions, 16);
    assert_eq!(r.command_timeout, ConfigDuration::from_millis(250));
    assert_eq!(r.prefix, "chorus");
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("engine")),
        "{:?}",
        loaded.warnings
    );

    let json = r#"{"engine": {"type": "redis", "redis": {"address": ["a:1", "b:2"]}}}"#;
    let c = load_text("c.json", json).unwrap().config;
    assert_eq!(c.engine.redis.address, ["a:1", "b:2"]);
    assert!(!c.engine.redis.cluster);

    let c = Config::load(
        None,
        env(&[
            ("CHORUS_ENGINE_TYPE", "redis"),
            ("CHORUS_ENGINE_REDIS_ADDRESS", "r1:6379,r2:6379"),
        ]),
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(c.engine.kind, EngineType::Redis);
    assert_eq!(c.engine.redis.address, ["r1:6379", "r2:6379"]);
}

#[test]
fn memory_engine_keys() {
    let c = Config::default();
    assert_eq!(c.engine.memory.max_streams, 100_000);
    assert_eq!(c.engine.memory.max_history_bytes, 256 << 20);
    assert_eq!(c.engine.memory.idle_meta_ttl, ConfigDuration::from_secs(60));
    assert_eq!(
        c.engine.memory.broker_options(),
        chorus_core::broker::memory::MemoryBrokerOptions::default()
    );

    let yaml = "engine:\n  memory:\n    max_streams: 500\n    max_history_bytes: 1048576\n    idle_meta_ttl: 5s\n";
    let loaded = load_text("c.yaml", yaml).unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("engine")),
        "{:?}",
        loaded.warnings
    );
    let m = &loaded.config.engine.memory;
    assert_eq!(
        m.broker_options(),
        chorus_core::broker::memory::MemoryBrokerOptions {
            max_streams: 500,
            max_history_bytes: 1 << 20,
            idle_meta_ttl: std::time::Duration::from_secs(5),
        }
    );
    let c = Config::load(
        None,
        env(&[("CHORUS_ENGINE_MEMORY_MAX_STREAMS", "7")]),
        &[(
            "engine.memory.idle_meta_ttl".to_string(),
            "250ms".to_string(),
        )],
    )
    .unwrap()
    .config;
    assert_eq!(c.engine.memory.max_streams, 7);
    assert_eq!(
        c.engine.memory.idle_meta_ttl,
        ConfigDuration::from_millis(250)
    );

    let mut c = Config::default();
    c.engine.memory.max_streams = 0;
    c.engine.memory.max_history_bytes = 0;
    assert_eq!(
        problems(&c),
        [
            "engine.memory.max_streams must be at least 1",
            "engine.memory.max_history_bytes must be at least 1",
        ]
    );
}
