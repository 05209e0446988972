use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;

use super::AppState;
use crate::domain::{Activity, Reply};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::services::activities;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/activities/home", get(home))
        .route("/api/activities/notifications", get(notifications))
        .route("/api/activities/search", get(search))
        .route("/api/activities/@{handle}", get(user_feed))
        .route("/api/activities", post(create))
        .route("/api/activities/{uuid}", get(show))
        .route("/api/activities/{uuid}/reply", post(reply))
}

type Answer<T> = Result<Json<T>, ApiError>;

async fn home(State(state): State<AppState>) -> Answer<Vec<Activity>> {
    Ok(Json(activities::home(state.store(), Utc::now()).await?))
}

async fn notifications(State(state): State<AppState>) -> Answer<Vec<Activity>> {
    Ok(Json(
        activities::notifications(state.store(), &state.user, Utc::now()).await?,
    ))
}

async fn user_feed(
    State(state): State<AppState>,
    ApiPath(handle): ApiPath<String>,
) -> Answer<Vec<Activity>> {
    Ok(Json(
        activities::user_feed(state.store(), &handle, Utc::now()).await?,
    ))
}

#[derive(Deserialize)]
struct SearchQuery {
    term: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer<Vec<Activity>> {
    let Query(query) = query?;
    Ok(Json(
        activities::search(state.store(), query.term.as_deref(), Utc::now()).await?,
    ))
}

async fn show(State(state): State<AppState>, ApiPath(uuid): ApiPath<String>) -> Answer<Activity> {
    Ok(Json(
        activities::show(state.store(), &uuid, Utc::now()).await?,
    ))
}

#[derive(Deserialize)]
struct CreateActivity {
    message: Option<String>,
    ttl: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateActivity>,
) -> Answer<Activity> {
    Ok(Json(
        activities::create(
            state.store(),
            &state.user,
            body.message.as_deref(),
            body.ttl.as_deref(),
            Utc::now(),
        )
        .await?,
    ))
}

#[derive(Deserialize)]
struct CreateReply {
    message: Option<String>,
}

async fn reply(
    State(state): State<AppState>,
    ApiPath(uuid): ApiPath<String>,
    ApiJson(body): ApiJson<CreateReply>,
) -> Answer<Reply> {
    Ok(Json(
        activities::reply(
            state.store(),
            &state.user,
            &uuid,
            body.message.as_deref(),
            Utc::now(),
        )
        .await?,
    ))
}
