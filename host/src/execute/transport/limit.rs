//! A per-host cap on open connections, enforced where connections are made.
//!
//! The connector takes a semaphore permit per host before it dials and the permit lives inside the
//! connection: a closed connection frees its slot. hyper-util's pool reuses idle connections first, so
//! requests beyond the cap wait for a free connection instead of opening another.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a connector so that at most `per_host` connections to one host are open at once.
#[derive(Clone)]
pub(crate) struct LimitedConnector<C> {
    inner: C,
    per_host: usize,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl<C> LimitedConnector<C> {
    /// `per_host` = 0 means no cap.
    pub(crate) fn new(inner: C, per_host: usize) -> Self {
        LimitedConnector {
            inner,
            per_host,
            hosts: Default::default(),
        }
    }

    fn slots_for(&self, uri: &Uri) -> Option<Arc<Semaphore>> {
        if self.per_host == 0 {
            return None;
        }
        let key = format!(
            "{}://{}:{}",
            uri.scheme_str().unwrap_or("http"),
            uri.host().unwrap_or(""),
            uri.port_u16().unwrap_or(0)
        );
        let mut hosts = self.hosts.lock().expect("host map lock");
        Some(
            hosts
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone(),
        )
    }
}

impl<C> Service<Uri> for LimitedConnector<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Response: Send,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = Limited<C::Response>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let slots = self.slots_for(&uri);
        // The clone is ready: connectors here (HTTP, TLS) are always ready.
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let permit = match slots {
                Some(s) => Some(s.acquire_owned().await?),
                None => None,
            };
            let io = inner.call(uri).await.map_err(Into::into)?;
            Ok(Limited {
                io,
                _permit: permit,
            })
        })
    }
}

/// A connection holding its host slot until it is dropped.
pub(crate) struct Limited<T> {
    io: T,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<T: Connection> Connection for Limited<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Unpin> Read for Limited<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Limited<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
