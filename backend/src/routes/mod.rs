//! One router per resource: extract, call the service, answer. The routes
//! a telemetry sink serves (its own) come from the sink, not from here.

pub mod activities;
pub mod health;
pub mod messages;

use std::sync::Arc;

use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa_axum::router::OpenApiRouter;

use crate::domain::Handle;
use crate::openapi::fields;
use crate::services::cache::FeedCache;
use crate::store::Store;
use crate::telemetry::Health;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    cache: Arc<FeedCache>,
    /// The acting user until sign-in exists.
    pub user: Handle,
    pub health: Health,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, cache: FeedCache, user: Handle, health: Health) -> Self {
        AppState {
            store,
            cache: Arc::new(cache),
            user,
            health,
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn cache(&self) -> &FeedCache {
        &self.cache
    }
}

/// A user's handle in a path (`@{handle}`).
#[derive(Deserialize)]
struct HandlePath {
    handle: String,
}

impl IntoParams for HandlePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![fields::parameter(
            "handle",
            ParameterIn::Path,
            Required::True,
            fields::handle(),
        )]
    }
}

/// Every resource's routes, each with its entry in the OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(activities::router())
        .merge(messages::router())
        .merge(health::router())
}
