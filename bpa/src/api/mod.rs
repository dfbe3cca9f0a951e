//! The local application API (design §5): HTTP/1.1 over a Unix socket (optionally loopback
//! TCP), JSON for control, raw bodies for payloads. `docs/api.md` is its reference; the `dtn`
//! CLI is its first client.
//!
//! Every answer that says a bundle was accepted comes after the bundle is durable (design §3.3);
//! a bundle handed to an application stays stored until the application acknowledges it, so
//! an application that crashes between the two gets it again.

mod body;
mod json;
mod layers;
mod plan;
mod serve;

pub use layers::DaemonStatus;
pub use plan::plan_time;

pub use serve::{ServeLimits, serve};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use self::body::ReaderBody;
use crate::agent::node::{Agent, AgentError};
use crate::agent::outgoing::SendRequest;
use crate::bundle::{BundleError, BundleFlags, Eid};
use crate::store::{PayloadContent, Reserved, Store, StoreError, StoreId};

/// Header names of a received bundle's metadata.
pub mod headers {
    /// The bundle's id in the store (what acknowledging names).
    pub const STORE_ID: &str = "dtn-store-id";
    /// Its bundle ID.
    pub const BUNDLE_ID: &str = "dtn-bundle-id";
    /// Its source endpoint.
    pub const SOURCE: &str = "dtn-source";
    /// Its destination endpoint.
    pub const DESTINATION: &str = "dtn-destination";
    /// Its creation time (DTN ms).
    pub const CREATION_TIME: &str = "dtn-creation-time";
}

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest payload `POST /v1/send` takes, in bytes.
    pub max_payload: u64,
    /// Longest `wait` a receive may ask for.
    pub max_wait: Duration,
    /// Default lifetime of sent bundles.
    pub default_lifetime: Duration,
    /// Where a large payload sent without a `Content-Length` is held until its length is known
    /// (the data directory, not a RAM-backed `/tmp`).
    pub spool_dir: PathBuf,
    /// A request body that sends nothing for this long is cut off (408).
    pub body_idle_timeout: Duration,
    /// Largest contact plan `POST /v1/plan` takes, in bytes of text (a plan takes several
    /// times its text in memory while it is parsed and prepared).
    pub max_plan: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_payload: 4 << 30,
            max_wait: Duration::from_secs(3600),
            default_lifetime: Duration::from_secs(24 * 3600),
            spool_dir: std::env::temp_dir(),
            body_idle_timeout: Duration::from_secs(60),
            max_plan: plan::DEFAULT_MAX_PLAN_BYTES,
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState<S: Store> {
    /// The node's agent.
    pub agent: Agent<S>,
    /// The API's settings.
    pub config: ApiConfig,
    /// When the daemon started, for the uptime.
    pub started: Instant,
    /// The daemon's own fields and its convergence layers, for `/v1/status` and `/metrics`.
    pub daemon: DaemonStatus,
}

/// The API's routes over an agent.
pub fn router<S: Store>(state: ApiState<S>) -> Router {
    Router::new()
        .route("/v1/status", get(status::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/v1/send", post(send::<S>).layer(DefaultBodyLimit::disable()))
        .route("/v1/receive", get(receive::<S>))
        .route("/v1/ack", post(ack::<S>))
        .route("/v1/registrations", get(list_registrations::<S>).post(register::<S>).delete(unregister::<S>))
        .route("/v1/bundles", get(list_bundles::<S>))
        .route("/v1/bundles/{id}", get(show_bundle::<S>).delete(delete_bundle::<S>))
        .route("/v1/route", get(plan::route::<S>))
        .route("/v1/contacts", get(plan::contacts::<S>))
        .route("/v1/plan", post(plan::load::<S>).layer(DefaultBodyLimit::disable()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::new(state))
}

/// An error answer: a status code and a JSON body `{"error": "..."}` saying what was wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "API request failed");
        }
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> ApiError {
        let status = match &error {
            AgentError::Invalid(_)
            | AgentError::NotLocal { .. }
            | AgentError::ForeignSource { .. }
            | AgentError::PayloadLength(_)
            | AgentError::Impostor { .. } => StatusCode::BAD_REQUEST,
            AgentError::Store(StoreError::InvalidBundle(BundleError::TooLarge { .. })) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            AgentError::Store(StoreError::DepletedStorage { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            AgentError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            AgentError::AlreadyHandled(_) => StatusCode::CONFLICT,
            AgentError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        AgentError::Store(error).into()
    }
}

type Shared<S> = State<Arc<ApiState<S>>>;

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such API path {}: see docs/api.md", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}: see docs/api.md for its methods", uri.path()),
    )
}

/// A query string, or a 400 naming what in it was wrong.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|rejection| ApiError::bad_request(format!("bad query string: {}", rejection.body_text())))
}

fn parse_eid(what: &str, text: &str) -> Result<Eid, ApiError> {
    text.parse().map_err(|e| ApiError::bad_request(format!("{what} {text:?} is not an endpoint ID: {e}")))
}

async fn status<S: Store>(State(state): Shared<S>) -> Result<Response, ApiError> {
    let agent = &state.agent;
    let registrations = agent.registrations().await?;
    let mut body = json!({
        "node_id": agent.node_id().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "store": json::store_stats(agent.store().stats()),
        "counters": json::agent_stats(&agent.stats()),
        "custody": json::custody(&agent.stats().custody, &agent.store().custody_counts().await?),
        "neighbours": agent.neighbours().iter().map(|n| json!({
            "node_id": n.node_id.to_string(), "cla": n.cla, "in_flight": n.in_flight,
            "queue_idle": n.queue_idle,
        })).collect::<Vec<_>>(),
        "routes": agent.static_routes().iter().map(|r| json!({
            "pattern": r.pattern.to_string(), "via": r.via.to_string(),
        })).collect::<Vec<_>>(),
        "registrations": registrations.iter().map(|(eid, connected)| json!({
            "endpoint": eid.to_string(), "connected": connected,
        })).collect::<Vec<_>>(),
    });
    if let Some(body) = body.as_object_mut() {
        body.extend(state.daemon.about.clone());
        let layers = (state.daemon.layers)();
        body.insert(
            "convergence_layers".into(),
            layers.iter().map(layers::layer_json).collect::<Vec<_>>().into(),
        );
    }
    Ok(axum::Json(body).into_response())
}

async fn metrics<S: Store>(State(state): Shared<S>) -> Response {
    let agent = &state.agent;
    let mut text = String::new();
    for (name, help, value) in agent.stats().named() {
        text.push_str(&format!(
            "# HELP dtn_bundles_{name}_total {help}\n# TYPE dtn_bundles_{name}_total counter\n"
        ));
        text.push_str(&format!("dtn_bundles_{name}_total {value}\n"));
    }
    let custody = agent.stats().custody;
    for (name, help, value) in agent.stats().named_peers() {
        text.push_str(&format!(
            "# HELP dtn_{name}_total {help}\n# TYPE dtn_{name}_total counter\ndtn_{name}_total {value}\n"
        ));
    }
    for (name, help, value) in custody.named() {
        text.push_str(&format!(
            "# HELP dtn_custody_{name}_total {help}\n# TYPE dtn_custody_{name}_total counter\n\
             dtn_custody_{name}_total {value}\n"
        ));
    }
    text.push_str(
        "# HELP dtn_custody_refused_total our custodial transmissions refused by the next custodian, by disposition\n\
         # TYPE dtn_custody_refused_total counter\n",
    );
    for (code, value) in custody.refused.iter().enumerate() {
        let disposition = if code == 9 {
            "other".to_string()
        } else {
            crate::admin::CustodyDisposition(code as u64).name().replace(' ', "_")
        };
        text.push_str(&format!("dtn_custody_refused_total{{disposition=\"{disposition}\"}} {value}\n"));
    }
    if let Ok(counts) = agent.store().custody_counts().await {
        let gauges = [
            ("dtn_custody_held", "bundles this node holds as custodian", counts.held),
            (
                "dtn_custody_outstanding",
                "custodial transmissions awaiting a custody signal",
                counts.outstanding,
            ),
            (
                "dtn_custody_signals_pending",
                "custody answers owed to other custodians",
                counts.signals_pending,
            ),
        ];
        for (name, help, value) in gauges {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
        }
    }
    let store = agent.store().stats();
    let gauges = [
        ("dtn_store_bundles", "bundles held in the store", store.bundles),
        ("dtn_store_bytes", "bytes of bundles held in the store", store.bytes),
        ("dtn_store_quarantined", "bundles found damaged and kept aside, never served", store.quarantined),
        (
            "dtn_store_lost_transactions",
            "committed store transactions found unreplayable at start (acknowledged changes lost)",
            store.lost_transactions,
        ),
        ("dtn_neighbours", "neighbours connected now", agent.neighbours().len() as u64),
        ("dtn_uptime_seconds", "seconds since the daemon started", state.started.elapsed().as_secs()),
    ];
    for (name, help, value) in gauges {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
    }
    text.push_str(&layers::layer_metrics(&(state.daemon.layers)()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendParams {
    to: String,
    from: Option<String>,
    lifetime: Option<String>,
    flags: Option<String>,
    /// `true`: custody transfer hop by hop, this node the first custodian.
    #[serde(default)]
    custody: bool,
}

/// Flags an application may not set: the agent sets them.
const AGENT_ONLY_FLAGS: u64 = BundleFlags::IS_FRAGMENT | BundleFlags::ADMIN_RECORD;

/// Payloads up to this size are taken into memory and stored whole; larger ones stream
/// into the store.
const STREAM_THRESHOLD: u64 = 64 * 1024;

async fn send<S: Store>(
    State(state): Shared<S>,
    params: Result<Query<SendParams>, QueryRejection>,
    request_headers: HeaderMap,
    mut body: Body,
) -> Result<Response, ApiError> {
    let request = send_request(&state, query(params)?)?;
    let max = state.config.max_payload;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the payload is larger than the limit of {max} bytes ([api] max_payload)"),
        )
    };
    let declared = match request_headers.get(header::CONTENT_LENGTH) {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("the Content-Length header is not a number"))?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let agent = &state.agent;
    let (id, bundle_id, length) = match declared {
        Some(length) if length > STREAM_THRESHOLD => {
            let mut pending = agent.begin_send(request, length).await?;
            while let Some(chunk) = next_chunk(&mut body, state.config.body_idle_timeout).await? {
                pending.write(&chunk).await?;
            }
            let (id, bundle_id) = pending.commit().await?;
            (id, bundle_id, length)
        }
        _ => {
            // Small, or of unknown length: read up to the threshold, and spool past it.
            let mut head = Vec::new();
            let mut ended = false;
            while (head.len() as u64) <= STREAM_THRESHOLD {
                match next_chunk(&mut body, state.config.body_idle_timeout).await? {
                    Some(chunk) => head.extend_from_slice(&chunk),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                if head.len() as u64 > max {
                    return Err(too_large());
                }
                let length = head.len() as u64;
                let (id, bundle_id) = agent.send_whole(request, Bytes::from(head)).await?;
                (id, bundle_id, length)
            } else {
                send_spooled(&state, request, head, &mut body).await?
            }
        }
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "id": id, "bundle_id": bundle_id.to_string(), "payload_length": length })),
    )
        .into_response())
}

/// The send parameters, checked.
fn send_request<S: Store>(state: &ApiState<S>, params: SendParams) -> Result<SendRequest, ApiError> {
    let destination = parse_eid("destination", &params.to)?;
    if destination.is_null() {
        return Err(ApiError::bad_request("the destination dtn:none has no members: name a real endpoint"));
    }
    let source = match &params.from {
        Some(text) => parse_eid("source", text)?,
        None => state.agent.node_id().clone(),
    };
    let lifetime = match &params.lifetime {
        Some(text) => crate::time::parse_duration(text).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => state.config.default_lifetime,
    };
    if lifetime.is_zero() {
        return Err(ApiError::bad_request("lifetime 0 expires at once: give a positive lifetime"));
    }
    let flags = match &params.flags {
        Some(text) => text.parse::<BundleFlags>().map_err(ApiError::bad_request)?,
        None => BundleFlags::default(),
    };
    if flags.0 & AGENT_ONLY_FLAGS != 0 {
        return Err(ApiError::bad_request(
            "the fragment and admin-record flags are set by the agent, not by applications",
        ));
    }
    Ok(SendRequest {
        source,
        destination,
        lifetime_ms: lifetime.as_millis() as u64,
        flags,
        custody: params.custody,
    })
}

/// The next chunk of a request body; a body that breaks off, or stalls for longer than
/// `idle`, is the client's error.
pub(super) async fn next_chunk(body: &mut Body, idle: Duration) -> Result<Option<Bytes>, ApiError> {
    use http_body_util::BodyExt;
    loop {
        let Ok(frame) = tokio::time::timeout(idle, body.frame()).await else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the payload stalled: nothing arrived for {} s; nothing was stored", idle.as_secs()),
            ));
        };
        match frame {
            None => return Ok(None),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
            Some(Err(error)) => {
                return Err(ApiError::bad_request(format!("the payload could not be read: {error}")));
            }
        }
    }
}

/// A large payload of unknown length: held in an unnamed file in the spool directory (gone
/// with the process, whatever happens) until its length is known, then streamed into the
/// store as a bundle.
async fn send_spooled<S: Store>(
    state: &ApiState<S>,
    request: SendRequest,
    head: Vec<u8>,
    body: &mut Body,
) -> Result<(StoreId, crate::bundle::BundleId, u64), ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
    let dir = &state.config.spool_dir;
    let spool_error = |e: std::io::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("spooling in {} failed: {e}", dir.display()))
    };
    let max = state.config.max_payload;
    let file = tempfile::tempfile_in(dir).map_err(spool_error)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut length = head.len() as u64;
    // The spooled bytes count against the store's quota as they grow: a payload that would not
    // fit is refused before it fills the disk.
    let mut room = state.agent.store().reserve(length)?;
    file.write_all(&head).await.map_err(spool_error)?;
    drop(head);
    while let Some(chunk) = next_chunk(body, state.config.body_idle_timeout).await? {
        length += chunk.len() as u64;
        if length > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the payload is larger than the limit of {max} bytes ([api] max_payload)"),
            ));
        }
        room.grow(chunk.len() as u64)?;
        file.write_all(&chunk).await.map_err(spool_error)?;
    }
    // The bundle's own insert reserves its whole length from here on.
    drop(room);
    file.flush().await.map_err(spool_error)?;
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(spool_error)?;
    let mut pending = state.agent.begin_send(request, length).await?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buffer).await.map_err(spool_error)?;
        if n == 0 {
            break;
        }
        pending.write(&buffer[..n]).await?;
    }
    let (id, bundle_id) = pending.commit().await?;
    Ok((id, bundle_id, length))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveParams {
    endpoint: String,
    /// Seconds to wait for a bundle when none is there.
    wait: Option<String>,
}

async fn receive<S: Store>(
    State(state): Shared<S>,
    params: Result<Query<ReceiveParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let endpoint = parse_eid("endpoint", &params.endpoint)?;
    let wait = match &params.wait {
        Some(text) => crate::time::parse_duration(text).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Duration::ZERO,
    };
    if wait > state.config.max_wait {
        return Err(ApiError::bad_request(format!(
            "wait {} s is longer than the limit of {} s: ask again instead",
            wait.as_secs(),
            state.config.max_wait.as_secs()
        )));
    }
    let agent = &state.agent;
    // Watch first, then look: a bundle arriving in between wakes the watcher.
    let mut watcher = agent.watch(endpoint.clone()).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some((id, header, content)) = agent.oldest_waiting(&endpoint).await? {
            let primary = &header.primary;
            let mut headers = HeaderMap::new();
            let mut put = |name: &'static str, value: String| {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            };
            put(headers::STORE_ID, id.to_string());
            put(headers::BUNDLE_ID, header.id().to_string());
            put(headers::SOURCE, primary.source.to_string());
            put(headers::DESTINATION, primary.destination.to_string());
            put(headers::CREATION_TIME, primary.creation.time.to_string());
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            let body = match content {
                PayloadContent::Memory(bytes) => Body::from(bytes),
                PayloadContent::File(reader) => {
                    Body::new(ReaderBody::new(reader, header.payload.data_length))
                }
            };
            return Ok((StatusCode::OK, headers, body).into_response());
        }
        match tokio::time::timeout_at(deadline, watcher.arrived()).await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckParams {
    endpoint: String,
    id: StoreId,
}

async fn ack<S: Store>(
    State(state): Shared<S>,
    params: Result<Query<AckParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let endpoint = parse_eid("endpoint", &params.endpoint)?;
    if state.agent.acknowledge_stored(&endpoint, params.id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no bundle {} waits for {endpoint}: it was acknowledged already, or never came",
                params.id
            ),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointParams {
    endpoint: String,
}

async fn list_registrations<S: Store>(State(state): Shared<S>) -> Result<Response, ApiError> {
    let list = state.agent.registrations().await?;
    Ok(axum::Json(
        list.iter()
            .map(|(eid, connected)| json!({ "endpoint": eid.to_string(), "connected": connected }))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

async fn register<S: Store>(
    State(state): Shared<S>,
    params: Result<Query<EndpointParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let endpoint = parse_eid("endpoint", &query(params)?.endpoint)?;
    drop(state.agent.watch(endpoint.clone()).await?);
    Ok((StatusCode::CREATED, axum::Json(json!({ "endpoint": endpoint.to_string() }))).into_response())
}

async fn unregister<S: Store>(
    State(state): Shared<S>,
    params: Result<Query<EndpointParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let endpoint = parse_eid("endpoint", &query(params)?.endpoint)?;
    state.agent.unregister(&endpoint).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    after: Option<StoreId>,
    limit: Option<usize>,
}

/// Most bundles one list request returns.
const MAX_LIST: usize = 1000;

async fn list_bundles<S: Store>(
    State(state): Shared<S>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request(format!("limit {limit} is out of range: use 1 to {MAX_LIST}")));
    }
    let agent = &state.agent;
    let page = agent.store().list(params.after.unwrap_or(0), limit).await?;
    let next = if page.len() == limit { page.last().map(|m| m.id) } else { None };
    let mut bundles = Vec::with_capacity(page.len());
    for meta in &page {
        let mut row = json::stored_bundle(meta, agent.why_waiting(meta));
        // Whether this node holds it as custodian, for the list (a page of point reads).
        let custodial = agent.store().custody_info(meta.id).await?.is_some_and(|c| c.custodial);
        if let Some(map) = row.as_object_mut() {
            map.insert("custodial".into(), json!(custodial));
        }
        bundles.push(row);
    }
    Ok(axum::Json(json!({ "bundles": bundles, "next_after": next })).into_response())
}

fn parse_store_id(text: &str) -> Result<StoreId, ApiError> {
    text.parse::<StoreId>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request(format!("{text:?} is not a store id: use the id `dtn bundles list` shows"))
    })
}

async fn show_bundle<S: Store>(
    State(state): Shared<S>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_store_id(&id)?;
    let agent = &state.agent;
    let Some(meta) = agent.store().get(id).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no bundle with store id {id}")));
    };
    let mut body = json::stored_bundle(&meta, agent.why_waiting(&meta));
    let custody = agent.store().custody_info(id).await?;
    if let (Some(custody), Some(map)) = (custody, body.as_object_mut()) {
        map.insert("custody".into(), json::custody_info(&custody, agent.node_id(), &meta.state));
    }
    if let (Some(bundle), Some(map)) = (agent.load(id).await, body.as_object_mut()) {
        map.insert("bundle".into(), json::bundle(&bundle));
    }
    Ok(axum::Json(body).into_response())
}

async fn delete_bundle<S: Store>(
    State(state): Shared<S>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_store_id(&id)?;
    if state.agent.delete_on_request(id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, format!("no bundle with store id {id}")))
    }
}
