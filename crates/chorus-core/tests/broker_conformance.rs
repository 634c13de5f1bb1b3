//! The broker conformance suite against the memory broker.

use std::sync::Arc;
use std::time::Duration;

use chorus_core::broker::conformance::{run_all, Expect};
use chorus_core::broker::memory::MemoryBroker;
use chorus_core::broker::Broker;

#[tokio::test]
async fn memory_broker_conformance() {
    run_all(
        || async { MemoryBroker::new() as Arc<dyn Broker> },
        Expect {
            filters_unsubscribed: false,
            delivery_timeout: Duration::from_secs(1),
        },
    )
    .await;
}
