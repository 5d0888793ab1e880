//! A small HTTP/1.1 client over hyper-util: init containers wait on
//! `/readyz` with it, and tests talk to the services through it.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
/// A request body that clones without copying (a load generator sends one
/// body many times).
pub use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A response: status and body as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

/// One request with a JSON body (empty for none).
pub async fn request(method: &str, url: &str, body: Vec<u8>, timeout: Duration) -> Result<Response, ClientError> {
    request_with_headers(method, url, &[], body, timeout).await
}

/// One request with a JSON body and extra headers (`authorization`, …).
pub async fn request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    HttpClient::default().send(method, url, headers, body, timeout).await
}

/// A client that keeps its connections open between requests (a load
/// generator's); clones share the pool.
#[derive(Clone)]
pub struct HttpClient {
    pool: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self { pool: Client::builder(TokioExecutor::new()).build_http() }
    }
}

impl HttpClient {
    /// One request with a JSON body and extra headers.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| ClientError(e.to_string()))?;
        let mut builder = hyper::Request::builder().method(method).uri(url).header("content-type", "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).map_err(|e| ClientError(format!("{url}: {e}")))?;
        let exchange = async {
            let response = self.pool.request(request).await.map_err(|e| ClientError(format!("{url}: {e}")))?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map_err(|e| ClientError(format!("{url}: {e}")))?;
            Ok(Response { status, body: String::from_utf8_lossy(&body.to_bytes()).into_owned() })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError(format!("{url}: timed out after {timeout:?}")))?
    }
}

/// A GET.
pub async fn get(url: &str, timeout: Duration) -> Result<Response, ClientError> {
    request("GET", url, Vec::new(), timeout).await
}
