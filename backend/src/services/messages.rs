//! Direct messages: the inbox, one conversation, and sending.

use chrono::{DateTime, SecondsFormat, Utc};
use tracing::field::Empty;

use super::{ServiceError, check_message, counted};
use crate::domain::{Handle, HandleError, MAX_MESSAGE_CHARS, Message, MessageGroup};
use crate::store::{NewMessage, Store};

const NO_SUCH_USER: &str = "no user has that handle";

#[tracing::instrument(
    name = "message_groups",
    skip_all,
    fields(app.user_handle = user.as_str(), app.result_length = Empty)
)]
pub async fn groups(store: &dyn Store, user: &Handle) -> Result<Vec<MessageGroup>, ServiceError> {
    Ok(counted(store.message_groups(user).await?))
}

#[tracing::instrument(
    name = "messages",
    skip_all,
    fields(app.user_handle = user.as_str(), app.other_handle = other, app.result_length = Empty)
)]
pub async fn conversation(
    store: &dyn Store,
    user: &Handle,
    other: &str,
) -> Result<Vec<Message>, ServiceError> {
    let other: Handle = other.parse().map_err(|err| match err {
        HandleError::Blank => ServiceError::Invalid(vec!["user_handle_blank"]),
        HandleError::Invalid => ServiceError::NotFound(NO_SUCH_USER),
    })?;
    match store.messages(user, &other).await? {
        Some(messages) => Ok(counted(messages)),
        None => Err(ServiceError::NotFound(NO_SUCH_USER)),
    }
}

#[tracing::instrument(
    name = "create_message",
    skip_all,
    fields(
        app.now = now.to_rfc3339_opts(SecondsFormat::Micros, false),
        app.user_handle = user.as_str(),
        app.other_handle = receiver,
        app.message_uuid = Empty,
    )
)]
pub async fn send(
    store: &dyn Store,
    user: &Handle,
    receiver: Option<&str>,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Message, ServiceError> {
    let mut codes = Vec::new();
    let receiver = match receiver.map(str::parse::<Handle>) {
        None | Some(Err(HandleError::Blank)) => {
            codes.push("user_reciever_handle_blank");
            None
        }
        Some(Err(HandleError::Invalid)) => {
            codes.push("user_reciever_handle_invalid");
            None
        }
        Some(Ok(handle)) => Some(handle),
    };
    check_message(message, MAX_MESSAGE_CHARS, &mut codes);
    let (Some(receiver), Some(message), true) = (receiver, message, codes.is_empty()) else {
        return Err(ServiceError::Invalid(codes));
    };
    let sent = store
        .create_message(NewMessage {
            sender: user.clone(),
            receiver,
            message: message.trim().to_owned(),
            created_at: now,
        })
        .await?
        .ok_or(ServiceError::NotFound(NO_SUCH_USER))?;
    tracing::Span::current().record("app.message_uuid", sent.uuid.to_string());
    Ok(sent)
}
