//! The Kubernetes client with a deadline on every request.
//!
//! kube's default client has no read timeout, so one hung request (an overloaded API server,
//! a broken proxy) stalls whoever awaits it forever. [`ApiTimeoutLayer`] bounds every request:
//! the response headers must arrive within the timeout, and for everything but watches the
//! whole body too. Watches are long-lived by design (kube asks the server to end them after
//! `timeoutSeconds=290`); their body gets [`WATCH_LIMIT`] plus the timeout, so a server that
//! keeps a watch open and silent forever costs at most that, then the watcher re-lists.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Default deadline of one API request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a watch response may last (kube's watcher asks for 290 s).
pub const WATCH_LIMIT: Duration = Duration::from_secs(300);

/// A request to the API server did not complete in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("Kubernetes API request timed out after {}", humantime::format_duration(*.0))]
pub struct TimedOut(pub Duration);

/// Whether `err` (or anything in its source chain) is a [`TimedOut`].
pub fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<TimedOut>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Whether a kube error is a request timeout.
pub fn is_kube_timeout(err: &kube::Error) -> bool {
    match err {
        kube::Error::Service(e) => is_timeout(e.as_ref()),
        other => is_timeout(other),
    }
}

/// Adds a deadline to every request of the wrapped service.
#[derive(Debug, Clone, Copy)]
pub struct ApiTimeoutLayer {
    timeout: Duration,
}

impl ApiTimeoutLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for ApiTimeoutLayer {
    type Service = ApiTimeout<S>;
    fn layer(&self, inner: S) -> ApiTimeout<S> {
        ApiTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// See [`ApiTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct ApiTimeout<S> {
    inner: S,
    timeout: Duration,
}

fn is_watch(uri: &http::Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

impl<S, B, RB> Service<Request<B>> for ApiTimeout<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<TimedBody<RB>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let timeout = self.timeout;
        let watch = is_watch(req.uri());
        let deadline = Instant::now() + timeout;
        let fut = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, fut).await {
                Err(_) => Err(Box::new(TimedOut(timeout)) as BoxError),
                Ok(Err(e)) => Err(e.into()),
                Ok(Ok(resp)) => {
                    let body_deadline = if watch {
                        deadline + WATCH_LIMIT
                    } else {
                        deadline
                    };
                    Ok(resp.map(|body| TimedBody {
                        inner: Box::pin(body),
                        deadline: Box::pin(tokio::time::sleep_until(body_deadline)),
                        timeout,
                    }))
                }
            }
        })
    }
}

/// A response body that fails with [`TimedOut`] when its deadline passes.
pub struct TimedBody<B> {
    inner: Pin<Box<B>>,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let timeout = self.timeout;
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(TimedOut(timeout)))));
        }
        self.inner
            .as_mut()
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client for `config` whose every request has `timeout`.
pub fn client(config: kube::Config, timeout: Duration) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&ApiTimeoutLayer::new(timeout))
        .build())
}

/// The same for any service (tests: the in-memory API server).
pub fn client_over<S, B>(service: S, namespace: &str, timeout: Duration) -> kube::Client
where
    S: Service<Request<kube::client::Body>, Response = Response<B>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    kube::Client::new(ApiTimeoutLayer::new(timeout).layer(service), namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use origin_test_support::FakeApiServer;

    #[tokio::test]
    async fn hung_request_times_out_others_answer() {
        let fake = FakeApiServer::new();
        let (svc, mut handle) = tower_test::mock::pair::<
            Request<kube::client::Body>,
            Response<http_body_util::Full<Bytes>>,
        >();
        // Accept every request and never answer.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(r) = handle.next_request().await {
                held.push(r);
            }
        });
        let client = client_over(svc, "default", Duration::from_millis(200));
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        let t0 = std::time::Instant::now();
        let err = api.get("x").await.expect_err("hung");
        let took = t0.elapsed();
        assert!(is_kube_timeout(&err), "{err:?}");
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(err.to_string().contains("timed out") || format!("{err:?}").contains("TimedOut"));
        holder.abort();

        // Through the fake: only the hung path times out.
        let (client, _t) =
            fake.client_with(|svc| client_over(svc, "default", Duration::from_millis(200)));
        fake.hang("GET", "/configmaps/slow");
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        assert!(is_kube_timeout(&api.get("slow").await.expect_err("hung")));
        let nf = api.get_opt("fast").await.expect("answered");
        assert!(nf.is_none());
        fake.unhang();
        assert!(
            api.get_opt("slow")
                .await
                .expect("answered after unhang")
                .is_none()
        );
    }
}
