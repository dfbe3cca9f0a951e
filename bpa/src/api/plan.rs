//! The contact plan over the API: `GET /v1/route` (where a bundle would go, and why),
//! `GET /v1/contacts` (the plan's contacts) and `POST /v1/plan` (replace the plan; what waits
//! is routed again).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState, parse_eid, query};
use crate::agent::core::routing::plan_endpoint;
use crate::store::Store;

/// The largest plan `POST /v1/plan` takes by default ([`super::ApiConfig::max_plan`]): a million
/// contacts is ~40–60 MB of text, and a plan takes several times its text while it is parsed.
pub const DEFAULT_MAX_PLAN_BYTES: u64 = 64 * 1024 * 1024;

/// Contacts `GET /v1/contacts` lists at most.
const MAX_CONTACTS: usize = 1_000_000;

fn no_plan() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "this node has no contact plan: set [routing] plan in its configuration, or `dtn plan load FILE`",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteParams {
    to: String,
    size: Option<u64>,
    lifetime_ms: Option<u64>,
    lifetime: Option<String>,
    at: Option<String>,
}

pub(super) async fn route<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    params: Result<Query<RouteParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let destination = match parse_eid("to", &params.to) {
        Ok(eid) => eid,
        // A plan node's name stands for its node ID.
        Err(error) => plan_endpoint(&params.to).ok_or(error)?,
    };
    let agent = &state.agent;
    let router = agent.contact_plan().ok_or_else(no_plan)?;
    let reference = router.graph().plan().reference;
    let lifetime_ms = match (&params.lifetime, params.lifetime_ms) {
        (Some(text), _) => crate::time::parse_duration(text)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(|e| ApiError::bad_request(format!("lifetime {text:?}: {e}")))?,
        (None, Some(ms)) => ms,
        (None, None) => u64::try_from(state.config.default_lifetime.as_millis()).unwrap_or(u64::MAX),
    };
    let at = match &params.at {
        None => None,
        Some(text) => {
            Some(plan_time(text, reference).map_err(|e| ApiError::bad_request(format!("at: {e}")))?)
        }
    };
    let report = agent
        .explain_route(&destination, params.size.unwrap_or(1000), lifetime_ms, at)
        .ok_or_else(no_plan)?;
    Ok(axum::Json(report).into_response())
}

/// A time asked about: seconds (`+60` or `60`) after the plan's reference time, or UTC
/// `yyyy/mm/dd-hh:mm:ss`, as DTN ms.
pub fn plan_time(text: &str, reference: u64) -> Result<u64, String> {
    if let Ok(seconds) = text.trim_start_matches('+').parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Ok(reference.saturating_add((seconds * 1000.0).round() as u64));
    }
    routing::ion::time(text, reference)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ContactsParams {
    limit: Option<usize>,
}

pub(super) async fn contacts<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    params: Result<Query<ContactsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = query(params)?.limit.unwrap_or(10_000);
    if limit == 0 || limit > MAX_CONTACTS {
        return Err(ApiError::bad_request(format!("limit {limit} is out of range: use 1 to {MAX_CONTACTS}")));
    }
    let router = state.agent.contact_plan().ok_or_else(no_plan)?;
    let now = state.agent.now();
    let shown = |name: &str| plan_endpoint(name).map_or_else(|| name.to_string(), |e| e.to_string());
    let table = routing::explain::contact_table(&router.graph(), now, limit, &shown);
    Ok(axum::Json(table).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanParams {
    format: Option<String>,
    name: Option<String>,
}

pub(super) async fn load<S: Store>(
    State(state): State<Arc<ApiState<S>>>,
    params: Result<Query<PlanParams>, QueryRejection>,
    request_headers: axum::http::HeaderMap,
    mut body: axum::body::Body,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let max = state.config.max_plan;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the plan is larger than the {max} bytes this node takes ([api] max_plan): raise the limit, \
                 or give the node a smaller plan (fewer contacts, a shorter horizon)"
            ),
        )
    };
    // Refused from its Content-Length before a byte is read; a body without one is counted.
    let declared = request_headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body_bytes = Vec::with_capacity(declared.map_or(0, |n| usize::try_from(n).unwrap_or(0)));
    while let Some(chunk) = super::next_chunk(&mut body, state.config.body_idle_timeout).await? {
        if (body_bytes.len() + chunk.len()) as u64 > max {
            return Err(too_large());
        }
        body_bytes.extend_from_slice(&chunk);
    }
    let body = Bytes::from(body_bytes);
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the plan is not UTF-8 text: {e}")))?;
    let format = match &params.format {
        Some(name) => name.parse::<routing::PlanFormat>().map_err(ApiError::bad_request)?,
        None => routing::PlanFormat::detect(params.name.as_deref().unwrap_or(""), text),
    };
    let reference = state.agent.now();
    let plan = format.parse(text, reference).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let router = state.agent.set_contact_plan(plan);
    let summary = routing::explain::summary(&router.graph());
    tracing::info!(%format, nodes = summary.nodes, contacts = summary.contacts, "contact plan replaced over the API");
    Ok(axum::Json(json!({ "format": format.to_string(), "summary": summary, "reference": reference }))
        .into_response())
}
