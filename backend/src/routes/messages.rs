use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, HandlePath};
use crate::domain::{Message, MessageGroup};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::openapi::answers::{BodyErrors, StoreErrors, UnknownUser, WriteErrors};
use crate::openapi::{MESSAGES, fields};
use crate::services::PathHandleInvalid;
use crate::services::messages::{self, SendInvalid};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(groups))
        .routes(routes!(conversation))
        .routes(routes!(send))
}

/// The acting user's conversations, newest first.
#[utoipa::path(
    get,
    path = "/api/message_groups",
    tag = MESSAGES,
    operation_id = "message_groups",
    responses((status = 200, description = "one entry per conversation: the other person and the last message", body = Vec<MessageGroup>), StoreErrors),
)]
async fn groups(State(state): State<AppState>) -> Result<Json<Vec<MessageGroup>>, ApiError> {
    Ok(Json(messages::groups(state.store(), &state.user).await?))
}

/// The acting user's conversation with one user, oldest first.
#[utoipa::path(
    get,
    path = "/api/messages/@{handle}",
    tag = MESSAGES,
    operation_id = "messages",
    params(HandlePath),
    responses(
        (status = 200, description = "the messages both ways, oldest first", body = Vec<Message>),
        (status = 422, description = "a blank handle", body = Vec<PathHandleInvalid>),
        UnknownUser,
        StoreErrors,
    ),
)]
async fn conversation(
    State(state): State<AppState>,
    ApiPath(HandlePath { handle }): ApiPath<HandlePath>,
) -> Result<Json<Vec<Message>>, ApiError> {
    Ok(Json(
        messages::conversation(state.store(), &state.user, &handle).await?,
    ))
}

/// A direct message from the acting user.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"user_receiver_handle": "bayko", "message": "Are you coming to the meetup?"}))]
struct SendMessage {
    #[schema(schema_with = fields::handle, required = true)]
    user_receiver_handle: Option<String>,
    #[schema(schema_with = fields::message, required = true)]
    message: Option<String>,
}

/// Sends a direct message.
#[utoipa::path(
    post,
    path = "/api/messages",
    tag = MESSAGES,
    operation_id = "create_message",
    request_body = SendMessage,
    responses(
        (status = 200, description = "the new message", body = Message,
            links(
                ("Conversation" = (operation_id = "messages", parameters(("handle" = "$request.body#/user_receiver_handle")))),
            )),
        (status = 422, description = "the codes of everything wrong with the message", body = Vec<SendInvalid>),
        UnknownUser,
        BodyErrors,
        WriteErrors,
        StoreErrors,
    ),
)]
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
