//! OTLP/HTTP to X-Ray's own OTLP endpoint (`XRAY_MODE=otlp`), signed with
//! SigV4: the path AWS recommends now that the X-Ray SDKs and daemon are in
//! maintenance. Only traces sampled for X-Ray are sent.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;

use crate::telemetry::export::{describe, retry_after, retryable_status};
use crate::telemetry::otlp_wire::encode_request;
use crate::telemetry::queue::{SendError, Sink};
use crate::telemetry::sink::SharedSpan;

const CONTENT_TYPE: &str = "application/x-protobuf";

pub struct XrayOtlpSink {
    resource: ResourceAttributesWithSchema,
    http: reqwest::Client,
    /// `XRAY_OTLP_ENDPOINT`, else `https://xray.{region}.amazonaws.com/v1/traces`.
    endpoint: Option<String>,
    sdk: Option<aws_config::SdkConfig>,
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
            sdk: None,
        })
    }

    /// The SDK's region and credentials chain, loaded on first use.
    async fn sdk(&mut self) -> &aws_config::SdkConfig {
        if self.sdk.is_none() {
            self.sdk = Some(aws_config::load_defaults(BehaviorVersion::latest()).await);
        }
        self.sdk.as_ref().expect("just set")
    }

    /// The signed request's URL and headers.
    async fn signed(&mut self, body: &[u8]) -> Result<(String, Vec<(String, String)>), SendError> {
        let endpoint = self.endpoint.clone();
        let sdk = self.sdk().await;
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| failed("X-Ray OTLP: no AWS region (set AWS_REGION)".into()))?;
        let url =
            endpoint.unwrap_or_else(|| format!("https://xray.{region}.amazonaws.com/v1/traces"));
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| failed("X-Ray OTLP: no AWS credentials".into()))?
            .provide_credentials()
            .await
            .map_err(|err| failed(format!("X-Ray OTLP: no AWS credentials: {err}")))?;
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name("xray")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|err| failed(format!("X-Ray OTLP: cannot sign: {err}")))?
            .into();
        let request = SignableRequest::new(
            "POST",
            url.as_str(),
            std::iter::once(("content-type", CONTENT_TYPE)),
            SignableBody::Bytes(body),
        )
        .map_err(|err| failed(format!("X-Ray OTLP: cannot sign: {err}")))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|err| failed(format!("X-Ray OTLP: cannot sign: {err}")))?
            .into_parts();
        let headers = instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
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
