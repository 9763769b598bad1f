//! Bodies on S3-compatible object storage (AWS S3, R2, MinIO, SeaweedFS, Garage) through object_store's
//! `AmazonS3`: path-style requests, credentials and region from the standard `AWS_*` variables.
//!
//! Retries: object_store retries throttling (`503 SlowDown`, `429`), server errors and failed connections
//! with exponential backoff; here bounded to 4 retries within 10 s, so an outage turns into an error (and
//! the proxy bypasses the reserve) within seconds instead of object_store's default 3 minutes.
//!
//! Versioned buckets: a delete there only adds a delete marker and keeps the old version, so "physically
//! complete" (SPEC §6.2) does not hold for the bucket's storage: use an unversioned bucket, or a lifecycle
//! rule that expires noncurrent versions. Abandoned multipart uploads (a write cut short by a crash) are
//! invisible to listings and are removed only by a lifecycle rule (`AbortIncompleteMultipartUpload`, e.g.
//! after 1 day). object_store exposes neither setting, so they are not checked at start-up: the README says
//! what to configure.

use std::{sync::Arc, time::Duration};

use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, RetryConfig, aws::AmazonS3Builder, path::Path, prefix::PrefixStore,
};

use super::{BodyError, ObjectBodies};

/// Where the bodies are: `s3://bucket` or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix, without leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
}

impl std::str::FromStr for S3Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| format!("{s:?} is not an s3://bucket[/prefix] URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(format!("{s:?} does not name a bucket (s3://bucket[/prefix])"));
        }
        let prefix = prefix.trim_matches('/').to_owned();
        if prefix.split('/').any(|p| p.is_empty() && !prefix.is_empty() || p == "." || p == "..") {
            return Err(format!("{s:?} has an empty, `.` or `..` segment in its prefix"));
        }
        Ok(Self { bucket: bucket.to_owned(), prefix })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Opens the bucket (no request is made until the first operation). `endpoint` overrides `AWS_ENDPOINT`
/// (e.g. `http://127.0.0.1:8333` for SeaweedFS); plain `http` is allowed only when the endpoint says so.
pub fn open(location: &S3Location, endpoint: Option<&str>) -> Result<ObjectBodies, BodyError> {
    // object_store's HTTP client uses rustls with whichever provider the process installed: ours is ring
    // (the binary installs it at start; this covers library users such as tests).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&location.bucket)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: Duration::from_secs(10),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                // A whole request, body included: large enough for a 1 GiB body on a slow link.
                .with_timeout(Duration::from_secs(300))
                .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://"))),
        );
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let s3: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
    let store: Arc<dyn ObjectStore> = if location.prefix.is_empty() {
        s3
    } else {
        Arc::new(PrefixStore::new(s3, Path::from(location.prefix.as_str())))
    };
    let description = match endpoint {
        Some(e) => format!("{location} at {e}"),
        None => location.to_string(),
    };
    Ok(ObjectBodies::remote(store, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let l: S3Location = "s3://reserve/a/b/".parse().unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("reserve", "a/b"));
        assert_eq!(l.to_string(), "s3://reserve/a/b");
        let l: S3Location = "s3://reserve".parse().unwrap();
        assert_eq!(l.prefix, "");
        for bad in ["reserve", "s3://", "s3:///x", "s3://b/a//c", "s3://b/../x", "http://b/x", "s3://b c/x"] {
            assert!(bad.parse::<S3Location>().is_err(), "{bad}");
        }
    }
}
