//! A fake S3 bucket on 127.0.0.1 for the media suite: path-style requests for one bucket,
//! in memory, with the calls `object_store` makes for uploads and downloads (multipart upload,
//! HEAD, copy, DELETE, ranged GET). Every request must carry a valid AWS Signature Version 4
//! for the test credentials; the fake recomputes it as S3 does and refuses a wrong one (403).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Credentials and bucket the fake accepts.
pub const ACCESS_KEY: &str = "AKIDTESTCHATD";
pub const SECRET_KEY: &str = "test-secret-for-the-fake-s3";
pub const BUCKET: &str = "chat-media";
pub const REGION: &str = "us-east-1";

#[derive(Default)]
struct State {
    objects: HashMap<String, Vec<u8>>,
    /// upload id -> (key, parts by number)
    uploads: HashMap<String, (String, BTreeMap<u32, Vec<u8>>)>,
    next_upload: u64,
    problems: Vec<String>,
    requests: Vec<String>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeS3 {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeS3 {
    pub async fn start() -> FakeS3 {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake S3");
        let addr = listener.local_addr().expect("fake S3 address");
        let s = state.clone();
        let app = axum::Router::new().fallback(move |method, uri, headers, body| {
            handle(s.clone(), method, uri, headers, body)
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeS3 { addr, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Object keys in the bucket; panics if any request was refused as malformed or unsigned.
    pub fn keys(&self) -> Vec<String> {
        let s = self.lock();
        assert!(s.problems.is_empty(), "bad S3 requests: {:?}", s.problems);
        let mut keys: Vec<String> = s.objects.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// `METHOD path?query` of every request, in order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Points the node's `[media]` settings at this bucket.
    pub fn configure(&self, media: &mut chatd::http::media::MediaConfig) {
        media.backend = "s3".into();
        media.s3_bucket = BUCKET.into();
        media.s3_region = REGION.into();
        media.s3_endpoint = format!("http://{}", self.addr);
        media.s3_access_key_id = ACCESS_KEY.into();
        media.s3_secret_access_key = SECRET_KEY.into();
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/xml")], body).into_response()
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..16]))
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let query = uri.query().unwrap_or("").to_owned();
    s.requests.push(format!("{method} {}?{query}", uri.path()));
    if let Err(problem) = check_signature(&method, &uri, &headers, &body) {
        s.problems.push(problem.clone());
        return (StatusCode::FORBIDDEN, problem).into_response();
    }
    let Some(key) = uri
        .path()
        .strip_prefix(&format!("/{BUCKET}/"))
        .map(str::to_owned)
    else {
        s.problems
            .push(format!("not path-style for {BUCKET}: {}", uri.path()));
        return StatusCode::NOT_FOUND.into_response();
    };
    let params: HashMap<&str, &str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let not_found = || {
        xml(
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchKey</Code></Error>".into(),
        )
    };
    match (
        method.as_str(),
        params.get("uploadId"),
        params.contains_key("uploads"),
    ) {
        ("POST", None, true) => {
            s.next_upload += 1;
            let id = format!("upload{}", s.next_upload);
            s.uploads.insert(id.clone(), (key, BTreeMap::new()));
            xml(
                StatusCode::OK,
                format!("<InitiateMultipartUploadResult><Bucket>{BUCKET}</Bucket><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"),
            )
        }
        ("PUT", Some(id), _) => {
            let part: u32 = params
                .get("partNumber")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let tag = etag(&body);
            match s.uploads.get_mut(*id) {
                Some((_, parts)) => {
                    parts.insert(part, body.to_vec());
                    ([("etag", tag)], StatusCode::OK).into_response()
                }
                None => not_found(),
            }
        }
        ("POST", Some(id), _) => match s.uploads.remove(*id) {
            Some((upload_key, parts)) if upload_key == key => {
                let bytes: Vec<u8> = parts.into_values().flatten().collect();
                let tag = etag(&bytes);
                s.objects.insert(key, bytes);
                xml(
                    StatusCode::OK,
                    format!("<CompleteMultipartUploadResult><ETag>{tag}</ETag></CompleteMultipartUploadResult>"),
                )
            }
            _ => not_found(),
        },
        ("DELETE", Some(id), _) => {
            s.uploads.remove(*id);
            StatusCode::NO_CONTENT.into_response()
        }
        ("PUT", None, false) => {
            let source = headers
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok());
            let Some(source) = source.and_then(|v| v.strip_prefix(&format!("{BUCKET}/"))) else {
                let bytes = body.to_vec();
                s.objects.insert(key, bytes);
                return StatusCode::OK.into_response();
            };
            match s.objects.get(source).cloned() {
                Some(bytes) => {
                    let tag = etag(&bytes);
                    s.objects.insert(key, bytes);
                    xml(
                        StatusCode::OK,
                        format!("<CopyObjectResult><ETag>{tag}</ETag></CopyObjectResult>"),
                    )
                }
                None => not_found(),
            }
        }
        ("DELETE", None, false) => {
            s.objects.remove(&key);
            StatusCode::NO_CONTENT.into_response()
        }
        ("HEAD" | "GET", None, false) => {
            let Some(bytes) = s.objects.get(&key) else {
                return not_found();
            };
            let size = bytes.len();
            let range = headers
                .get("range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            let (status, start, end) = match range {
                Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b.min(size - 1)),
                None => (StatusCode::OK, 0, size - 1),
            };
            let content = if method == Method::HEAD {
                Vec::new()
            } else {
                bytes[start..=end].to_vec()
            };
            let mut response = (status, content).into_response();
            let h = response.headers_mut();
            let put = |h: &mut HeaderMap, k: &'static str, v: String| {
                h.insert(k, v.parse().expect("header value"));
            };
            put(h, "etag", etag(bytes));
            put(h, "last-modified", "Mon, 23 Nov 2026 12:00:00 GMT".into());
            put(h, "content-length", (end + 1 - start).to_string());
            if status == StatusCode::PARTIAL_CONTENT {
                put(h, "content-range", format!("bytes {start}-{end}/{size}"));
            }
            response
        }
        _ => {
            s.problems.push(format!("unexpected {method} {uri}"));
            StatusCode::NOT_IMPLEMENTED.into_response()
        }
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut h = Sha256::new();
    h.update(&inner);
    h.update(message);
    let inner_hash = h.finalize();
    let mut h = Sha256::new();
    h.update(&outer);
    h.update(inner_hash);
    h.finalize().to_vec()
}

/// Recomputes the request's AWS SigV4 signature with the test secret.
fn check_signature(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let auth = header("authorization");
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("authorization {auth:?}"))?;
    let mut fields = HashMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            fields.insert(k, v);
        }
    }
    let credential = fields.get("Credential").copied().unwrap_or("");
    let signed = fields.get("SignedHeaders").copied().unwrap_or("");
    let signature = fields.get("Signature").copied().unwrap_or("");
    let mut scope = credential.splitn(2, '/');
    if scope.next() != Some(ACCESS_KEY) {
        return Err(format!("credential {credential:?}"));
    }
    let scope = scope.next().unwrap_or("");
    let date = scope.split('/').next().unwrap_or("");
    let amz_date = header("x-amz-date");
    let payload = header("x-amz-content-sha256");
    if payload != "UNSIGNED-PAYLOAD" && payload != hex::encode(Sha256::digest(body)) {
        return Err("x-amz-content-sha256 does not match the body".into());
    }
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    query.sort();
    let canonical_query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical_headers: String = signed
        .split(';')
        .map(|h| format!("{h}:{}\n", header(h).trim()))
        .collect();
    let canonical = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed}\n{payload}",
        uri.path(),
        canonical_query.join("&")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in [REGION, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&key, to_sign.as_bytes()));
    if expected != signature {
        return Err(format!("bad signature for {method} {uri}"));
    }
    Ok(())
}
