//! `POST /v1/media` and `GET /v1/media/{media_id}`.
//!
//! Uploads stream into the blob store (under a temporary name) while their SHA-256 is computed,
//! and stop with 413 as soon as they pass `media.max_bytes`; then the blob is moved to
//! `blobs/{sha256}` unless that file is already there (the same bytes are stored once). The
//! declared `Content-Type` must agree with the bytes' signature where one is known (PNG, JPEG,
//! GIF, WebP, PDF, MP4, Ogg, MP3, WAV, ZIP): a PNG sent as `text/plain` or a text sent as
//! `image/png` is refused with 415. Downloads are for the uploader and the members of a
//! conversation where the file was sent (everyone else gets 404, as for a missing file) and
//! honour single `Range` requests.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chat_store::{valid_media_id, Blobs};
use futures_util::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::auth::AuthUser;
use super::error::{blocking, ApiError};
use super::AppState;

/// `[media]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest upload in bytes (413 above it).
    pub max_bytes: u64,
    /// `local` (a directory) or `s3` (an S3-compatible bucket).
    pub backend: String,
    /// For `local`: the directory; empty means `DATA_DIR/media`.
    pub local_dir: String,
    /// For `s3`: bucket, region, endpoint (empty: AWS), credentials.
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_endpoint: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_bytes: 16 * 1024 * 1024,
            backend: "local".into(),
            local_dir: String::new(),
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_endpoint: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
        }
    }
}

impl MediaConfig {
    /// Checks the backend and its settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes == 0 {
            return Err("media.max_bytes must be positive".into());
        }
        match self.backend.as_str() {
            "local" => Ok(()),
            "s3" if !self.s3_bucket.is_empty() => Ok(()),
            "s3" => Err("media.s3_bucket is required with media.backend = \"s3\"".into()),
            _ => Err("media.backend must be \"local\" or \"s3\"".into()),
        }
    }

    /// The blob store these settings name (`data_dir` for the default local directory).
    pub fn open(&self, data_dir: &std::path::Path) -> Result<Blobs, String> {
        let store: std::sync::Arc<dyn ObjectStore> = match self.backend.as_str() {
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&self.s3_bucket)
                    .with_region(&self.s3_region);
                if !self.s3_endpoint.is_empty() {
                    b = b
                        .with_endpoint(&self.s3_endpoint)
                        .with_allow_http(self.s3_endpoint.starts_with("http://"));
                }
                if !self.s3_access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&self.s3_access_key_id)
                        .with_secret_access_key(&self.s3_secret_access_key);
                }
                std::sync::Arc::new(b.build().map_err(|e| format!("media S3 store: {e}"))?)
            }
            _ => {
                let dir = if self.local_dir.is_empty() {
                    data_dir.join("media")
                } else {
                    std::path::PathBuf::from(&self.local_dir)
                };
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("media directory {}: {e}", dir.display()))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| format!("media directory {}: {e}", dir.display()))?;
                std::sync::Arc::new(fs)
            }
        };
        Ok(Blobs::new(store))
    }
}

/// Tells whether the first bytes of a file have a format's signature.
type Matcher = fn(&[u8]) -> bool;

/// Known file signatures: (content type, check of the first bytes).
const SIGNATURES: &[(&str, Matcher)] = &[
    ("image/png", |b| b.starts_with(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", |b| b.starts_with(&[0xff, 0xd8, 0xff])),
    ("image/gif", |b| {
        b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")
    }),
    ("image/webp", |b| {
        b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP")
    }),
    ("application/pdf", |b| b.starts_with(b"%PDF-")),
    ("video/mp4", |b| b.get(4..8) == Some(b"ftyp")),
    ("audio/ogg", |b| b.starts_with(b"OggS")),
    ("audio/mpeg", |b| {
        b.starts_with(b"ID3") || b.starts_with(&[0xff, 0xfb])
    }),
    ("audio/wav", |b| {
        b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WAVE")
    }),
    ("application/zip", |b| b.starts_with(b"PK\x03\x04")),
];

/// Types that share a signature with a listed one.
fn canonical(mime: &str) -> &str {
    match mime {
        "image/jpg" => "image/jpeg",
        "video/quicktime" | "audio/mp4" | "audio/m4a" | "video/3gpp" => "video/mp4",
        "video/ogg" | "application/ogg" | "audio/opus" => "audio/ogg",
        "audio/x-wav" | "audio/wave" => "audio/wav",
        "audio/mp3" => "audio/mpeg",
        other => other,
    }
}

/// Checks the declared type against the first bytes; `Err` says what is wrong.
pub fn check_signature(declared: &str, head: &[u8]) -> Result<(), String> {
    let declared = canonical(declared);
    let detected = SIGNATURES.iter().find(|(_, is)| is(head)).map(|(m, _)| *m);
    let declared_known = SIGNATURES.iter().any(|(m, _)| *m == declared);
    match detected {
        Some(found) if found != declared => Err(format!(
            "Content-Type says {declared} but the bytes are {found}"
        )),
        None if declared_known => Err(format!(
            "Content-Type says {declared} but the bytes are not {declared}"
        )),
        _ => Ok(()),
    }
}

/// The declared content type: `type/subtype` without parameters, lower case.
fn content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("Content-Type header is required".into()))?;
    let mime = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = mime.len() <= chat_proto::MAX_MIME_LEN
        && mime.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
            };
            token(t) && token(s)
        });
    if !ok {
        return Err(ApiError::BadRequest(format!(
            "Content-Type {raw:?} is not a media type"
        )));
    }
    Ok(mime)
}

/// `POST /v1/media`: the bytes, with their `Content-Type`.
pub async fn upload(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mime = content_type(&headers)?;
    let max = state.media.max_bytes;
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > max) {
        return Err(refuse_too_large(body.into_data_stream(), 0, max).await);
    }
    let blobs = state.blobs.clone();
    let mut name = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut name);
    let upload_path = Blobs::upload_path(&hex::encode(name));
    let upload = blobs
        .inner()
        .put_multipart(&upload_path)
        .await
        .map_err(ApiError::internal)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
    let mut hasher = Sha256::new();
    let mut head: Vec<u8> = Vec::with_capacity(16);
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(ApiError::BadRequest(format!("reading the body: {e}")));
            }
        };
        size += chunk.len() as u64;
        if size > max {
            let _ = writer.abort().await;
            return Err(refuse_too_large(stream, size, max).await);
        }
        if head.len() < 16 {
            let take = (16 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        writer
            .wait_for_capacity(4)
            .await
            .map_err(ApiError::internal)?;
        writer.write(&chunk);
    }
    if size == 0 {
        let _ = writer.abort().await;
        return Err(ApiError::BadRequest("the body is empty".into()));
    }
    if let Err(message) = check_signature(&mime, &head) {
        let _ = writer.abort().await;
        return Err(ApiError::UnsupportedMediaType(message));
    }
    writer.finish().await.map_err(ApiError::internal)?;
    let media_id = hex::encode(hasher.finalize());
    let blob_path = Blobs::blob_path(&media_id);
    let store = blobs.inner();
    match store.head(&blob_path).await {
        Ok(_) => {
            // The same bytes are there already: keep one copy.
            let _ = store.delete(&upload_path).await;
        }
        Err(object_store::Error::NotFound { .. }) => {
            store
                .rename(&upload_path, &blob_path)
                .await
                .map_err(ApiError::internal)?;
        }
        Err(e) => {
            let _ = store.delete(&upload_path).await;
            return Err(ApiError::internal(e));
        }
    }
    let db = state.store.clone();
    let id = media_id.clone();
    let record = blocking(move || db.add_media(&user, &id, size, &mime)).await??;
    let body = json!({"media_id": record.media_id, "size": record.size, "mime": record.mime});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Most bytes past the limit read (and thrown away) before a 413, so that a client still
/// sending gets the answer instead of a reset connection; a larger body is cut off.
const DRAIN_MAX: u64 = 8 * 1024 * 1024;

/// The 413 for an upload past `max`, after discarding what the client still sends (up to
/// [`DRAIN_MAX`] more). Nothing of it is stored.
async fn refuse_too_large(
    mut rest: axum::body::BodyDataStream,
    mut seen: u64,
    max: u64,
) -> ApiError {
    let cap = max.saturating_add(DRAIN_MAX);
    while seen <= cap {
        match rest.next().await {
            Some(Ok(chunk)) => seen += chunk.len() as u64,
            _ => break,
        }
    }
    ApiError::TooLarge(format!("uploads are limited to {max} bytes"))
}

/// A single `bytes=` range against a file of `size` bytes: `Ok(None)` for no (or an ignored)
/// Range header, `Err(())` when it cannot be satisfied.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: send the whole file, as servers may
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                b.parse::<u64>()
                    .map_err(|_| ())?
                    .min(size.saturating_sub(1))
            };
            (start, end)
        }
        (true, true) => return Err(()),
    };
    if size == 0 || start > end || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `GET /v1/media/{media_id}`: the bytes, whole or one range.
pub async fn download(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(media_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound("no such media".into());
    if !valid_media_id(&media_id) {
        return Err(not_found());
    }
    let db = state.store.clone();
    let id = media_id.clone();
    let (record, allowed) = blocking(move || -> Result<_, chat_store::StoreError> {
        Ok((db.media(&id)?, db.media_allowed(&user, &id)?))
    })
    .await??;
    let Some(record) = record.filter(|_| allowed) else {
        return Err(not_found());
    };
    let range = match parse_range(&headers, record.size) {
        Ok(r) => r,
        Err(()) => {
            let mut response =
                ApiError::RangeNotSatisfiable(format!("the file has {} bytes", record.size))
                    .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", record.size)) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let options = GetOptions {
        range: range.map(|(start, end)| GetRange::Bounded(start..end + 1)),
        ..GetOptions::default()
    };
    let got = state
        .blobs
        .inner()
        .get_opts(&Blobs::blob_path(&media_id), options)
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => not_found(),
            e => ApiError::internal(e),
        })?;
    let stream = got.into_stream();
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    let value = |s: String| {
        HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    h.insert(header::CONTENT_TYPE, value(record.mime.clone()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    match range {
        Some((start, end)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = response.headers_mut();
            h.insert(header::CONTENT_LENGTH, value((end - start + 1).to_string()));
            h.insert(
                header::CONTENT_RANGE,
                value(format!("bytes {start}-{end}/{}", record.size)),
            );
        }
        None => {
            h.insert(header::CONTENT_LENGTH, value(record.size.to_string()));
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_must_agree_with_the_declared_type() {
        let png = b"\x89PNG\r\n\x1a\n0000";
        assert!(check_signature("image/png", png).is_ok());
        assert!(check_signature("text/plain", png).is_err());
        assert!(check_signature("image/png", b"hello world").is_err());
        assert!(check_signature("image/jpg", &[0xff, 0xd8, 0xff, 0xe0]).is_ok());
        assert!(check_signature("text/plain", b"hello").is_ok());
        assert!(check_signature("application/octet-stream", b"\x00\x01").is_ok());
        assert!(check_signature("video/quicktime", b"\x00\x00\x00\x14ftypqt  ").is_ok());
    }

    #[test]
    fn backends_are_configured_or_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let local = MediaConfig::default();
        assert!(local.validate().is_ok());
        assert!(local.open(dir.path()).is_ok());
        assert!(dir.path().join("media").is_dir());
        let s3 = MediaConfig {
            backend: "s3".into(),
            s3_bucket: "chat-media".into(),
            s3_endpoint: "http://127.0.0.1:9000".into(),
            s3_access_key_id: "key".into(),
            s3_secret_access_key: "secret".into(),
            ..MediaConfig::default()
        };
        assert!(s3.validate().is_ok());
        assert!(
            s3.open(dir.path()).is_ok(),
            "an S3 client is built without contacting it"
        );
        let no_bucket = MediaConfig {
            s3_bucket: String::new(),
            ..s3
        };
        assert!(no_bucket.validate().unwrap_err().contains("s3_bucket"));
        let odd = MediaConfig {
            backend: "ftp".into(),
            ..MediaConfig::default()
        };
        assert!(odd.validate().is_err());
    }

    #[test]
    fn ranges() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(parse_range(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(parse_range(&h("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(&h("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(&h("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(&h("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(&h("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(&h("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(&h("bytes=x-2"), 10), Err(()));
        assert_eq!(parse_range(&h("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(&h("items=0-1"), 10), Ok(None));
    }
}
