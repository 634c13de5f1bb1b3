//! The broker conformance suite against the memory broker (its eviction hook is the broker's
//! own eviction path).

use std::sync::Arc;
use std::time::Duration;

use chorus_core::broker::conformance::{run_all, Expect, Subject};
use chorus_core::broker::memory::MemoryBroker;

#[tokio::test]
async fn memory_broker_conformance() {
    run_all(
        || async {
            let b = MemoryBroker::new();
            Subject {
                broker: b.clone(),
                evict: b,
            }
        },
        Expect {
            filters_unsubscribed: false,
            delivery_timeout: Duration::from_secs(1),
        },
    )
    .await;
}

/// The real bound as the eviction hook: publishing to `max_streams` other channels evicts the
/// channel (it is the least recently used), and the suite's checks hold the same.
#[tokio::test]
async fn memory_broker_conformance_with_real_eviction() {
    use async_trait::async_trait;
    use chorus_core::broker::conformance::{history, publication, Evict};
    use chorus_core::broker::memory::MemoryBrokerOptions;
    use chorus_core::broker::Broker;

    struct ByBound(Arc<MemoryBroker>);

    #[async_trait]
    impl Evict for ByBound {
        async fn evict(&self, channel: &str) {
            let max = self.0.options().max_streams;
            for i in 0..max {
                let other = format!("{channel}:filler:{i}");
                if let Err(e) = self.0.publish(&other, publication("x"), &history(1)).await {
                    panic!("publish: {e}");
                }
            }
        }
    }

    run_all(
        || async {
            let b = MemoryBroker::with_options(MemoryBrokerOptions {
                max_streams: 4,
                ..MemoryBrokerOptions::default()
            });
            Subject {
                broker: b.clone(),
                evict: Arc::new(ByBound(b)),
            }
        },
        Expect {
            filters_unsubscribed: false,
            delivery_timeout: Duration::from_secs(1),
        },
    )
    .await;
}
