//! Direct messages: the inbox, one conversation, and sending.

use chrono::{DateTime, Utc};
use tracing::field::Empty;

use super::counters::{self, Created};
use super::{NO_SUCH_USER, ServiceError, check_message, counted, path_handle, validation_codes};
use crate::domain::{Handle, HandleError, MAX_MESSAGE_CHARS, Message, MessageGroup, api_time};
use crate::store::{NewMessage, Store};

validation_codes! {
    /// Why a direct message is refused (`reciever` sic, as the original spelled it).
    pub enum SendInvalid {
        UserRecieverHandleBlank = "user_reciever_handle_blank",
        UserRecieverHandleInvalid = "user_reciever_handle_invalid",
        MessageBlank = "message_blank",
        MessageExceedMaxChars = "message_exceed_max_chars",
    }
}

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
    let other = path_handle(other)?;
    match store.messages(user, &other).await? {
        Some(messages) => Ok(counted(messages)),
        None => Err(ServiceError::NotFound(NO_SUCH_USER)),
    }
}

#[tracing::instrument(
    name = "create_message",
    skip_all,
    fields(
        app.now = api_time(now),
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
            codes.push(SendInvalid::UserRecieverHandleBlank);
            None
        }
        Some(Err(HandleError::Invalid)) => {
            codes.push(SendInvalid::UserRecieverHandleInvalid);
            None
        }
        Some(Ok(handle)) => Some(handle),
    };
    check_message(
        message,
        MAX_MESSAGE_CHARS,
        [
            SendInvalid::MessageBlank,
            SendInvalid::MessageExceedMaxChars,
        ],
        &mut codes,
    );
    let (Some(receiver), Some(message), true) = (receiver, message, codes.is_empty()) else {
        return Err(codes.into());
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
    counters::created(Created::Message);
    Ok(sent)
}
