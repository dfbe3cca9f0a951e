//! Any plan form, told apart by the file's name and first character: `.toml` is the native
//! form, JSON with `vertices` is dtn-tvg-util's, other JSON is HDTN's, anything else is ION's
//! `ionrc`.

use std::fmt;
use std::str::FromStr;

use crate::json::JsonPlanError;
use crate::plan::Plan;
use crate::{PlanError, hdtn, ion, native, tvgutil};

/// The forms a contact plan can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// ION's `ionrc` (`a contact`, `a range`).
    Ion,
    /// HDTN's contact plan JSON.
    Hdtn,
    /// dtn-tvg-util's JSON (A-SABR's).
    TvgUtil,
    /// This project's TOML.
    Toml,
}

impl PlanFormat {
    /// The form of a file named `name` holding `text`.
    pub fn detect(name: &str, text: &str) -> PlanFormat {
        if name.ends_with(".toml") {
            return PlanFormat::Toml;
        }
        let json = name.ends_with(".json") || text.trim_start().starts_with('{');
        match (json, text.contains("\"vertices\"")) {
            (true, true) => PlanFormat::TvgUtil,
            (true, false) => PlanFormat::Hdtn,
            (false, _) => PlanFormat::Ion,
        }
    }

    /// Parses `text` in this form, relative times counting from `reference` (DTN ms).
    pub fn parse(self, text: &str, reference: u64) -> Result<Plan, PlanFileError> {
        let format = self;
        match self {
            PlanFormat::Ion => {
                ion::parse(text, reference).map_err(|error| PlanFileError::Text { format, error })
            }
            PlanFormat::Toml => {
                native::parse(text, reference).map_err(|error| PlanFileError::Text { format, error })
            }
            PlanFormat::Hdtn => {
                hdtn::parse(text, reference).map_err(|error| PlanFileError::Json { format, error })
            }
            PlanFormat::TvgUtil => {
                tvgutil::parse(text, reference).map_err(|error| PlanFileError::Json { format, error })
            }
        }
    }
}

impl fmt::Display for PlanFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanFormat::Ion => "ion",
            PlanFormat::Hdtn => "hdtn",
            PlanFormat::TvgUtil => "tvgutil",
            PlanFormat::Toml => "toml",
        })
    }
}

impl FromStr for PlanFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<PlanFormat, String> {
        match text {
            "ion" => Ok(PlanFormat::Ion),
            "hdtn" => Ok(PlanFormat::Hdtn),
            "tvgutil" => Ok(PlanFormat::TvgUtil),
            "toml" => Ok(PlanFormat::Toml),
            other => Err(format!("{other:?} is not a plan format: ion, hdtn, tvgutil or toml")),
        }
    }
}

/// Why a plan file was refused, with the form it was read as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanFileError {
    /// Refused as text (ION's `a contact` / `a range` lines).
    #[error("read as {format}: {error}")]
    Text {
        /// The form it was read as.
        format: PlanFormat,
        /// Why it was refused.
        error: PlanError,
    },
    /// Refused as JSON.
    #[error("read as {format}: {error}")]
    Json {
        /// The form it was read as.
        format: PlanFormat,
        /// Why it was refused.
        error: JsonPlanError,
    },
}

/// Parses a plan file named `name` (its form detected), relative times from `reference`.
pub fn parse(name: &str, text: &str, reference: u64) -> Result<Plan, PlanFileError> {
    PlanFormat::detect(name, text).parse(text, reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_is_told_apart() {
        assert_eq!(PlanFormat::detect("x.toml", "[[contact]]"), PlanFormat::Toml);
        assert_eq!(PlanFormat::detect("x.json", "{\"contacts\": []}"), PlanFormat::Hdtn);
        assert_eq!(PlanFormat::detect("x", " {\"vertices\": {}, \"edges\": []}"), PlanFormat::TvgUtil);
        assert_eq!(PlanFormat::detect("plan.rc", "a contact +0 +1 1 2 3"), PlanFormat::Ion);
        assert_eq!("hdtn".parse::<PlanFormat>(), Ok(PlanFormat::Hdtn));
        assert!("xml".parse::<PlanFormat>().is_err());
        let error = parse("p.json", "{\"contacts\": 3}", 0).expect_err("refused");
        assert_eq!(error.to_string(), "read as hdtn: contacts: missing, or not an array of contacts");
        let error = parse("p.rc", "a contact +0\n", 0).expect_err("refused");
        assert!(error.to_string().starts_with("read as ion: line 1, column"), "{error}");
    }
}
