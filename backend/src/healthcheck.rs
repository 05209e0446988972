//! `cruddur-backend healthcheck`: the container image's HEALTHCHECK. The
//! runtime image has no shell and no curl, so the binary probes its own
//! `/api/health-check` over loopback with one plain HTTP/1.1 request and
//! succeeds only on a 200.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Where a server configured with `bind` and `port` is reached from the
/// same machine: its bind address, or loopback when it binds every address.
pub fn target(bind: IpAddr, port: u16) -> SocketAddr {
    let ip = match bind {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, port)
}

/// `GET /api/health-check` at `address`: `Ok` on a 200, else why not.
pub fn probe(address: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|err| format!("cannot connect to {address}: {err}"))?;
    let io = |err: std::io::Error| format!("{address}: {err}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(
            b"GET /api/health-check HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(_) => Err(format!("{address} answered {status_line:?}")),
        None => Err(format!("{address} sent no HTTP answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// A one-shot server that checks the request line and answers `status`.
    fn answer_once(status: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request_line = String::new();
            std::io::BufReader::new(&mut stream)
                .read_line(&mut request_line)
                .unwrap();
            assert_eq!(request_line, "GET /api/health-check HTTP/1.1\r\n");
            let body = "{\"success\":true}";
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).unwrap();
        });
        address
    }

    #[test]
    fn a_200_is_healthy() {
        let address = answer_once("200 OK");
        assert_eq!(probe(address, Duration::from_secs(5)), Ok(()));
    }

    #[test]
    fn any_other_status_is_not() {
        let address = answer_once("503 Service Unavailable");
        let err = probe(address, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("503 Service Unavailable"), "{err}");
    }

    #[test]
    fn nothing_listening_is_not() {
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = probe(address, Duration::from_secs(5)).unwrap_err();
        assert!(err.starts_with("cannot connect to"), "{err}");
    }

    #[test]
    fn every_address_is_probed_on_loopback() {
        assert_eq!(
            target("0.0.0.0".parse().unwrap(), 4567),
            "127.0.0.1:4567".parse().unwrap()
        );
        assert_eq!(
            target("::".parse().unwrap(), 80),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            target("10.0.0.7".parse().unwrap(), 4567),
            "10.0.0.7:4567".parse().unwrap()
        );
    }
}
