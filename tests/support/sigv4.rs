//! SigV4 as AWS checks it: the `authorization` a request signed for
//! `service` in us-east-1 with the key `AKIDTEST` and `secret` must carry,
//! recomputed from its URL, `x-amz-date`, content type and body. The
//! stand-ins for AWS's OTLP endpoints refuse a mismatch with it.

pub const ACCESS_KEY: &str = "AKIDTEST";

pub fn expected_authorization(
    service: &str,
    secret: &str,
    url: &str,
    amz_date: &str,
    content_type: &str,
    body: &[u8],
) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let time = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(time.into())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        std::iter::once(("content-type", content_type)),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    instructions
        .headers()
        .find(|(name, _)| *name == "authorization")
        .map(|(_, value)| value.to_owned())
        .unwrap()
}
