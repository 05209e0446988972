//! cruddur-backend: the Cruddur micro-blogging API, observable from its
//! first request.

pub mod app;
pub mod config;
pub mod domain;
pub mod error;
pub mod healthcheck;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod services;
pub mod store;
pub mod telemetry;
