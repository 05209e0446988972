use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;

use super::AppState;
use crate::domain::{Message, MessageGroup};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::services::messages;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/message_groups", get(groups))
        .route("/api/messages/@{handle}", get(conversation))
        .route("/api/messages", post(send))
}

async fn groups(State(state): State<AppState>) -> Result<Json<Vec<MessageGroup>>, ApiError> {
    Ok(Json(messages::groups(state.store(), &state.user).await?))
}

async fn conversation(
    State(state): State<AppState>,
    ApiPath(handle): ApiPath<String>,
) -> Result<Json<Vec<Message>>, ApiError> {
    Ok(Json(
        messages::conversation(state.store(), &state.user, &handle).await?,
    ))
}

#[derive(Deserialize)]
struct SendMessage {
    user_receiver_handle: Option<String>,
    message: Option<String>,
}

async fn send(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(
        messages::send(
            state.store(),
            &state.user,
            body.user_receiver_handle.as_deref(),
            body.message.as_deref(),
            Utc::now(),
        )
        .await?,
    ))
}
