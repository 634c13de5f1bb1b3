//! The `floor` sink: accepts N loopback connections and reads (and discards) everything,
//! in its own thread with a single-threaded runtime, so the sending thread is measured
//! alone. It finishes when every connection has closed, returning the bytes read.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

use crate::error::LoadError;

/// Accept backlog: the sender connects while the sink accepts.
const BACKLOG: u32 = 4096;
/// How long `join` waits for the sink after the sender closed its sockets.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Sink {
    pub addr: SocketAddr,
    done: mpsc::Receiver<std::io::Result<u64>>,
}

async fn serve(n: usize, ready: mpsc::Sender<std::io::Result<SocketAddr>>) -> std::io::Result<u64> {
    let bound = (|| {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        sock.listen(BACKLOG)
    })();
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(std::io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let _ = ready.send(listener.local_addr());
    let total = Arc::new(AtomicU64::new(0));
    let mut readers = JoinSet::new();
    for _ in 0..n {
        let (mut s, _) = listener.accept().await?;
        let total = total.clone();
        readers.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(got) = s.read(&mut buf).await {
                if got == 0 {
                    break;
                }
                total.fetch_add(got as u64, Relaxed);
            }
        });
    }
    drop(listener);
    while readers.join_next().await.is_some() {}
    Ok(total.load(Relaxed))
}

pub fn start(n: usize) -> Result<Sink, LoadError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    std::thread::Builder::new()
        .name("floor-sink".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .and_then(|rt| rt.block_on(serve(n, ready_tx)));
            let _ = done_tx.send(result);
        })
        .map_err(|e| LoadError::io("floor sink thread", e))?;
    let addr = ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|e| LoadError::io("floor sink", std::io::Error::other(e)))?
        .map_err(|e| LoadError::io("floor sink listen", e))?;
    Ok(Sink { addr, done })
}

impl Sink {
    /// Waits for every connection to close; the bytes the sink read.
    pub fn join(self) -> Result<u64, LoadError> {
        self.done
            .recv_timeout(JOIN_TIMEOUT)
            .map_err(|e| LoadError::io("floor sink", std::io::Error::other(e)))?
            .map_err(|e| LoadError::io("floor sink", e))
    }
}
