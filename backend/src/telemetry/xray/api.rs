//! Delivery straight to X-Ray's PutTraceSegments API (`XRAY_MODE=api`),
//! for setups without a daemon: the same documents, batched within the
//! API's limits, through the official SDK and its region and credentials.

use aws_config::BehaviorVersion;
use aws_sdk_xray::Client;
use aws_sdk_xray::error::{ProvideErrorMetadata, SdkError};

use super::naming::Naming;
use super::translate;
use crate::telemetry::queue::{SendError, Sink};
use crate::telemetry::sink::SharedSpan;

/// Documents per PutTraceSegments call.
const DOCUMENTS_PER_CALL: usize = 50;
/// Bytes of documents per call, well inside the API's request limit.
const BYTES_PER_CALL: usize = 1024 * 1024;

pub struct ApiSink {
    naming: Naming,
    client: Option<Client>,
}

impl ApiSink {
    pub fn new(naming: Naming) -> Self {
        ApiSink {
            naming,
            client: None,
        }
    }

    /// The client, built on first use from the SDK's own configuration chain.
    async fn client(&mut self) -> Result<&Client, SendError> {
        if self.client.is_none() {
            let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
            if sdk.region().is_none() {
                return Err(SendError {
                    message: "X-Ray API: no AWS region (set AWS_REGION)".into(),
                    retryable: false,
                    retry_after: None,
                    hint: None,
                });
            }
            self.client = Some(Client::new(&sdk));
        }
        Ok(self.client.as_ref().expect("just set"))
    }
}

/// Splits documents into calls of at most `DOCUMENTS_PER_CALL` documents
/// and `BYTES_PER_CALL` bytes.
pub fn calls(documents: Vec<String>) -> Vec<Vec<String>> {
    let mut calls: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for document in documents {
        let full = calls.last().is_none_or(|call| {
            call.len() >= DOCUMENTS_PER_CALL || bytes + document.len() > BYTES_PER_CALL
        });
        if full {
            calls.push(Vec::new());
            bytes = 0;
        }
        bytes += document.len();
        calls.last_mut().expect("just pushed").push(document);
    }
    calls
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> SendError {
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let retryable = code.contains("Throttl")
                || code.contains("ServiceUnavailable")
                || code.contains("Internal");
            SendError {
                message: format!(
                    "X-Ray API: {code}: {}",
                    service.err().message().unwrap_or("")
                ),
                retryable,
                retry_after: None,
                hint: None,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SendError::retryable("X-Ray API: no answer (timeout or connection failure)")
        }
        other => SendError {
            message: format!("X-Ray API: {other:?}"),
            retryable: false,
            retry_after: None,
            hint: None,
        },
    }
}

impl Sink<SharedSpan> for ApiSink {
    type Payload = Vec<Vec<String>>;

    fn encode(&mut self, batch: Vec<SharedSpan>) -> Vec<Vec<String>> {
        calls(translate::documents(&batch, &self.naming))
    }

    async fn send(&mut self, payload: &Vec<Vec<String>>) -> Result<(), SendError> {
        let client = self.client().await?.clone();
        for documents in payload {
            let answer = client
                .put_trace_segments()
                .set_trace_segment_documents(Some(documents.clone()))
                .send()
                .await
                .map_err(|err| describe(&err))?;
            if let Some(first) = answer.unprocessed_trace_segments().first() {
                return Err(SendError {
                    message: format!(
                        "X-Ray API: {} of {} documents unprocessed, e.g. {}: {}",
                        answer.unprocessed_trace_segments().len(),
                        documents.len(),
                        first.error_code().unwrap_or("?"),
                        first.message().unwrap_or("")
                    ),
                    retryable: false,
                    retry_after: None,
                    hint: None,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_respect_the_document_and_byte_limits() {
        let small: Vec<String> = (0..120).map(|i| format!("{{\"id\":{i}}}")).collect();
        let split = calls(small);
        assert_eq!(
            split.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![50, 50, 20]
        );
        let big: Vec<String> = (0..40).map(|_| "x".repeat(60 * 1024)).collect();
        for call in calls(big) {
            assert!(call.iter().map(String::len).sum::<usize>() <= BYTES_PER_CALL);
        }
        assert!(calls(Vec::new()).is_empty());
    }
}
