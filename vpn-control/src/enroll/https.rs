//! A small blocking HTTPS/1.1 client that trusts exactly one server
//! certificate: the one whose SHA-256 (of the DER) the blob pins.
//!
//! No web PKI and no host-name check: the pin is the whole trust decision,
//! as in SSH's known-hosts. The TLS handshake still proves that the server
//! holds the pinned certificate's private key (rustls checks the handshake
//! signature with the certificate's key), so a copied certificate is not
//! enough to impersonate the server. The handshake completes before any
//! request byte (and so before the enrolment secret) is sent.
//!
//! Deliberately small (the node daemon must not link a web stack): one
//! request per connection (`Connection: close`), bodies framed by
//! `Content-Length`, chunked encoding, or the end of the connection.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use sha2::{Digest as _, Sha256};

use super::EnrollError;
use vpn_api::{hex, ServerUrl};

/// Largest response accepted (certificates, CRLs and JSON are small).
pub const MAX_RESPONSE: usize = 4 << 20;
/// Default connect/read/write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The certificate verifier: accepts exactly the pinned certificate, and
/// records what it saw so that a mismatch can be reported with both values.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    mismatch: Mutex<Option<[u8; 32]>>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = Some(got);
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (e.g. `set-cookie`).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client for one server, trusting only the pinned certificate.
#[derive(Clone)]
pub struct PinnedClient {
    url: ServerUrl,
    display_url: String,
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    timeout: Duration,
}

impl std::fmt::Debug for PinnedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedClient")
            .field("url", &self.display_url)
            .field("pin", &hex(&self.pin))
            .finish()
    }
}

impl PinnedClient {
    /// A client for `server_url` (`https://HOST[:PORT]`) that accepts only a
    /// certificate whose SHA-256 is `pin`.
    pub fn new(server_url: &str, pin: [u8; 32]) -> Result<Self, EnrollError> {
        let url = ServerUrl::parse(server_url).map_err(EnrollError::Protocol)?;
        Ok(Self {
            url,
            display_url: server_url.trim_end_matches('/').to_owned(),
            pin,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes the connect/read/write timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.display_url
    }

    fn connect_tcp(&self) -> Result<TcpStream, EnrollError> {
        let err = |source| EnrollError::Connect {
            url: self.display_url.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = match self.url.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.url.port)],
            Err(_) => (self.url.host.as_str(), self.url.port)
                .to_socket_addrs()
                .map_err(err)?
                .collect(),
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.timeout)).map_err(err)?;
                    s.set_write_timeout(Some(self.timeout)).map_err(err)?;
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(err(last))
    }

    /// Connects and completes the TLS handshake (the pin is checked here).
    fn connect(&self) -> Result<StreamOwned<ClientConnection, TcpStream>, EnrollError> {
        let verifier = Arc::new(PinVerifier {
            pin: self.pin,
            provider: self.provider.clone(),
            mismatch: Mutex::new(None),
        });
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.tls_error(&e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = match self.url.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(self.url.host.clone()).map_err(|e| {
                EnrollError::Protocol(format!("bad host name {:?}: {e}", self.url.host))
            })?,
        };
        let mut conn =
            ClientConnection::new(Arc::new(config), name).map_err(|e| self.tls_error(&e))?;
        let mut tcp = self.connect_tcp()?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let seen = *verifier.mismatch.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(got) = seen {
                    return Err(EnrollError::PinMismatch {
                        url: self.display_url.clone(),
                        expected: hex(&self.pin),
                        got: hex(&got),
                    });
                }
                return Err(EnrollError::Tls {
                    url: self.display_url.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(StreamOwned::new(conn, tcp))
    }

    fn tls_error(&self, e: &dyn std::fmt::Display) -> EnrollError {
        EnrollError::Tls {
            url: self.display_url.clone(),
            reason: e.to_string(),
        }
    }

    /// Sends one request and reads the whole response. `path` starts with
    /// `/` and is appended to the URL's path. `body` is `(content type,
    /// bytes)`. Any status is returned as a [`Response`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Response, EnrollError> {
        let mut stream = self.connect()?;
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vpn-control/{}\r\nConnection: close\r\n",
            self.url.base_path,
            self.url.authority(),
            env!("CARGO_PKG_VERSION"),
        );
        for (n, v) in headers {
            if n.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
                return Err(EnrollError::Protocol(format!("bad request header {n:?}")));
            }
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        match body {
            Some((ctype, b)) => {
                head.push_str(&format!(
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                ));
            }
            None if method != "GET" && method != "HEAD" => {
                head.push_str("Content-Length: 0\r\n\r\n");
            }
            None => head.push_str("\r\n"),
        }
        let io = |e: std::io::Error| EnrollError::Connect {
            url: self.display_url.clone(),
            source: e,
        };
        let mut msg = head.into_bytes();
        if let Some((_, b)) = body {
            msg.extend_from_slice(b);
        }
        stream.write_all(&msg).map_err(io)?;
        stream.flush().map_err(io)?;
        read_response(&mut stream, method == "HEAD").map_err(|e| match e {
            ReadError::Io(e) => io(e),
            ReadError::Bad(m) => EnrollError::Protocol(m),
        })
    }

    /// `GET path`, expecting 200 and JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, EnrollError> {
        let r = self.request("GET", path, &[("Accept", "application/json")], None)?;
        json_result(&r)
    }

    /// `POST path` with a JSON body, expecting 200 and JSON.
    pub fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, EnrollError> {
        let b = serde_json::to_vec(body).map_err(|e| EnrollError::Protocol(e.to_string()))?;
        let r = self.request(
            "POST",
            path,
            &[("Accept", "application/json")],
            Some(("application/json", &b)),
        )?;
        json_result(&r)
    }
}

/// A 200 JSON body as `T`; a 4xx/5xx `{"error": "..."}` as
/// [`EnrollError::Server`].
pub fn json_result<T: serde::de::DeserializeOwned>(r: &Response) -> Result<T, EnrollError> {
    if r.status != 200 {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = serde_json::from_slice::<ErrorBody>(&r.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| {
                let t = r.text();
                let t = t.trim();
                if t.is_empty() {
                    "(no message)".to_owned()
                } else {
                    t.chars().take(300).collect()
                }
            });
        return Err(EnrollError::Server {
            status: r.status,
            message,
        });
    }
    serde_json::from_slice(&r.body)
        .map_err(|e| EnrollError::Protocol(format!("the server's JSON answer does not parse: {e}")))
}

enum ReadError {
    Io(std::io::Error),
    Bad(String),
}

fn read_response(r: &mut impl Read, head_only: bool) -> Result<Response, ReadError> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    let mut eof = false;
    loop {
        if let Some(resp) = try_parse(&buf, eof, head_only)? {
            return Ok(resp);
        }
        if eof {
            return Err(ReadError::Bad(
                "the server closed the connection before the response was complete".into(),
            ));
        }
        match r.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A peer that closes without TLS close_notify: treat as EOF;
            // framing (Content-Length / chunked) still decides completeness.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
        if buf.len() > MAX_RESPONSE {
            return Err(ReadError::Bad(format!(
                "response larger than {MAX_RESPONSE} bytes"
            )));
        }
    }
}

/// Parses a complete response from `buf`, or `None` if more bytes are needed.
fn try_parse(buf: &[u8], eof: bool, head_only: bool) -> Result<Option<Response>, ReadError> {
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Bad(format!("malformed HTTP response: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    // 1xx interim responses: skip and parse what follows.
    if (100..200).contains(&status) && status != 101 {
        return try_parse(&buf[head_len..], eof, head_only);
    }
    let rest = &buf[head_len..];
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if head_only || status == 204 || status == 304 {
        Some(Vec::new())
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Bad(format!("bad Content-Length {len:?}")))?;
        (rest.len() >= len).then(|| rest[..len].to_vec())
    } else if eof {
        Some(rest.to_vec())
    } else {
        None
    };
    Ok(body.map(|body| Response {
        status,
        headers,
        body,
    }))
}

/// Decodes a chunked body; `None` until the last chunk has arrived.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| ReadError::Bad("bad chunk header".into()))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad(format!("bad chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers end with an empty line.
            return Ok(rest.windows(2).any(|w| w == b"\r\n").then_some(out));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Response {
        match read_response(&mut &bytes[..], false) {
            Ok(r) => r,
            Err(ReadError::Io(e)) => panic!("{e}"),
            Err(ReadError::Bad(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn response_framing() {
        let r = parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhelloEXTRA");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert_eq!(
            r.headers_named("set-cookie").collect::<Vec<_>>(),
            ["a=1", "b=2"]
        );
        let r = parse_all(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcdefg"[..]));
        let r = parse_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil eof");
        assert_eq!(r.body, b"until eof");
        // Truncated bodies are errors, not short successes.
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"garbage\r\n\r\n",
        ] {
            assert!(read_response(&mut &bad[..], false).is_err());
        }
    }
}
