//! Real `redis-server` processes for tests: standalone on a free port, or a 3-master cluster.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chorus_core::broker::conformance::{Evict, Recorder};
use chorus_core::broker::{Broker, BrokerHandler};
use chorus_redis::shard::Naming;
use chorus_redis::{RedisBroker, RedisConfig};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ping(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ping"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        .unwrap_or(false)
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new())
    }

    pub fn start_with(extra: Vec<String>) -> RedisServer {
        for _ in 0..10 {
            let port = free_port();
            let dir =
                std::env::temp_dir().join(format!("chorus-redis-{port}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut s = RedisServer {
                port,
                child: None,
                dir,
                extra: extra.clone(),
            };
            if s.spawn() {
                return s;
            }
        }
        panic!("could not start redis-server");
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .expect("redis-server installed (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (data is lost: no persistence).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "restart on port {}", self.port);
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT");
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    "nodes.conf".into(),
                    "--cluster-node-timeout".into(),
                    "5000".into(),
                ])
            })
            .collect();
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(nodes.iter().map(|n| n.address()));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let out = Command::new("redis-cli").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ok = nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address()).collect()
    }
}

/// A test config: random prefix (tests share nothing), short timeouts.
pub fn config(addresses: Vec<String>, cluster: bool) -> RedisConfig {
    RedisConfig {
        addresses,
        cluster,
        prefix: format!("t{}", rand_suffix()),
        partitions: 8,
        connect_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_millis(500),
        liveness_probe_interval: Duration::from_millis(300),
        liveness_probe_timeout: Duration::from_millis(700),
        reconnect_backoff_min: Duration::from_millis(20),
        reconnect_backoff_max: Duration::from_millis(300),
        tls: Default::default(),
    }
}

pub fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A started, ready broker with a recorder as handler.
pub async fn broker(config: RedisConfig, node: &str) -> (Arc<RedisBroker>, Arc<Recorder>) {
    let b = RedisBroker::connect(config, node.to_string())
        .await
        .unwrap();
    assert!(
        b.wait_ready(Duration::from_secs(10)).await,
        "broker not ready"
    );
    let rec = Arc::new(Recorder::default());
    let h: Arc<dyn BrokerHandler> = rec.clone();
    b.set_handler(Arc::downgrade(&h));
    (b, rec)
}

/// Plain commands against the Redis (shard or cluster) holding a channel's keys.
pub struct Keys {
    config: RedisConfig,
    pub naming: Naming,
}

impl Keys {
    pub fn new(config: &RedisConfig, naming: Naming) -> Keys {
        Keys {
            config: config.clone(),
            naming,
        }
    }

    /// Runs one command on the node holding `channel`'s keys.
    pub async fn query<T: redis::FromRedisValue>(&self, channel: &str, cmd: &redis::Cmd) -> T {
        if self.config.cluster {
            let urls: Vec<String> = self
                .config
                .addresses
                .iter()
                .map(|a| format!("redis://{a}"))
                .collect();
            let client = redis::cluster::ClusterClient::new(urls).unwrap();
            let mut conn = client.get_async_connection().await.unwrap();
            cmd.query_async(&mut conn).await.unwrap()
        } else {
            let address = &self.config.addresses[self.naming.shard_of(channel)];
            let client = redis::Client::open(format!("redis://{address}")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            cmd.query_async(&mut conn).await.unwrap()
        }
    }

    pub async fn pttl(&self, channel: &str, key: &str) -> i64 {
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(key);
        self.query(channel, &cmd).await
    }
}

/// The conformance suite's eviction hook for Redis: deletes the channel's stream and meta
/// keys, as `maxmemory` eviction (e.g. `volatile-lru`) would.
pub struct KeyEvictor(Keys);

impl KeyEvictor {
    pub fn new(config: &RedisConfig, naming: Naming) -> KeyEvictor {
        KeyEvictor(Keys::new(config, naming))
    }
}

#[async_trait]
impl Evict for KeyEvictor {
    async fn evict(&self, channel: &str) {
        for key in [
            self.0.naming.meta_key(channel),
            self.0.naming.stream_key(channel),
        ] {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(key);
            let _: i64 = self.0.query(channel, &cmd).await;
        }
    }
}
