//! The HTTP side of a push: one ureq agent, the registry's base URL (https, or http when TLS
//! verification is off and the registry does not speak TLS, as skopeo falls back), and the
//! `Authorization` the registry asked for (anonymous until a 401, then basic credentials or a
//! bearer token from the challenge's realm).
//!
//! Every request is an idempotent step (a HEAD, a GET, a PUT of bytes we hold, or a blob upload
//! that is started over as a whole): a 5xx answer, a reset connection or a timeout is retried
//! with a growing pause ([`RETRY_PAUSES`]), and a 401 once more after authenticating again.

use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use ureq::http::{Response, StatusCode};
use ureq::{Agent, Body, SendBody};

use super::auth::{self, Challenge, Credentials};
use super::reference::Reference;
use super::RegistryError;

/// Pauses before the retries of a failed step (so a step is tried at most four times).
pub const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// A request's body.
pub enum Payload<'a> {
    /// None.
    Empty,
    /// Bytes held in memory, sent with their length.
    Bytes(&'a [u8]),
    /// A stream, sent chunked; it cannot be sent twice.
    Stream(&'a mut dyn Read),
}

/// A request to the registry.
pub struct Request<'a> {
    /// `GET`, `HEAD`, `POST`, `PUT` or `PATCH`.
    pub method: &'static str,
    /// An absolute URL, or a path on the registry.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Payload<'a>,
}

/// A connection to one registry and repository.
pub struct Client {
    agent: Agent,
    base: String,
    dest: Reference,
    creds: Option<Credentials>,
    auth_files: Vec<std::path::PathBuf>,
    authorization: Mutex<Option<String>>,
    /// False while probing for https: a failure there means "try plain HTTP", not "try again".
    retries: bool,
}

/// Whether an error is worth trying again.
fn transient(e: &ureq::Error) -> bool {
    use ureq::Error as E;
    match e {
        E::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
        ),
        E::Timeout(_) | E::ConnectionFailed | E::Protocol(_) => true,
        _ => false,
    }
}

/// How long the https probe of `--tls-verify=false` may take: a plain HTTP server may wait for
/// a request that a TLS handshake never completes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the registry was never reached (no connection), as opposed to a connection that broke.
fn connect_failure(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    use ureq::Error as E;
    match e {
        E::HostNotFound | E::ConnectionFailed | E::Tls(_) => true,
        E::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused | K::AddrNotAvailable | K::NetworkUnreachable | K::HostUnreachable
        ),
        E::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        _ => false,
    }
}

fn agent(tls_verify: bool, timeout: Option<Duration>) -> Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!tls_verify)
        .build();
    Agent::config_builder()
        .timeout_global(timeout)
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(600)))
        .user_agent(concat!(
            "dockertools-rs stream-layered/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .into()
}

/// The registry's error text: the `errors` of its JSON body, or the body itself.
pub fn error_text(resp: &mut Response<Body>) -> String {
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    let parsed: Option<Vec<String>> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("?");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    format!("{code}: {msg}")
                })
                .collect()
        });
    match parsed {
        Some(list) if !list.is_empty() => list.join("; "),
        _ => body.trim().chars().take(300).collect(),
    }
}

impl Client {
    /// Connects to `dest`'s registry: finds its scheme and authenticates as its `/v2/` asks.
    pub fn connect(
        dest: &Reference,
        tls_verify: bool,
        creds: Option<Credentials>,
        auth_files: Vec<std::path::PathBuf>,
    ) -> Result<Client, RegistryError> {
        let probe = (!tls_verify).then_some(PROBE_TIMEOUT);
        let mut client = Client {
            agent: agent(tls_verify, probe),
            base: format!("https://{}", dest.api_host),
            dest: dest.clone(),
            creds,
            auth_files,
            authorization: Mutex::new(None),
            retries: tls_verify,
        };
        let first = client.ping();
        client.agent = agent(tls_verify, None);
        client.retries = true;
        let plain_http = matches!(&first, Err(RegistryError::Unreachable { .. })) && !tls_verify;
        if !plain_http {
            return first.map(|()| client);
        }
        // Without verification, a registry that does not speak TLS is asked over plain HTTP,
        // as skopeo and podman do with --tls-verify=false.
        client.base = format!("http://{}", dest.api_host);
        client.ping().map(|()| client)
    }

    /// `GET /v2/`: the registry answers, and accepts our credentials.
    fn ping(&self) -> Result<(), RegistryError> {
        let mut resp = self.send(Request {
            method: "GET",
            url: "/v2/".into(),
            headers: Vec::new(),
            body: Payload::Empty,
        })?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s => Err(self.status_error("GET /v2/", s, &mut resp)),
        }
    }

    /// The URL of `path` on the registry (an absolute URL is kept).
    pub fn url(&self, path: &str) -> String {
        match path.starts_with("http://") || path.starts_with("https://") {
            true => path.to_string(),
            false => format!("{}{path}", self.base),
        }
    }

    /// `/v2/<repository>/<rest>`.
    pub fn repo_path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.dest.repository)
    }

    /// An error for an unexpected status.
    pub fn status_error(
        &self,
        what: &str,
        status: StatusCode,
        resp: &mut Response<Body>,
    ) -> RegistryError {
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return self.denied(status, error_text(resp));
        }
        RegistryError::Status {
            registry: self.dest.registry.clone(),
            what: what.to_string(),
            status: status.as_u16(),
            detail: error_text(resp),
        }
    }

    fn denied(&self, status: StatusCode, detail: String) -> RegistryError {
        let whose = match &self.creds {
            Some(c) => format!(
                "with the credentials of {:?} from {}",
                c.username,
                c.source.display()
            ),
            None => {
                let files: Vec<String> = self
                    .auth_files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                format!(
                    "anonymously (no credentials for {} in {})",
                    self.dest.registry,
                    files.join(", ")
                )
            }
        };
        RegistryError::Denied {
            registry: self.dest.registry.clone(),
            status: status.as_u16(),
            whose,
            detail,
        }
    }

    /// Sends `req` once, with the current authorization; a transport failure is `Unreachable`.
    fn send_once(&self, req: &mut Request<'_>) -> Result<Response<Body>, (RegistryError, bool)> {
        let url = self.url(&req.url);
        let auth = self
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut headers = req.headers.clone();
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let result = match (req.method, &mut req.body) {
            ("GET", _) => with_headers(self.agent.get(&url), &headers).call(),
            ("HEAD", _) => with_headers(self.agent.head(&url), &headers).call(),
            (m, body) => {
                let b = match m {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.put(&url),
                };
                let b = with_headers(b, &headers);
                match body {
                    Payload::Empty => b.send_empty(),
                    Payload::Bytes(bytes) => b.send(*bytes),
                    Payload::Stream(r) => b.send(SendBody::from_reader(*r)),
                }
            }
        };
        result.map_err(|e| {
            let again = transient(&e) && self.retries;
            // The upload URLs carry the registry's state in their query: not worth printing.
            let shown = url.split('?').next().unwrap_or(&url);
            let err = RegistryError::Unreachable {
                url: format!("{} {shown}", req.method),
                reached: !connect_failure(&e),
                detail: e.to_string(),
            };
            (err, again)
        })
    }

    /// Sends `req`, retrying transient failures and 5xx answers (a stream only once: its caller
    /// starts the whole upload over), and authenticating on a 401 that carries a challenge.
    pub fn send(&self, mut req: Request<'_>) -> Result<Response<Body>, RegistryError> {
        let replayable = !matches!(req.body, Payload::Stream(_));
        let mut pauses = RETRY_PAUSES.iter();
        let mut authenticated = false;
        loop {
            let failure = match self.send_once(&mut req) {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    let challenge = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .and_then(auth::parse_challenge);
                    match (challenge, replayable) {
                        (Some(c), true) => {
                            self.authenticate(&c)?;
                            authenticated = true;
                            continue;
                        }
                        _ => return Ok(resp),
                    }
                }
                Ok(resp) if resp.status().is_server_error() && replayable => Ok(resp),
                Ok(resp) => return Ok(resp),
                Err((e, true)) if replayable => Err(e),
                Err((e, _)) => return Err(e),
            };
            match pauses.next() {
                Some(p) => thread::sleep(*p),
                None => return failure,
            }
        }
    }

    /// Answers a challenge: basic credentials, or a token from the bearer realm.
    fn authenticate(&self, challenge: &Challenge) -> Result<(), RegistryError> {
        let header = match challenge {
            Challenge::Basic => match &self.creds {
                Some(c) => auth::basic_header(c),
                None => {
                    return Err(self.denied(
                        StatusCode::UNAUTHORIZED,
                        "basic authentication required".into(),
                    ))
                }
            },
            Challenge::Bearer { realm, service } => {
                format!("Bearer {}", self.token(realm, service.as_deref())?)
            }
        };
        *self
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(header);
        Ok(())
    }

    /// A bearer token for pulling and pushing the repository, from `realm`.
    fn token(&self, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        let scope = format!("repository:{}:pull,push", self.dest.repository);
        let request = || {
            let mut b = self.agent.get(realm).query("scope", &scope);
            if let Some(s) = service {
                b = b.query("service", s);
            }
            if let Some(c) = &self.creds {
                b = b.header("Authorization", auth::basic_header(c));
            }
            b.call()
        };
        let failed = |why: String| RegistryError::Token {
            realm: realm.into(),
            why,
        };
        let mut pauses = RETRY_PAUSES.iter();
        let mut resp = loop {
            let result = request();
            let retry = match &result {
                Ok(r) => r.status().is_server_error(),
                Err(e) => transient(e),
            };
            match (retry, pauses.next()) {
                (true, Some(p)) => thread::sleep(*p),
                _ => break result.map_err(|e| failed(e.to_string()))?,
            }
        };
        if resp.status().is_server_error() {
            return Err(failed(format!(
                "{}: {}",
                resp.status(),
                error_text(&mut resp)
            )));
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(self.denied(
                status,
                format!("token realm {realm}: {}", error_text(&mut resp)),
            ));
        }
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Token {
                realm: realm.into(),
                why: "the answer holds no \"token\"".into(),
            })
    }

    /// The destination.
    pub fn dest(&self) -> &Reference {
        &self.dest
    }
}

fn with_headers<B>(
    mut b: ureq::RequestBuilder<B>,
    headers: &[(&'static str, String)],
) -> ureq::RequestBuilder<B> {
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b
}
