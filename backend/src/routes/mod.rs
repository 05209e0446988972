//! One router per resource: extract, call the service, answer. The routes
//! a telemetry sink serves (its own) come from the sink, not from here.

pub mod activities;
pub mod health;
pub mod messages;

use std::sync::Arc;

use axum::Router;

use crate::domain::Handle;
use crate::store::Store;
use crate::telemetry::Health;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    /// The acting user until sign-in exists.
    pub user: Handle,
    pub health: Health,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, user: Handle, health: Health) -> Self {
        AppState {
            store,
            user,
            health,
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// Every resource's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(activities::router())
        .merge(messages::router())
        .merge(health::router())
}
