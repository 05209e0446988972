//! A TCP gate on 127.0.0.1 in front of a local receiver, for the faults a
//! receiver cannot play by itself: a destination that refuses connections
//! (nothing listens on the port, then the same port listens again), one
//! that accepts and never answers, and one that answers late. The HTTP
//! answers (500, 429, ...) stay the receivers' own.
//!
//! Every change of mode closes the connections already open, as a
//! destination going down or coming back would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes pass both ways unchanged.
    Open,
    /// Nothing listens: connections are refused.
    Refuse,
    /// Connections are accepted and read, and never answered.
    Hang,
    /// Each answer is held this long before it is passed on.
    Slow(Duration),
}

pub struct Gate {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gate {
    /// An open gate to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().unwrap();
        let (mode, changes) = watch::channel(Mode::Open);
        let task = tokio::spawn(run(listener, addr, upstream, changes));
        Gate { addr, mode, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn run(
    first: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut changes: watch::Receiver<Mode>,
) {
    let mut listener = Some(first);
    loop {
        let mode = *changes.borrow_and_update();
        if mode == Mode::Refuse {
            listener = None;
        } else if listener.is_none() {
            listener = Some(rebind(addr).await);
        }
        // Dropped at the next change: aborts every connection of this mode.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                accepted = accept(listener.as_ref()) => {
                    if let Ok((client, _)) = accepted {
                        connections.spawn(serve(client, upstream, mode));
                    }
                }
            }
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The same port again; the kernel may take a moment to free it.
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot listen on {addr} again");
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mode: Mode) {
    match mode {
        Mode::Refuse => {}
        Mode::Hang => {
            let mut buffer = vec![0u8; 16 * 1024];
            while client.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
        }
        Mode::Open => {
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        }
        Mode::Slow(delay) => {
            if let Ok(server) = TcpStream::connect(upstream).await {
                slow(client, server, delay).await;
            }
        }
    }
}

/// Passes requests at once and holds each answer `delay`: the first bytes
/// back after a request wait, the rest of that answer follows them.
async fn slow(client: TcpStream, server: TcpStream, delay: Duration) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let asked = Arc::new(AtomicBool::new(false));
    let requests = {
        let asked = Arc::clone(&asked);
        async move {
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                asked.store(true, Ordering::SeqCst);
                if server_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let answers = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
            if asked.swap(false, Ordering::SeqCst) {
                tokio::time::sleep(delay).await;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(requests, answers);
}
