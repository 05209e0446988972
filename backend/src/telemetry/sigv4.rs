//! SigV4 for the OTLP endpoints AWS serves (X-Ray's traces, CloudWatch's
//! metrics): the AWS SDK's region and credential chain, loaded on first
//! use, and the headers that sign one request.

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use tokio::sync::OnceCell;

/// Signs requests for one AWS service (`xray`, `monitoring`).
#[derive(Debug)]
pub struct Signer {
    service: &'static str,
    sdk: OnceCell<aws_config::SdkConfig>,
}

impl Signer {
    pub fn new(service: &'static str) -> Self {
        Signer {
            service,
            sdk: OnceCell::new(),
        }
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| aws_config::load_defaults(BehaviorVersion::latest()))
            .await
    }

    /// The region the SDK's chain finds.
    pub async fn region(&self) -> Option<String> {
        self.sdk().await.region().map(|r| r.as_ref().to_owned())
    }

    /// The headers that sign a POST of `body` to `url` (`authorization`,
    /// `x-amz-date`, and the session token's when there is one). Errors
    /// name what is missing, never a credential.
    pub async fn headers(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let region = self
            .region()
            .await
            .ok_or("no AWS region (set AWS_REGION)")?;
        let credentials = self
            .sdk()
            .await
            .credentials_provider()
            .ok_or("no AWS credentials")?
            .provide_credentials()
            .await
            .map_err(|err| format!("no AWS credentials: {err}"))?;
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|err| format!("cannot sign: {err}"))?
            .into();
        let request = SignableRequest::new(
            "POST",
            url,
            std::iter::once(("content-type", content_type)),
            SignableBody::Bytes(body),
        )
        .map_err(|err| format!("cannot sign: {err}"))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|err| format!("cannot sign: {err}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}
