use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, HandlePath};
use crate::domain::{Activity, Reply};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::openapi::answers::{
    BodyErrors, QueryErrors, StoreErrors, UnknownCrud, UnknownUser, WriteErrors,
};
use crate::openapi::{CRUDS, fields};
use crate::services::PathHandleInvalid;
use crate::services::activities::{self, CreateInvalid, ReplyInvalid, SearchInvalid};
use crate::services::cache::Feed;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(home))
        .routes(routes!(notifications))
        .routes(routes!(search))
        .routes(routes!(user_feed))
        .routes(routes!(create))
        .routes(routes!(show))
        .routes(routes!(reply))
}

type Answer<T> = Result<Json<T>, ApiError>;

/// A feed, as the service made it or kept it: JSON, ready to send.
type FeedAnswer = Result<Feed, ApiError>;

impl IntoResponse for Feed {
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, APPLICATION_JSON)], self.0).into_response()
    }
}

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Live cruds, newest first, each with its replies.
#[utoipa::path(
    get,
    path = "/api/activities/home",
    tag = CRUDS,
    operation_id = "home_activities",
    responses((status = 200, description = "live cruds, newest first", body = Vec<Activity>), StoreErrors),
)]
async fn home(State(state): State<AppState>) -> FeedAnswer {
    Ok(activities::home(state.store(), state.cache(), Utc::now()).await?)
}

/// Cruds that mention the acting user, and the acting user's cruds that got replies.
#[utoipa::path(
    get,
    path = "/api/activities/notifications",
    tag = CRUDS,
    operation_id = "notifications_activities",
    responses((status = 200, description = "the acting user's notifications, newest first", body = Vec<Activity>), StoreErrors),
)]
async fn notifications(State(state): State<AppState>) -> FeedAnswer {
    let (store, cache) = (state.store(), state.cache());
    Ok(activities::notifications(store, cache, &state.user, Utc::now()).await?)
}

/// One user's live cruds.
#[utoipa::path(
    get,
    path = "/api/activities/@{handle}",
    tag = CRUDS,
    operation_id = "user_activities",
    params(HandlePath),
    responses(
        (status = 200, description = "that user's live cruds, newest first", body = Vec<Activity>),
        (status = 422, description = "a blank handle", body = Vec<PathHandleInvalid>),
        UnknownUser,
        StoreErrors,
    ),
)]
async fn user_feed(
    State(state): State<AppState>,
    ApiPath(HandlePath { handle }): ApiPath<HandlePath>,
) -> FeedAnswer {
    Ok(activities::user_feed(state.store(), state.cache(), &handle, Utc::now()).await?)
}

/// `term` is an `Option` so that a missing one is a 422 (`search_term_blank`).
#[derive(Deserialize)]
struct SearchQuery {
    term: Option<String>,
}

impl IntoParams for SearchQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![fields::parameter(
            "term",
            ParameterIn::Query,
            Required::True,
            fields::search_term(),
        )]
    }
}

/// Live cruds whose message contains the term.
#[utoipa::path(
    get,
    path = "/api/activities/search",
    tag = CRUDS,
    operation_id = "search_activities",
    params(SearchQuery),
    responses(
        (status = 200, description = "matching live cruds, newest first", body = Vec<Activity>),
        (status = 422, description = "a blank or overlong term", body = Vec<SearchInvalid>),
        QueryErrors,
        StoreErrors,
    ),
)]
async fn search(
    State(state): State<AppState>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> FeedAnswer {
    let Query(query) = query?;
    let term = query.term.as_deref();
    Ok(activities::search(state.store(), state.cache(), term, Utc::now()).await?)
}

/// One live crud with its replies.
#[utoipa::path(
    get,
    path = "/api/activities/{uuid}",
    tag = CRUDS,
    operation_id = "show_activity",
    params(("uuid" = uuid::Uuid, Path, description = "the crud's uuid")),
    responses(
        (status = 200, description = "the crud, its replies oldest first", body = Activity),
        UnknownCrud,
        StoreErrors,
    ),
)]
async fn show(State(state): State<AppState>, ApiPath(uuid): ApiPath<String>) -> FeedAnswer {
    Ok(activities::show(state.store(), state.cache(), &uuid, Utc::now()).await?)
}

/// A new crud by the acting user.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"message": "Hello Cruddur", "ttl": "1-day"}))]
struct CreateActivity {
    #[schema(schema_with = fields::crud_message, required = true)]
    message: Option<String>,
    #[schema(schema_with = fields::ttl, required = true)]
    ttl: Option<String>,
}

/// Posts a crud. Answers 200 (not 201) with the whole crud, as the
/// original did: existing clients keep the result only on exactly 200.
#[utoipa::path(
    post,
    path = "/api/activities",
    tag = CRUDS,
    operation_id = "create_activity",
    request_body = CreateActivity,
    responses(
        (status = 200, description = "the new crud, with `\"replies\": []` and zero counts", body = Activity,
            links(
                ("ShowActivity" = (operation_id = "show_activity", parameters(("uuid" = "$response.body#/uuid")))),
                ("ReplyToActivity" = (operation_id = "create_reply", parameters(("uuid" = "$response.body#/uuid")))),
            )),
        (status = 422, description = "the codes of everything wrong with the crud", body = Vec<CreateInvalid>),
        BodyErrors,
        WriteErrors,
        StoreErrors,
    ),
)]
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

/// A reply by the acting user.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"message": "Qapla'!"}))]
struct CreateReply {
    #[schema(schema_with = fields::message, required = true)]
    message: Option<String>,
}

/// Replies to a crud. `{uuid}` may be a reply's: the new reply then joins
/// the thread of the crud that reply belongs to.
#[utoipa::path(
    post,
    path = "/api/activities/{uuid}/reply",
    tag = CRUDS,
    operation_id = "create_reply",
    params(("uuid" = uuid::Uuid, Path, description = "the uuid of the crud, or of one of its replies")),
    request_body = CreateReply,
    responses(
        (status = 200, description = "the new reply", body = Reply,
            links(
                ("ShowRepliedActivity" = (operation_id = "show_activity", parameters(("uuid" = "$response.body#/reply_to_activity_uuid")))),
                ("ReplyToReply" = (operation_id = "create_reply", parameters(("uuid" = "$response.body#/uuid")))),
            )),
        (status = 422, description = "the codes of everything wrong with the reply", body = Vec<ReplyInvalid>),
        UnknownCrud,
        BodyErrors,
        WriteErrors,
        StoreErrors,
    ),
)]
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
