//! A JWKS endpoint for the tests: a plain HTTP/1.1 (or HTTPS) server on port 0 that answers
//! every request with what the test set ([`Answer`]) and records when each request came.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this body (after `delay`).
    Doc { body: String, delay: Duration },
    /// This status, empty body.
    Status(u16),
    /// Read the request, never answer.
    Hang,
}

#[derive(Default)]
struct State {
    answer: Option<Answer>,
    hits: Vec<Instant>,
}

/// A running endpoint; it stops with the test's runtime.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl JwksServer {
    /// A plain HTTP endpoint answering `doc`.
    pub async fn start(doc: String) -> JwksServer {
        JwksServer::start_with(doc, None).await
    }

    /// An endpoint answering `doc`, over TLS when `tls` is given.
    pub async fn start_with(doc: String, tls: Option<tokio_rustls::TlsAcceptor>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = JwksServer {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State::default())),
        };
        server.set_doc(doc);
        let state = server.state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, state).await;
                            }
                        }
                        None => serve(tcp, state).await,
                    }
                });
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn set(&self, answer: Answer) {
        self.state.lock().unwrap().answer = Some(answer);
    }

    pub fn set_doc(&self, body: String) {
        self.set(Answer::Doc {
            body,
            delay: Duration::ZERO,
        });
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.state.lock().unwrap().hits.len()
    }

    /// When each request arrived.
    pub fn hit_times(&self) -> Vec<Instant> {
        self.state.lock().unwrap().hits.clone()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: Arc<Mutex<State>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    assert!(
        text.starts_with("GET /.well-known/jwks.json HTTP/1.1\r\n"),
        "{text}"
    );
    let answer = {
        let mut st = state.lock().unwrap();
        st.hits.push(Instant::now());
        st.answer.clone()
    };
    let response = match answer {
        Some(Answer::Doc { body, delay }) => {
            tokio::time::sleep(delay).await;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Some(Answer::Status(code)) => {
            format!("HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
        Some(Answer::Hang) | None => {
            std::future::pending::<()>().await;
            return;
        }
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
