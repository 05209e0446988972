//! Delivery to the X-Ray daemon: one UDP datagram per document, the header
//! line first, as the daemon and the X-Ray SDKs speak it.
//!
//! On Linux a batch's datagrams leave in `sendmmsg` calls, up to
//! [`MAX_PER_CALL`] at a time, rather than a `send` each. Every datagram
//! still crosses the network stack, but one system call carries many, and
//! the daemon, woken by the first, reads the rest without being woken
//! again: in `bench/run`'s "every sink on" row the sink's thread spent
//! 4.4 to 4.6 µs a trace in the kernel with a `send` each, more than on
//! translating it, and 3.3 to 3.6 with `sendmmsg` (bench/README.md, "Data
//! path", step 6).

use std::io;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::naming::Naming;
use super::translate;
use crate::telemetry::queue::{SendError, Sink};
use crate::telemetry::sink::SharedSpan;

const HEADER: &str = "{\"format\": \"json\", \"version\": 1}\n";

/// Where the daemon listens. The host is resolved when sending, so a daemon
/// that starts after the backend (docker-compose) is found once it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonAddress {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for DaemonAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl DaemonAddress {
    /// `host:port`, or the SDKs' `tcp:host:port udp:host:port` (UDP is used).
    pub fn parse(raw: &str) -> Result<DaemonAddress, String> {
        let raw = raw.trim();
        let udp = if raw.contains(' ') {
            raw.split_whitespace()
                .find_map(|part| part.strip_prefix("udp:"))
                .ok_or_else(|| "the two-address form needs a udp:host:port part".to_owned())?
        } else {
            raw.strip_prefix("udp:").unwrap_or(raw)
        };
        let (host, port) = udp
            .rsplit_once(':')
            .ok_or_else(|| format!("{udp:?} is not host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("{udp:?} is not host:port"));
        }
        Ok(DaemonAddress {
            host: host.to_owned(),
            port,
        })
    }
}

pub struct DaemonSink {
    address: DaemonAddress,
    naming: Naming,
    socket: Option<UdpSocket>,
}

impl DaemonSink {
    pub fn new(address: DaemonAddress, naming: Naming) -> Self {
        DaemonSink {
            address,
            naming,
            socket: None,
        }
    }

    /// A socket connected to the daemon, so that "nothing listening" comes
    /// back as an error instead of vanishing.
    async fn socket(&mut self) -> Result<&UdpSocket, SendError> {
        if self.socket.is_none() {
            let failed = |what: &str, err: std::io::Error| SendError {
                message: format!("X-Ray daemon {}: {what}: {err}", self.address),
                retryable: false,
                retry_after: None,
                hint: Some(NO_DAEMON),
            };
            let target = tokio::net::lookup_host((self.address.host.as_str(), self.address.port))
                .await
                .map_err(|err| failed("cannot resolve", err))?
                .next()
                .ok_or_else(|| failed("cannot resolve", std::io::Error::other("no address")))?;
            let local = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let socket = UdpSocket::bind(local)
                .await
                .map_err(|err| failed("cannot bind", err))?;
            socket
                .connect(target)
                .await
                .map_err(|err| failed("cannot connect", err))?;
            self.socket = Some(socket);
        }
        Ok(self.socket.as_ref().expect("just set"))
    }
}

const NO_DAEMON: &str = "is the X-Ray daemon running at AWS_XRAY_DAEMON_ADDRESS? \
     In docker-compose it is the service's name (xray-daemon:2000), not localhost";

impl Sink<SharedSpan> for DaemonSink {
    type Payload = Vec<String>;

    fn encode(&mut self, batch: Vec<SharedSpan>) -> Vec<String> {
        translate::documents(&batch, &self.naming)
            .into_iter()
            .map(|document| format!("{HEADER}{document}"))
            .collect()
    }

    async fn send(&mut self, payload: &Vec<String>) -> Result<(), SendError> {
        let socket = self.socket().await?;
        let mut sent = 0;
        let mut failure = None;
        while sent < payload.len() {
            let attempt =
                match socket.try_io(Interest::WRITABLE, || send_some(socket, &payload[sent..])) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        socket.writable().await.map(|()| 0)
                    }
                    other => other,
                };
            match attempt {
                Ok(count) => sent += count,
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        // A datagram nobody received comes back as an error on the socket
        // (the port unreachable). `sendmmsg` reports one only when the
        // call's first datagram meets it, and then it is gone: the batch
        // may seem sent whole while the daemon was absent, the error of its
        // last datagram still pending, to fail the first batch once it is
        // back. Taking it here counts this batch as failed instead.
        if failure.is_none() {
            failure = socket.take_error().unwrap_or_else(Some);
        }
        let Some(err) = failure else {
            return Ok(());
        };
        // Resolve again next time: the daemon may have moved.
        self.socket = None;
        Err(SendError {
            message: format!("X-Ray daemon {}: {err}", self.address),
            retryable: false,
            retry_after: None,
            hint: Some(NO_DAEMON),
        })
    }
}

/// Datagrams one `sendmmsg` call carries at most; the kernel takes up to
/// 1,024, and the socket's buffer limits a call sooner when it is full.
#[cfg(target_os = "linux")]
const MAX_PER_CALL: usize = 64;

/// Sends the first datagrams of `datagrams` (at least one, as many as one
/// system call takes) and answers how many went.
#[cfg(target_os = "linux")]
fn send_some(socket: &UdpSocket, datagrams: &[String]) -> io::Result<usize> {
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, sendmmsg};
    let datagrams = &datagrams[..datagrams.len().min(MAX_PER_CALL)];
    let slices: Vec<[io::IoSlice<'_>; 1]> = datagrams
        .iter()
        .map(|datagram| [io::IoSlice::new(datagram.as_bytes())])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        datagrams.iter().map(|_| Default::default()).collect();
    let mut messages: Vec<MMsgHdr<'_>> = slices
        .iter()
        .zip(&mut controls)
        .map(|(slice, control)| MMsgHdr::new(slice, control))
        .collect();
    Ok(sendmmsg(socket, &mut messages, SendFlags::empty())?)
}

#[cfg(not(target_os = "linux"))]
fn send_some(socket: &UdpSocket, datagrams: &[String]) -> io::Result<usize> {
    socket.try_send(datagrams[0].as_bytes()).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_to(address: std::net::SocketAddr) -> DaemonSink {
        let naming = Naming {
            fallback: "cruddur".into(),
            pattern: None,
        };
        DaemonSink::new(DaemonAddress::parse(&address.to_string()).unwrap(), naming)
    }

    #[tokio::test]
    async fn a_batch_to_an_absent_daemon_fails_and_the_next_one_after_it_is_back_arrives() {
        let address = {
            let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            taken.local_addr().unwrap()
        };
        let mut sink = sink_to(address);
        let payload: Vec<String> = (0..100)
            .map(|n| format!("{HEADER}{{\"n\": {n}}}"))
            .collect();
        for _ in 0..3 {
            let failed = sink.send(&payload).await.unwrap_err();
            assert!(failed.message.contains("refused"), "{}", failed.message);
        }
        let daemon = std::net::UdpSocket::bind(address).unwrap();
        daemon
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        sink.send(&payload).await.unwrap();
        let mut buffer = [0; 1024];
        for datagram in &payload {
            let length = daemon.recv(&mut buffer).unwrap();
            assert_eq!(&buffer[..length], datagram.as_bytes());
        }
    }

    #[tokio::test]
    async fn a_batch_longer_than_one_call_arrives_whole_and_in_order() {
        let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        daemon
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut sink = sink_to(daemon.local_addr().unwrap());
        let payload: Vec<String> = (0..150)
            .map(|n| format!("{HEADER}{{\"n\": {n}, \"pad\": \"{}\"}}", "x".repeat(n)))
            .collect();
        sink.send(&payload).await.unwrap();
        sink.send(&payload[..1].to_vec()).await.unwrap();
        let mut buffer = [0; 1024];
        for (n, datagram) in payload.iter().chain(&payload[..1]).enumerate() {
            let length = daemon.recv(&mut buffer).unwrap();
            assert_eq!(
                std::str::from_utf8(&buffer[..length]).unwrap(),
                datagram,
                "datagram {n}"
            );
        }
    }

    #[test]
    fn daemon_addresses_in_every_form() {
        let parsed = |raw| DaemonAddress::parse(raw).map(|a| a.to_string());
        assert_eq!(parsed("127.0.0.1:2000").unwrap(), "127.0.0.1:2000");
        assert_eq!(parsed("xray-daemon:2000").unwrap(), "xray-daemon:2000");
        assert_eq!(parsed("tcp:xray:2001 udp:xray:2000").unwrap(), "xray:2000");
        assert_eq!(
            parsed("udp:10.0.0.2:3000 tcp:10.0.0.2:3001").unwrap(),
            "10.0.0.2:3000"
        );
        assert_eq!(parsed("[::1]:2000").unwrap(), "::1:2000");
        for bad in [
            "",
            "xray",
            "xray:",
            "xray:port",
            ":2000",
            "xray:0",
            "tcp:a:1 tcp:b:2",
            "xray:70000",
        ] {
            assert!(DaemonAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
