//! The CloudWatch Logs side of the sink: the group and stream made ready
//! once (and again if they vanish), then one PutLogEvents per call the
//! batch builder made. No sequence tokens, no DescribeLogStreams.

use std::sync::Arc;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::{InputLogEvent, RejectedLogEventsInfo};

use super::batch::{self, LogEvent};
use crate::telemetry::queue::{SendError, Sink, SinkStats};

pub struct CloudWatchSink {
    client: Client,
    group: String,
    stream: String,
    create_group: bool,
    stats: Arc<SinkStats>,
    /// The group and stream are known to exist.
    ready: bool,
    /// Calls of the current payload already accepted: a retry resumes
    /// after them instead of sending their events twice.
    accepted_calls: usize,
    /// The last trouble printed, so a long outage prints one line, not one
    /// per batch.
    reported: Option<String>,
}

/// One batch as PutLogEvents calls, each within every limit.
pub struct Calls(Vec<Vec<InputLogEvent>>);

impl CloudWatchSink {
    pub fn new(
        client: Client,
        group: String,
        stream: String,
        create_group: bool,
        stats: Arc<SinkStats>,
    ) -> Self {
        CloudWatchSink {
            client,
            group,
            stream,
            create_group,
            stats,
            ready: false,
            accepted_calls: 0,
            reported: None,
        }
    }

    async fn prepare(&mut self) -> Result<(), SendError> {
        if self.create_group {
            let created = self
                .client
                .create_log_group()
                .log_group_name(&self.group)
                .send()
                .await;
            if let Err(err) = created {
                match err.code() {
                    Some("ResourceAlreadyExistsException") => {}
                    // Write-only accounts: the group may well exist; the
                    // stream's creation tells.
                    Some("AccessDeniedException") => self.report(format!(
                        "not allowed to create log group {}; using it as it is",
                        self.group
                    )),
                    _ => return Err(describe("CreateLogGroup", &err)),
                }
            }
        }
        let created = self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(err) if err.code() == Some("ResourceNotFoundException") => Err(SendError {
                message: format!(
                    "log group {} does not exist{}",
                    self.group,
                    if self.create_group {
                        ""
                    } else {
                        " and CLOUDWATCH_CREATE_GROUP=false"
                    }
                ),
                retryable: self.create_group,
                retry_after: None,
                hint: (!self.create_group).then_some(
                    "create the group, or let the backend: CLOUDWATCH_CREATE_GROUP=true",
                ),
            }),
            Err(err) => Err(describe("CreateLogStream", &err)),
        }
    }

    /// Prints what the worker noticed but delivered anyway (refused events,
    /// a group it may not create) on stderr, once until it changes: never
    /// through tracing, which would feed it back into this sink. Failures
    /// are announced by the queue (`SinkStats::record_error`).
    fn report(&mut self, trouble: String) {
        if self.reported.as_ref() != Some(&trouble) {
            eprintln!("telemetry: cloudwatch: {trouble}");
            self.reported = Some(trouble);
        }
    }

    async fn deliver(&mut self, calls: &Calls) -> Result<(), SendError> {
        if !self.ready {
            self.prepare().await?;
            self.ready = true;
        }
        for call in &calls.0[self.accepted_calls..] {
            self.put(call).await?;
            self.accepted_calls += 1;
        }
        Ok(())
    }

    async fn put(&mut self, events: &[InputLogEvent]) -> Result<(), SendError> {
        let answer = self
            .client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(events.to_vec()))
            .customize()
            // What the EMF specification asks of PutLogEvents: records with
            // an `_aws` block become metrics; other lines stay lines.
            .mutate_request(|request| {
                request
                    .headers_mut()
                    .insert("x-amzn-logs-format", "json/emf");
            })
            .send()
            .await;
        match answer {
            Ok(output) => {
                if let Some((count, reason)) = output
                    .rejected_log_events_info()
                    .and_then(|info| rejected(info, events.len()))
                {
                    self.stats.record_rejected(count as u64, &reason);
                    self.report(reason);
                }
                Ok(())
            }
            Err(err) if err.code() == Some("ResourceNotFoundException") => {
                // Deleted under us: make them again on the next try.
                self.ready = false;
                Err(SendError::retryable(
                    "PutLogEvents: log group or stream is gone; creating it again",
                ))
            }
            Err(err) => Err(describe("PutLogEvents", &err)),
        }
    }
}

impl Sink<LogEvent> for CloudWatchSink {
    type Payload = Calls;

    fn encode(&mut self, events: Vec<LogEvent>) -> Calls {
        self.accepted_calls = 0;
        Calls(
            batch::split(events)
                .into_iter()
                .map(|call| call.into_iter().map(input_event).collect())
                .collect(),
        )
    }

    async fn send(&mut self, calls: &Calls) -> Result<(), SendError> {
        self.deliver(calls).await
    }
}

fn input_event(event: LogEvent) -> InputLogEvent {
    InputLogEvent::builder()
        .timestamp(event.timestamp_ms)
        .message(event.message)
        .build()
        .expect("timestamp and message are set")
}

/// How many of a call's `len` events CloudWatch refused, and why. Too old
/// and expired events are the first ones (end index exclusive), too new
/// the last ones (start index inclusive).
pub fn rejected(info: &RejectedLogEventsInfo, len: usize) -> Option<(usize, String)> {
    let index = |value: Option<i32>| value.map(|i| usize::try_from(i).unwrap_or(0).min(len));
    let old = index(info.too_old_log_event_end_index()).unwrap_or(0);
    let expired = index(info.expired_log_event_end_index()).unwrap_or(0);
    let new = index(info.too_new_log_event_start_index()).map_or(0, |start| len - start);
    let mut reasons = Vec::new();
    for (count, why) in [(old, "too old"), (expired, "expired"), (new, "too new")] {
        if count > 0 {
            reasons.push(format!("{count} {why}"));
        }
    }
    let count = (old.max(expired) + new).min(len);
    (count > 0).then(|| {
        (
            count,
            format!("PutLogEvents rejected events: {}", reasons.join(", ")),
        )
    })
}

/// An SDK error as one line, and whether trying again may help. The SDK's
/// own retries are off: the queue retries, so every failed try is counted.
pub(super) fn describe<E: ProvideErrorMetadata>(operation: &str, err: &SdkError<E>) -> SendError {
    match err {
        SdkError::TimeoutError(_) => SendError::retryable(format!("{operation}: timed out")),
        SdkError::DispatchFailure(failure) => {
            let why = if failure.is_timeout() {
                "timed out"
            } else if failure.is_io() {
                "cannot connect"
            } else {
                "request failed"
            };
            SendError::retryable(format!("{operation}: {why}")).with_hint(Some(
                "is the endpoint right? AWS_REGION, or AWS_ENDPOINT_URL for moto or LocalStack",
            ))
        }
        SdkError::ResponseError(_) => {
            SendError::retryable(format!("{operation}: unreadable answer"))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().unwrap_or("unknown error");
            let message = err.message().unwrap_or_default();
            SendError {
                message: format!("{operation}: HTTP {status} {code}: {message}")
                    .trim_end_matches([' ', ':'])
                    .to_owned(),
                retryable: retryable(status, code),
                retry_after: None,
                hint: code_hint(code),
            }
        }
        _ => SendError {
            message: format!("{operation}: cannot make the request"),
            retryable: false,
            retry_after: None,
            hint: None,
        },
    }
}

/// What to change for the error codes a configuration causes.
fn code_hint(code: &str) -> Option<&'static str> {
    match code {
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException" => Some(
            "AWS rejected the credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
             and AWS_SESSION_TOKEN, or the profile or role",
        ),
        "AccessDeniedException" => Some(
            "the credentials may not write logs: allow logs:PutLogEvents and \
             logs:CreateLogStream on the group",
        ),
        _ => None,
    }
}

/// Throttling, 5xx and AWS's transient codes: the answers worth waiting for.
fn retryable(status: u16, code: &str) -> bool {
    status >= 500
        || status == 429
        || matches!(
            code,
            "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
                | "ServiceUnavailableException"
                | "OperationAbortedException"
                | "RequestTimeout"
                | "RequestTimeoutException"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(old: Option<i32>, expired: Option<i32>, new: Option<i32>) -> RejectedLogEventsInfo {
        RejectedLogEventsInfo::builder()
            .set_too_old_log_event_end_index(old)
            .set_expired_log_event_end_index(expired)
            .set_too_new_log_event_start_index(new)
            .build()
    }

    #[test]
    fn rejected_events_are_counted_from_their_indexes() {
        assert_eq!(rejected(&info(None, None, None), 10), None);
        let (count, reason) = rejected(&info(Some(3), None, None), 10).unwrap();
        assert_eq!(count, 3);
        assert!(reason.contains("3 too old"), "{reason}");
        let (count, reason) = rejected(&info(None, None, Some(8)), 10).unwrap();
        assert_eq!(count, 2);
        assert!(reason.contains("2 too new"), "{reason}");
        // Expired events are among the oldest: not counted twice.
        let (count, _) = rejected(&info(Some(2), Some(4), Some(9)), 10).unwrap();
        assert_eq!(count, 5);
        // Indexes out of range never count more than the call held.
        let (count, _) = rejected(&info(Some(50), None, Some(-1)), 10).unwrap();
        assert_eq!(count, 10);
    }

    #[test]
    fn throttling_and_server_errors_are_retried_rejections_are_not() {
        assert!(retryable(400, "ThrottlingException"));
        assert!(retryable(500, "InternalFailure"));
        assert!(retryable(503, "ServiceUnavailableException"));
        assert!(!retryable(400, "InvalidParameterException"));
        assert!(!retryable(400, "UnrecognizedClientException"));
        assert!(!retryable(403, "AccessDeniedException"));
    }
}
