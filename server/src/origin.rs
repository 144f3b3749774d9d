//! The HTTP origin loader of a meshcached group: a miss on the key's owner becomes one
//! `GET` of the group's URL template with the key percent-encoded in place of `{key}`.
//!
//! - 200: the body is the value (at most the group's `max_value_len`; a larger body is a
//!   Load error), cached for the origin's `Cache-Control` max-age when `cache_control` is
//!   on (`s-maxage` first; `no-store`, `no-cache` and `private` make it 0), else for the
//!   group's TTL.
//! - 404: NotFound, remembered for the group's negative TTL (by core's negative caching).
//! - any other status, a connection error or the timeout: a Load error (502 at the REST
//!   API), not cached: the next get asks again.
//!
//! The client is hyper-util's pooled HTTP/1.1 client (plain `http://`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshcache::{Error, LoadFuture, Loaded, Loader};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::config;

/// Everything but RFC 3986's unreserved characters is encoded (`/` too: a key is one
/// path segment or query value).
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The loader of one group.
#[derive(Clone)]
pub struct OriginLoader {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, Empty<Bytes>>,
    url: String,
    timeout: Duration,
    headers: HeaderMap,
    cache_control: bool,
    max_value_len: usize,
}

impl std::fmt::Debug for OriginLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginLoader")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// The URL of `key`: the template with `{key}` replaced by the key percent-encoded.
pub fn url_for(template: &str, key: &[u8]) -> String {
    let encoded: String = percent_encoding::percent_encode(key, KEY).collect();
    template.replace("{key}", &encoded)
}

/// The TTL a `Cache-Control` header asks of a shared cache: `s-maxage`, else `max-age`;
/// zero for `no-store`, `no-cache` or `private`; `None` if it says nothing about it.
pub fn cache_ttl(value: &str) -> Option<Duration> {
    let mut max_age = None;
    let mut s_maxage = None;
    for d in value.split(',') {
        let d = d.trim();
        let (name, arg) = match d.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (d, None),
        };
        let secs = || arg.and_then(|a| a.parse::<u64>().ok()).map(Duration::from_secs);
        match name.to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" | "private" => return Some(Duration::ZERO),
            "max-age" => max_age = secs(),
            "s-maxage" => s_maxage = secs(),
            _ => {}
        }
    }
    s_maxage.or(max_age)
}

impl OriginLoader {
    /// The loader of a group with this origin and value limit.
    pub fn new(origin: &config::Origin, max_value_len: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(origin.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let mut headers = origin.headers.clone();
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(
                header::USER_AGENT,
                header::HeaderValue::from_static(concat!("meshcached/", env!("CARGO_PKG_VERSION"))),
            );
        }
        OriginLoader {
            inner: Arc::new(Inner {
                client,
                url: origin.url.clone(),
                timeout: origin.timeout,
                headers,
                cache_control: origin.cache_control,
                max_value_len,
            }),
        }
    }

    /// Asks the origin for `key`.
    ///
    /// # Errors
    ///
    /// A Load error for anything but a 200 or a 404 in time.
    pub async fn fetch(&self, key: &[u8]) -> meshcache::Result<Loaded> {
        let url = url_for(&self.inner.url, key);
        let t = self.inner.timeout;
        match tokio::time::timeout(t, self.fetch_url(&url)).await {
            Ok(r) => r,
            Err(_) => Err(Error::load(format!("the origin did not answer within {t:?}"))),
        }
    }

    async fn fetch_url(&self, url: &str) -> meshcache::Result<Loaded> {
        let i = &self.inner;
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::load(format!("origin URL {url:?}: {e}")))?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Empty::<Bytes>::new())
            .map_err(|e| Error::load(format!("origin request: {e}")))?;
        req.headers_mut().extend(i.headers.clone());
        let resp = (i.client.request(req).await)
            .map_err(|e| Error::load(format!("origin request failed: {}", chain(&e))))?;
        let status = resp.status();
        let ttl = match i.cache_control {
            true => (resp.headers().get_all(header::CACHE_CONTROL).iter())
                .filter_map(|v| v.to_str().ok().and_then(cache_ttl))
                .min(),
            false => None,
        };
        let with_ttl = |l: Loaded| match ttl {
            Some(t) => l.with_ttl(t),
            None => l,
        };
        match status {
            StatusCode::OK => {
                let limit = i.max_value_len;
                let declared = (resp.headers().get(header::CONTENT_LENGTH))
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                if declared.is_some_and(|n| n > limit as u64) {
                    return Err(too_large(limit));
                }
                let body = match Limited::new(resp.into_body(), limit).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(limit)),
                    Err(e) => return Err(Error::load(format!("reading the origin's body: {e}"))),
                };
                Ok(with_ttl(Loaded::value(body)))
            }
            StatusCode::NOT_FOUND => Ok(with_ttl(Loaded::not_found())),
            s => Err(Error::load(format!("the origin answered {s}"))),
        }
    }
}

fn too_large(limit: usize) -> Error {
    Error::load(format!(
        "the origin's body is larger than the group's max_value_len ({limit} bytes)"
    ))
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl Loader for OriginLoader {
    fn load(&self, key: Bytes) -> LoadFuture {
        let me = self.clone();
        Box::pin(async move { me.fetch(&key).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded_in_the_template() {
        assert_eq!(url_for("http://h/o/{key}", b"a b/c"), "http://h/o/a%20b%2Fc");
        assert_eq!(
            url_for("http://h/?id={key}&k={key}", b"x~y"),
            "http://h/?id=x~y&k=x~y"
        );
        assert_eq!(url_for("http://h/{key}", &[0xff, b'-']), "http://h/%FF-");
        assert_eq!(url_for("http://h/{key}", "é".as_bytes()), "http://h/%C3%A9");
    }

    #[test]
    fn cache_control_gives_the_ttl_of_a_shared_cache() {
        assert_eq!(cache_ttl("max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(
            cache_ttl("public, max-age=60, s-maxage=10"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(cache_ttl("Max-Age=\"7\""), Some(Duration::from_secs(7)));
        assert_eq!(cache_ttl("no-store"), Some(Duration::ZERO));
        assert_eq!(cache_ttl("private, max-age=60"), Some(Duration::ZERO));
        assert_eq!(cache_ttl("public"), None);
        assert_eq!(cache_ttl("max-age=soon"), None);
    }
}
