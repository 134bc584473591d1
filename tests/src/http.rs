//! A minimal HTTP/1.1 server on loopback for tests: a **test fixture** standing in for a PCCS and for
//! a provider's `/v1/quote` (no network exists here). It answers each GET with what `route` returns
//! and records the request targets. Used by the verifier's and the client's collateral tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A response: status, headers, body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// A running loopback server.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Request targets (path and query), in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serve `route(target)` on a fresh loopback port until the process ends.
    pub fn start(route: impl Fn(&str) -> Response + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Skip the request headers.
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(target.clone());
                let (status, headers, body) = route(&target);
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Self { url, requests }
    }

    /// The recorded request targets.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Percent-encode everything but the unreserved characters (as PCCSs encode issuer chains).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A PCCS (API v4) serving `c` for every FMSPC and CA, the way Intel's PCCS shapes its answers.
pub fn pccs(c: dcap_qvl::QuoteCollateralV3) -> Server {
    Server::start(move |target| {
        let path = target.split('?').next().unwrap_or("");
        let h = |k: &str, v: &str| vec![(k.to_owned(), percent_encode(v))];
        match path {
            "/sgx/certification/v4/pckcrl" => (
                200,
                h("SGX-PCK-CRL-Issuer-Chain", &c.pck_crl_issuer_chain),
                c.pck_crl.clone(),
            ),
            "/tdx/certification/v4/tcb" | "/sgx/certification/v4/tcb" => (
                200,
                h("TCB-Info-Issuer-Chain", &c.tcb_info_issuer_chain),
                format!(
                    "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                    c.tcb_info,
                    hex::encode(&c.tcb_info_signature)
                )
                .into_bytes(),
            ),
            "/tdx/certification/v4/qe/identity" | "/sgx/certification/v4/qe/identity" => (
                200,
                h(
                    "SGX-Enclave-Identity-Issuer-Chain",
                    &c.qe_identity_issuer_chain,
                ),
                format!(
                    "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                    c.qe_identity,
                    hex::encode(&c.qe_identity_signature)
                )
                .into_bytes(),
            ),
            // PCCS serves the root CA CRL hex-encoded.
            "/sgx/certification/v4/rootcacrl" => {
                (200, vec![], hex::encode(&c.root_ca_crl).into_bytes())
            }
            _ => (404, vec![], b"not found".to_vec()),
        }
    })
}
