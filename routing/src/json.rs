//! What the JSON plan forms (dtn-tvg-util's, HDTN's) share: their error and the JSON reader.

use serde_json::Value;

/// Why a JSON contact plan was refused.
/// Why a JSON contact plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPlanError {
    /// Not JSON at all.
    #[error("line {line}, column {column}: not JSON: {problem}")]
    Json {
        /// The line, from 1.
        line: usize,
        /// The column, from 1.
        column: usize,
        /// What the JSON reader found wrong.
        problem: String,
    },
    /// JSON, but a value is missing or of the wrong kind; `path` says which (`contacts[3].owlt`).
    #[error("{path}: {problem}")]
    Shape {
        /// Where in the document.
        path: String,
        /// What is missing or wrong there.
        problem: String,
    },
}

/// The JSON value of `text`, or where it stops being JSON.
pub(crate) fn parse_json(text: &str) -> Result<Value, JsonPlanError> {
    serde_json::from_str(text).map_err(|e| JsonPlanError::Json {
        line: e.line(),
        column: e.column(),
        problem: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
    })
}
