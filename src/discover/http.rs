//! The one HTTP session with a metadata service, shared by every provider: connect and read
//! timeouts, bounded retries with exponential backoff (transport errors, timeouts, 5xx; 429 and
//! 503 wait what Retry-After says, up to a cap, then give up as `Throttled`), a request budget,
//! a size cap on every answer, no proxy, no redirects, and session tokens renewed once on a 401.
//! May import the discover module's error and option types and its parse helpers.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::parse::invalid;
use super::{DiscoverError, DiscoverOptions};

/// Responses larger than this are an error.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// First backoff pause between tries; doubled after every failed try, capped at `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// The longest Retry-After waited out inside one request; a longer one ends the request as
/// `Throttled` (the refresher then waits it out between refreshes).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Longest token accepted from the metadata service.
const MAX_TOKEN_LEN: usize = 4096;

/// How a provider's service issues session tokens (security-hardening mode).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenScheme {
    /// `PUT` here for a token; a 404 means the service has no tokens (plain reads).
    pub(crate) path: &'static str,
    /// The request header carrying the requested lifetime, in seconds.
    pub(crate) ttl_header: &'static str,
    /// The header carrying the token on every read.
    pub(crate) header: &'static str,
    /// The longest lifetime the service accepts, in seconds.
    pub(crate) max_ttl: u32,
}

/// A session with a metadata service: plain reads, or reads with a session token.
pub(crate) struct Session {
    agent: ureq::Agent,
    base: String,
    ttl: u32,
    tries: u32,
    scheme: TokenScheme,
    /// `None` = plain mode (the token endpoint does not exist).
    token: Option<String>,
    /// Requests sent so far, and the most allowed.
    sent: Cell<u32>,
    budget: u32,
    /// When the last request was sent, and the least gap before the next.
    last_sent: Cell<Option<Instant>>,
    gap: Duration,
}

/// One ENI's directory of metadata keys (`.../macs/<mac>/`), each read with its path.
pub(crate) struct Dir<'a> {
    session: &'a mut Session,
    dir: String,
}

impl<'a> Dir<'a> {
    pub(crate) fn new(session: &'a mut Session, dir: String) -> Self {
        Dir { session, dir }
    }

    /// A key that must exist: (body, path).
    pub(crate) fn required(&mut self, key: &str) -> Result<(String, String), DiscoverError> {
        let path = format!("{}{key}", self.dir);
        let text = self.session.get_required(&path)?;
        Ok((text, path))
    }

    /// A key that may be absent: a 404 reads as an empty body. (body, path).
    pub(crate) fn optional(&mut self, key: &str) -> Result<(String, String), DiscoverError> {
        let path = format!("{}{key}", self.dir);
        let text = self.session.get(&path)?.unwrap_or_default();
        Ok((text, path))
    }
}

/// The outcome of one request after retries: a status, and the body when the status is 200.
struct Reply {
    status: u16,
    body: String,
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Put,
}

impl Session {
    /// Check the options, then start the session: a token first, plain reads on a 404.
    pub(crate) fn open(
        opts: &DiscoverOptions,
        endpoint: &str,
        scheme: TokenScheme,
    ) -> Result<Self, DiscoverError> {
        let base = normalize_endpoint(endpoint)?;
        if opts.token_ttl == 0 || opts.token_ttl > scheme.max_ttl {
            return Err(DiscoverError::Option(format!(
                "token TTL {} is out of range 1..={} seconds",
                opts.token_ttl, scheme.max_ttl
            )));
        }
        if opts.connect_timeout.is_zero() || opts.read_timeout.is_zero() {
            return Err(DiscoverError::Option(
                "timeouts must be greater than zero".to_string(),
            ));
        }
        let read = Some(opts.read_timeout);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("eniroute/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_send_request(read)
            .timeout_send_body(read)
            .timeout_recv_response(read)
            .timeout_recv_body(read)
            .build();
        let mut session = Session {
            agent: config.into(),
            base,
            ttl: opts.token_ttl,
            tries: opts.retries.saturating_add(1),
            scheme,
            token: None,
            sent: Cell::new(0),
            budget: opts.max_requests,
            last_sent: Cell::new(None),
            gap: opts.request_gap,
        };
        session.token = session.fetch_token()?;
        Ok(session)
    }

    /// Whether the session-token (security-hardening) mode is used.
    pub(crate) fn hardened(&self) -> bool {
        self.token.is_some()
    }

    /// `Some(token)`, or `None` when the token endpoint does not exist.
    fn fetch_token(&self) -> Result<Option<String>, DiscoverError> {
        let path = self.scheme.path;
        let ttl = self.ttl.to_string();
        let reply = self.exchange(Method::Put, path, Some((self.scheme.ttl_header, &ttl)))?;
        match reply.status {
            200 => {
                let token = reply.body.trim();
                if token.is_empty()
                    || token.len() > MAX_TOKEN_LEN
                    || !token.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(invalid(path, "malformed session token", token));
                }
                Ok(Some(token.to_string()))
            }
            404 => Ok(None),
            status => Err(status_error(path, status)),
        }
    }

    /// GET a metadata path: `Some(body)` on 200, `None` on 404, an error otherwise.
    pub(crate) fn get(&mut self, path: &str) -> Result<Option<String>, DiscoverError> {
        let mut renewed = false;
        loop {
            let reply = match &self.token {
                Some(t) => self.exchange(Method::Get, path, Some((self.scheme.header, t)))?,
                None => self.exchange(Method::Get, path, None)?,
            };
            match reply.status {
                200 => return Ok(Some(reply.body)),
                404 => return Ok(None),
                401 if self.token.is_some() && !renewed => {
                    // The token expired or was revoked: renew it once and retry this read.
                    renewed = true;
                    match self.fetch_token()? {
                        Some(t) => self.token = Some(t),
                        None => {
                            return Err(DiscoverError::Unauthorized {
                                path: path.to_string(),
                                detail: format!(
                                    "HTTP 401 and the token endpoint {} disappeared",
                                    self.scheme.path
                                ),
                            })
                        }
                    }
                }
                401 => {
                    let detail = if self.token.is_some() {
                        "HTTP 401: the metadata service rejected a freshly renewed token"
                    } else {
                        "HTTP 401: the metadata service wants a token, but it has no token endpoint"
                    };
                    return Err(DiscoverError::Unauthorized {
                        path: path.to_string(),
                        detail: detail.to_string(),
                    });
                }
                status => return Err(status_error(path, status)),
            }
        }
    }

    /// GET a metadata path that must exist.
    pub(crate) fn get_required(&mut self, path: &str) -> Result<String, DiscoverError> {
        self.get(path)?.ok_or_else(|| DiscoverError::NotFound {
            path: path.to_string(),
        })
    }

    /// One request with bounded retries and backoff for transport errors and 5xx answers.
    fn exchange(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, &str)>,
    ) -> Result<Reply, DiscoverError> {
        let url = format!("{}{}", self.base, path);
        let mut last: Option<DiscoverError> = None;
        let mut pause = Duration::ZERO;
        for attempt in 0..self.tries {
            if attempt > 0 {
                std::thread::sleep(pause.max(backoff(attempt)));
            }
            if self.sent.get() >= self.budget {
                return Err(DiscoverError::Budget {
                    path: path.to_string(),
                    budget: self.budget,
                });
            }
            self.sent.set(self.sent.get().saturating_add(1));
            self.pace();
            let response = match self.send(method, &url, header) {
                Ok(r) => r,
                Err(e) => {
                    last = Some(self.transport_error(path, &url, e)?);
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status == 429 || status == 503 {
                let wait = retry_after(&response);
                if wait.is_some_and(|w| w > MAX_RETRY_AFTER) || attempt + 1 == self.tries {
                    return Err(DiscoverError::Throttled {
                        path: path.to_string(),
                        status,
                        retry_after: wait.unwrap_or(MAX_BACKOFF),
                    });
                }
                pause = wait.unwrap_or(Duration::ZERO);
                continue;
            }
            if status >= 500 {
                last = Some(status_error(path, status));
                continue;
            }
            if status != 200 {
                return Ok(Reply {
                    status,
                    body: String::new(),
                });
            }
            match self.read_body(response, path, &url)? {
                Ok(body) => return Ok(Reply { status, body }),
                Err(retryable) => last = Some(retryable),
            }
        }
        Err(last.unwrap_or_else(|| DiscoverError::Unreachable {
            path: path.to_string(),
            url,
            tries: self.tries,
            detail: "no try was made".to_string(),
        }))
    }

    /// Wait until `gap` has passed since the last request.
    fn pace(&self) {
        if let Some(last) = self.last_sent.get() {
            let since = last.elapsed();
            if since < self.gap {
                std::thread::sleep(self.gap - since);
            }
        }
        self.last_sent.set(Some(Instant::now()));
    }

    /// Send one request (no retry).
    fn send(
        &self,
        method: Method,
        url: &str,
        header: Option<(&str, &str)>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        match method {
            Method::Get => {
                let mut req = self.agent.get(url);
                if let Some((name, value)) = header {
                    req = req.header(name, value);
                }
                req.call()
            }
            Method::Put => {
                let mut req = self.agent.put(url);
                if let Some((name, value)) = header {
                    req = req.header(name, value);
                }
                req.send_empty()
            }
        }
    }

    /// The body of a 200, capped and UTF-8: `Ok(Ok(body))`, `Ok(Err(error to retry))`, or a
    /// permanent `Err`.
    fn read_body(
        &self,
        response: ureq::http::Response<ureq::Body>,
        path: &str,
        url: &str,
    ) -> Result<Result<String, DiscoverError>, DiscoverError> {
        let bytes = match response
            .into_body()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
        {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(limit)) => {
                return Err(DiscoverError::TooLarge {
                    path: path.to_string(),
                    limit,
                })
            }
            Err(e) => return Ok(Err(self.transport_error(path, url, e)?)),
        };
        let body = String::from_utf8(bytes).map_err(|e| {
            invalid(
                path,
                "response is not UTF-8",
                &String::from_utf8_lossy(e.as_bytes()),
            )
        })?;
        Ok(Ok(body))
    }

    /// Retryable transport errors become `Ok(error to remember)`; permanent ones `Err`.
    fn transport_error(
        &self,
        path: &str,
        url: &str,
        e: ureq::Error,
    ) -> Result<DiscoverError, DiscoverError> {
        match e {
            ureq::Error::Timeout(_) => Ok(DiscoverError::Timeout {
                path: path.to_string(),
                url: url.to_string(),
                tries: self.tries,
            }),
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled => Ok(DiscoverError::Unreachable {
                path: path.to_string(),
                url: url.to_string(),
                tries: self.tries,
                detail: e.to_string(),
            }),
            ureq::Error::BodyExceedsLimit(limit) => Err(DiscoverError::TooLarge {
                path: path.to_string(),
                limit,
            }),
            ureq::Error::LargeResponseHeader(..) => Err(DiscoverError::TooLarge {
                path: path.to_string(),
                limit: MAX_RESPONSE_BYTES,
            }),
            other => Err(DiscoverError::Unreachable {
                path: path.to_string(),
                url: url.to_string(),
                tries: 1,
                detail: other.to_string(),
            }),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by metadata services: ignored).
fn retry_after(response: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?.trim();
    if value.is_empty() || value.len() > 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().map(Duration::from_secs)
}

fn backoff(attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

fn status_error(path: &str, status: u16) -> DiscoverError {
    let hint = match status {
        403 => " (forbidden: is a token required, or is access to the metadata service blocked?)",
        _ => "",
    };
    DiscoverError::Status {
        path: path.to_string(),
        status,
        hint: hint.to_string(),
    }
}

/// The endpoint as a base URL (`http://host[:port][/path]`, no trailing `/`), or why not.
pub(crate) fn normalize_endpoint(endpoint: &str) -> Result<String, DiscoverError> {
    let err = |reason: &str| DiscoverError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let e = endpoint.trim();
    if e.is_empty() {
        return Err(err("empty"));
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("contains whitespace or control characters"));
    }
    if e.contains('?') || e.contains('#') {
        return Err(err("must not contain a query or fragment"));
    }
    let with_scheme = match e.split_once("://") {
        None => format!("http://{e}"),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => e.to_string(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(err(
                "https is not supported: the metadata service speaks plain HTTP",
            ))
        }
        Some(_) => return Err(err("the scheme must be http://")),
    };
    let rest = with_scheme.get("http://".len()..).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(err("no host"));
    }
    // No name resolution: the packaged binary is static (getaddrinfo would need the host's
    // NSS modules), and every metadata service has a fixed link-local or reserved address.
    let ip_literal = host.parse::<std::net::SocketAddr>().is_ok()
        || host.parse::<std::net::IpAddr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    if !ip_literal {
        return Err(err(
            "the host must be an IP address (eniroute does no name resolution), e.g. http://100.100.100.200",
        ));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            normalize_endpoint("http://100.100.100.200/")
                .ok()
                .as_deref(),
            Some("http://100.100.100.200")
        );
        assert!(normalize_endpoint("http://metadata.internal/").is_err());
        assert!(normalize_endpoint("http://localhost:8080").is_err());
        assert_eq!(
            normalize_endpoint("http://[fd00:ec2::254]/")
                .ok()
                .as_deref(),
            Some("http://[fd00:ec2::254]")
        );
        assert_eq!(
            normalize_endpoint("127.0.0.1:8080").ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(normalize_endpoint("https://x").is_err());
        assert!(normalize_endpoint("ftp://x").is_err());
        assert!(normalize_endpoint("http://").is_err());
        assert!(normalize_endpoint("http://a b").is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(1), BASE_BACKOFF);
        assert_eq!(backoff(2), BASE_BACKOFF * 2);
        assert_eq!(backoff(100), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
