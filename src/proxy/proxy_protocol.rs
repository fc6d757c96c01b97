//! PROXY protocol v1 (text) and v2 (binary) headers in front of a client connection: a strict,
//! bounded parser of client bytes and the read of one header with a deadline.
//!
//! Own code rather than the `ppp` or `proxy-header` crates: the whole format is two small
//! grammars, and here each limit (107 bytes for v1, [`MAX_V2_PAYLOAD`] for v2, one header,
//! nothing read past what the caller replays) is ours, checked by unit tests and the
//! `proxy_protocol` fuzz target, with no dependency to follow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature (12 bytes).
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the specification's own bound).
pub const MAX_V1: usize = 107;
/// The most v2 payload (addresses and TLVs) accepted. Addresses take at most 216 bytes; load
/// balancers' TLVs (AWS VPC endpoint ids, GCP PSC ids, TLS details) fit well within this.
pub const MAX_V2_PAYLOAD: usize = 4096;

/// What a header says about the connection. `None` addresses (v1 `UNKNOWN`, v2 `LOCAL` or an
/// unspecified family) mean "use the socket's own addresses".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY protocol v1 line")]
    V1,
    #[error("PROXY protocol v1 line longer than 107 bytes")]
    V1TooLong,
    #[error("malformed PROXY protocol v2 header")]
    V2,
    #[error("PROXY protocol v2 header longer than the limit")]
    V2TooLong,
    #[error("PROXY protocol v2 header for an unsupported transport (UNIX or datagram)")]
    V2Unsupported,
}

/// Parses the header at the start of `buf`. `Ok(None)`: a valid beginning, more bytes
/// needed; `Ok(Some((header, n)))`: the header takes the first `n` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 { Ok(None) } else { parse_v1(buf) };
    }
    Err(Error::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    // The CR may be at most the 106th byte, so that the LF is at most the 107th.
    let window = &buf[..buf.len().min(MAX_V1 - 1)];
    if let Some(lf) = window.iter().position(|&b| b == b'\n')
        && !window[..lf].contains(&b'\r')
    {
        return Err(Error::V1);
    }
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if buf.len() >= MAX_V1 - 1 {
            Err(Error::V1TooLong)
        } else {
            Ok(None)
        };
    };
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(Error::V1),
    }
    let line = std::str::from_utf8(&buf[6..cr]).map_err(|_| Error::V1)?;
    let mut parts = line.split(' ');
    let header = match parts.next() {
        // The receiver ignores whatever follows UNKNOWN up to the CRLF.
        Some("UNKNOWN") => Header {
            source: None,
            destination: None,
        },
        Some(proto @ ("TCP4" | "TCP6")) => {
            let mut field = || parts.next().ok_or(Error::V1);
            let (src, dst, sport, dport) = (field()?, field()?, field()?, field()?);
            if parts.next().is_some() {
                return Err(Error::V1);
            }
            let ip = |s: &str| -> Result<IpAddr, Error> {
                if proto == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| Error::V1)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| Error::V1)
                }
            };
            Header {
                source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
                destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
            }
        }
        _ => return Err(Error::V1),
    };
    Ok(Some((header, cr + 2)))
}

/// A v1 port: 0 to 65535 in decimal, no sign, no leading zero.
fn port(s: &str) -> Result<u16, Error> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return Err(Error::V1);
    }
    s.parse().map_err(|_| Error::V1)
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let Some(fixed) = buf.get(..16) else {
        // The version and command byte can be judged as soon as it is there.
        if buf.len() > 12 && buf[12] >> 4 != 2 {
            return Err(Error::V2);
        }
        return Ok(None);
    };
    let (ver_cmd, family, len) = (
        fixed[12],
        fixed[13],
        usize::from(u16::from_be_bytes([fixed[14], fixed[15]])),
    );
    if ver_cmd >> 4 != 2 {
        return Err(Error::V2);
    }
    if len > MAX_V2_PAYLOAD {
        return Err(Error::V2TooLong);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::V2),
    };
    let Some(payload) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let total = 16 + len;
    let unspecified = Header {
        source: None,
        destination: None,
    };
    // LOCAL: a health check of the proxy itself; the payload (if any) is skipped.
    if local {
        return Ok(Some((unspecified, total)));
    }
    let addrs = match (family >> 4, family & 0x0f) {
        (0, _) => return Ok(Some((unspecified, total))),
        (1 | 2, 1) => {
            let (ip_len, v4) = if family >> 4 == 1 { (4, true) } else { (16, false) };
            let a = payload.get(..2 * ip_len + 4).ok_or(Error::V2)?;
            let ip = |b: &[u8]| -> IpAddr {
                if v4 {
                    IpAddr::from(<[u8; 4]>::try_from(b).unwrap_or_default())
                } else {
                    IpAddr::from(<[u8; 16]>::try_from(b).unwrap_or_default())
                }
            };
            let (src, rest) = a.split_at(ip_len);
            let (dst, ports) = rest.split_at(ip_len);
            Header {
                source: Some(SocketAddr::new(ip(src), u16::from_be_bytes([ports[0], ports[1]]))),
                destination: Some(SocketAddr::new(ip(dst), u16::from_be_bytes([ports[2], ports[3]]))),
            }
        }
        (1 | 2, _) | (3, _) => return Err(Error::V2Unsupported),
        _ => return Err(Error::V2),
    };
    // TLVs after the addresses are skipped unread: nothing in them changes what Portico does.
    Ok(Some((addrs, total)))
}

/// Why a connection's header could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Invalid(#[from] Error),
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before a complete PROXY protocol header")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one header from `io` within `timeout`. Reads may take more than the header (the
/// client's first bytes after it): those come back as the `Vec`, to be replayed in front of
/// the connection (see [`super::rewind::Rewind`]).
pub async fn read<R: AsyncRead + Unpin>(io: &mut R, timeout: Duration) -> Result<(Header, Vec<u8>), ReadError> {
    let work = async {
        let mut buf = Vec::with_capacity(256);
        loop {
            let mut chunk = [0u8; 512];
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((header, used)) = parse(&buf)? {
                return Ok((header, buf.split_off(used)));
            }
            // parse() refuses anything longer than its limits before it gets here twice over.
            debug_assert!(buf.len() <= 16 + MAX_V2_PAYLOAD);
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ReadError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(s: &str) -> Result<Option<(Header, usize)>, Error> {
        parse(s.as_bytes())
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
        let (h, n) = v1(line).unwrap().unwrap();
        assert_eq!(h.source, addr("192.0.2.7:56324"));
        assert_eq!(h.destination, addr("198.51.100.1:443"));
        assert_eq!(&line[n..], "GET /");
        let (h, _) = v1("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n").unwrap().unwrap();
        assert_eq!(h.source, addr("[2001:db8::1]:65535"));
        assert_eq!(h.destination, addr("[::1]:0"));
        let (h, n) = v1("PROXY UNKNOWN whatever follows\r\n").unwrap().unwrap();
        assert_eq!((h.source, n), (None, 32));
        assert_eq!(v1("PROXY UNKNOWN\r\n").unwrap().unwrap().1, 15);
    }

    #[test]
    fn v1_needs_more_until_the_line_ends() {
        let line = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
        for end in 0..line.len() {
            assert_eq!(v1(&line[..end]), Ok(None), "{:?}", &line[..end]);
        }
    }

    #[test]
    fn v1_refuses_what_is_not_exactly_the_grammar() {
        for bad in [
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\rX",
            "PROXY TCP4 192.0.2.7  198.51.100.1 56324 443\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 1\r\n",
            "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
            "PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
            "PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
            "PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n",
            "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            "PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n",
            "PROXY \r\n",
        ] {
            assert_eq!(v1(bad), Err(Error::V1), "{bad:?}");
        }
        for bad in ["GET / HTTP/1.1\r\n", "\x16\x03\x01", "proxy ", "PROXX"] {
            assert_eq!(v1(bad), Err(Error::NotProxy), "{bad:?}");
        }
    }

    #[test]
    fn v1_is_at_most_107_bytes() {
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(MAX_V1 - 16));
        assert_eq!(long.len(), MAX_V1);
        assert_eq!(v1(&long).unwrap().unwrap().1, MAX_V1);
        let longer = format!("PROXY UNKNOWN {}\r\n", "x".repeat(MAX_V1 - 15));
        assert_eq!(v1(&longer), Err(Error::V1TooLong));
        assert_eq!(v1(&format!("PROXY UNKNOWN {}", "x".repeat(200))), Err(Error::V1TooLong));
        // A CR as the 106th byte with nothing after it yet: one more byte decides.
        let edge = format!("PROXY UNKNOWN {}\r", "x".repeat(MAX_V1 - 16));
        assert_eq!(v1(&edge), Ok(None));
    }

    fn v2(cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | cmd);
        b.push(family);
        b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn v2_inet_inet6_local_and_tlvs() {
        let mut p = vec![192, 0, 2, 7, 198, 51, 100, 1];
        p.extend_from_slice(&56324u16.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        // A TLV (PP2_TYPE_AUTHORITY "example.com") is skipped.
        p.extend_from_slice(&[0x02, 0, 11]);
        p.extend_from_slice(b"example.com");
        let mut b = v2(1, 0x11, &p);
        let total = b.len();
        b.extend_from_slice(b"\x16\x03\x01");
        let (h, n) = parse(&b).unwrap().unwrap();
        assert_eq!(n, total);
        assert_eq!(h.source, addr("192.0.2.7:56324"));
        assert_eq!(h.destination, addr("198.51.100.1:443"));
        for end in 0..total {
            assert_eq!(parse(&b[..end]), Ok(None), "{end}");
        }

        let mut p = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        p.extend_from_slice(&[0, 1, 0, 2]);
        let (h, _) = parse(&v2(1, 0x21, &p)).unwrap().unwrap();
        assert_eq!(h.source, addr("[2001:db8::1]:1"));
        assert_eq!(h.destination, addr("[::1]:2"));

        let (h, n) = parse(&v2(0, 0x00, &[])).unwrap().unwrap();
        assert_eq!((h.source, n), (None, 16));
        // LOCAL with an address block: still the socket's addresses, the block skipped.
        let (h, n) = parse(&v2(0, 0x11, &[0; 12])).unwrap().unwrap();
        assert_eq!((h.source, n), (None, 28));
        let (h, _) = parse(&v2(1, 0x00, &[1, 2, 3])).unwrap().unwrap();
        assert_eq!(h.source, None);
    }

    #[test]
    fn v2_refusals() {
        // Too short for the family's addresses.
        assert_eq!(parse(&v2(1, 0x11, &[0; 11])), Err(Error::V2));
        assert_eq!(parse(&v2(1, 0x21, &[0; 35])), Err(Error::V2));
        // Version 1 in the binary form, unknown command, unknown family.
        let mut b = v2(1, 0x11, &[0; 12]);
        b[12] = 0x11;
        assert_eq!(parse(&b), Err(Error::V2));
        assert_eq!(parse(&b[..13]), Err(Error::V2));
        assert_eq!(parse(&v2(2, 0x11, &[0; 12])), Err(Error::V2));
        assert_eq!(parse(&v2(1, 0x41, &[0; 12])), Err(Error::V2));
        // UNIX sockets and datagrams make no sense in front of a TCP listener.
        assert_eq!(parse(&v2(1, 0x31, &[0; 216])), Err(Error::V2Unsupported));
        assert_eq!(parse(&v2(1, 0x12, &[0; 12])), Err(Error::V2Unsupported));
        // The length is judged from the fixed part alone, before the payload arrives.
        let mut b = v2(1, 0x11, &[]);
        b[14..16].copy_from_slice(&((MAX_V2_PAYLOAD + 1) as u16).to_be_bytes());
        assert_eq!(parse(&b), Err(Error::V2TooLong));
        b[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&b), Err(Error::V2TooLong));
        let mut sig = V2_SIGNATURE;
        sig[11] = b'X';
        assert_eq!(parse(&sig), Err(Error::NotProxy));
    }

    /// A cheap, deterministic cousin of the `proxy_protocol` fuzz target: every byte of valid
    /// headers replaced by awkward values, at every length. No panic, no header past the input.
    #[test]
    fn mutated_headers_never_panic() {
        let mut p = vec![192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2, 0x02, 0, 1, b'x'];
        p.extend_from_slice(&[0; 4]);
        let samples = [
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n".to_vec(),
            v2(1, 0x11, &p),
            v2(1, 0x21, &[7; 40]),
        ];
        for sample in samples {
            for i in 0..sample.len() {
                for v in [0u8, 0xff, b' ', b'\r', b'\n', b'0', b':', 0x20, 0x21] {
                    let mut m = sample.clone();
                    m[i] = v;
                    for end in [i + 1, m.len()] {
                        if let Ok(Some((_, n))) = parse(&m[..end]) {
                            assert!(n <= end);
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn read_returns_what_follows_the_header() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let send = async move {
            use tokio::io::AsyncWriteExt;
            // In pieces, as a slow network would deliver them.
            for piece in ["PROXY TCP4 192.0.2.7 ", "198.51.100.1 1 2\r", "\nGET / HTTP/1.1\r\n"] {
                client.write_all(piece.as_bytes()).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        };
        let (client, got) = tokio::join!(send, read(&mut server, Duration::from_secs(5)));
        let (h, rest) = got.unwrap();
        assert_eq!(h.source, addr("192.0.2.7:1"));
        // What the read took past the header is handed back.
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn read_gives_up_on_silence_garbage_and_close() {
        let (_client, mut server) = tokio::io::duplex(64);
        let e = read(&mut server, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, ReadError::Timeout(_)), "{e}");

        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let e = read(&mut server, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, ReadError::Invalid(Error::NotProxy)), "{e}");

        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PROXY TCP4")
            .await
            .unwrap();
        drop(client);
        let e = read(&mut server, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, ReadError::Closed), "{e}");
    }
}
