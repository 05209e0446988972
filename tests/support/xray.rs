//! A fake X-Ray daemon: a UDP listener on 127.0.0.1 that parses every
//! datagram (header line, then one segment document).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// One datagram as the daemon would see it.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub size: usize,
    pub header: Value,
    pub document: Value,
}

pub struct XrayDaemon {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Datagram>>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for XrayDaemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl XrayDaemon {
    pub async fn start() -> XrayDaemon {
        XrayDaemon::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// A daemon on `addr`: after a daemon there was dropped, the same
    /// address again (the port may take a moment to be free).
    pub async fn start_on(addr: SocketAddr) -> XrayDaemon {
        let mut tries = 0;
        let socket = loop {
            match UdpSocket::bind(addr).await {
                Ok(socket) => break socket,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => panic!("cannot bind {addr}: {err}"),
            }
        };
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let task = {
            let received = Arc::clone(&received);
            let arrived = Arc::clone(&arrived);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 70_000];
                loop {
                    let Ok(size) = socket.recv(&mut buffer).await else {
                        continue;
                    };
                    let text =
                        String::from_utf8(buffer[..size].to_vec()).expect("a datagram is UTF-8");
                    let (header, document) = text
                        .split_once('\n')
                        .expect("a header line, then the document");
                    received.lock().unwrap().push(Datagram {
                        size,
                        header: serde_json::from_str(header).expect("the header is JSON"),
                        document: serde_json::from_str(document).expect("the document is JSON"),
                    });
                    arrived.notify_waiters();
                }
            })
        };
        XrayDaemon {
            addr,
            received,
            arrived,
            task,
        }
    }

    pub fn datagrams(&self) -> Vec<Datagram> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` datagrams have arrived; answers them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Datagram> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            let now = self.datagrams();
            if now.len() >= n {
                return now;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.datagrams();
            }
        }
    }
}

/// Every segment and subsegment in a document, nested ones included.
pub fn all_parts(document: &Value) -> Vec<&Value> {
    let mut parts = vec![document];
    let mut index = 0;
    while index < parts.len() {
        if let Some(children) = parts[index]["subsegments"].as_array() {
            parts.extend(children.iter());
        }
        index += 1;
    }
    parts
}
