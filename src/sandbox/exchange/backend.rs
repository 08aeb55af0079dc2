//! What serves the requests that pass the front end: an [`RpsService`] for `/PowerShell-LiveID`
//! and an [`AdminApi`] handler for REST InvokeCommand.
//!
//! Separate because the simulator only checks tokens and routes; the sandbox plugs in the
//! project's remoting endpoint and tests plug in recorders here.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};

use crate::remoting::{Endpoint, Executor};
use crate::sandbox::AppIdentity;

/// The RPS endpoint behind `/PowerShell-LiveID`, without its executor type.
pub trait RpsService: Send + Sync + 'static {
    /// Handles one WS-Man request for an authorized app.
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        app: AppIdentity,
        request: Request<Bytes>,
    ) -> BoxFuture<'a, Response<Bytes>>;
}

impl<E: Executor<Caller = AppIdentity>> RpsService for Endpoint<E> {
    fn handle<'a>(
        &'a self,
        owner: &'a str,
        app: AppIdentity,
        request: Request<Bytes>,
    ) -> BoxFuture<'a, Response<Bytes>> {
        Box::pin(Endpoint::handle(self, owner, app, request))
    }
}

/// The REST InvokeCommand handler: `(app, tenant in the path, request) -> response`.
pub type AdminApi = Arc<
    dyn Fn(AppIdentity, String, Request<Bytes>) -> BoxFuture<'static, Response<Bytes>>
        + Send
        + Sync,
>;
