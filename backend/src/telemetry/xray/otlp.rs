//! OTLP/HTTP to X-Ray's own OTLP endpoint (`XRAY_MODE=otlp`), signed with
//! SigV4: the path AWS recommends now that the X-Ray SDKs and daemon are in
//! maintenance. Only traces sampled for X-Ray are sent.

use std::time::{Duration, SystemTime};

use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;

use crate::telemetry::export::{describe, retry_after, retryable_status};
use crate::telemetry::otlp_wire::encode_request;
use crate::telemetry::queue::{SendError, Sink};
use crate::telemetry::sigv4::Signer;
use crate::telemetry::sink::SharedSpan;

const CONTENT_TYPE: &str = "application/x-protobuf";

pub struct XrayOtlpSink {
    resource: ResourceAttributesWithSchema,
    http: reqwest::Client,
    /// `XRAY_OTLP_ENDPOINT`, else `https://xray.{region}.amazonaws.com/v1/traces`.
    endpoint: Option<String>,
    signer: Signer,
}

fn failed(message: String) -> SendError {
    SendError::new(message, false)
}

impl XrayOtlpSink {
    pub fn new(
        resource: &Resource,
        endpoint: Option<String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(XrayOtlpSink {
            resource: resource.into(),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
            endpoint,
            signer: Signer::new("xray"),
        })
    }

    /// The signed request's URL and headers.
    async fn signed(&self, body: &[u8]) -> Result<(String, Vec<(String, String)>), SendError> {
        let url = match &self.endpoint {
            Some(url) => url.clone(),
            None => {
                let region =
                    self.signer.region().await.ok_or_else(|| {
                        failed("X-Ray OTLP: no AWS region (set AWS_REGION)".into())
                    })?;
                format!("https://xray.{region}.amazonaws.com/v1/traces")
            }
        };
        let headers = self
            .signer
            .headers(&url, CONTENT_TYPE, body)
            .await
            .map_err(|err| failed(format!("X-Ray OTLP: {err}")))?;
        Ok((url, headers))
    }
}

impl Sink<SharedSpan> for XrayOtlpSink {
    type Payload = bytes::Bytes;

    fn encode(&mut self, batch: Vec<SharedSpan>) -> bytes::Bytes {
        encode_request(&batch, &self.resource, &[]).into()
    }

    async fn send(&mut self, payload: &bytes::Bytes) -> Result<(), SendError> {
        let body = payload.clone();
        // Signed per attempt: a signature is only good for a few minutes.
        let (url, headers) = self.signed(&body).await?;
        let mut request = self
            .http
            .post(url)
            .header("content-type", CONTENT_TYPE)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request
            .send()
            .await
            .map_err(|err| SendError::retryable(format!("X-Ray OTLP: {}", describe(&err))))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        Err(SendError {
            message: format!("X-Ray OTLP answered {status}"),
            retryable: retryable_status(status),
            retry_after: retry_after(answer.headers(), SystemTime::now()),
            hint: None,
        })
    }
}
