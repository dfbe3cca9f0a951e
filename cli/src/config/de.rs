//! Deserializers for the configuration's values: endpoint IDs and node IDs, EID patterns,
//! durations ("30s", "5m"), rates, plan formats and serial framings, each refused with a
//! message that says what was expected.

use std::time::Duration;

use bpa::Eid;
use bpa::agent::EidPattern;
use serde::Deserialize;

pub(super) fn node_eids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Eid>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|text| {
            let eid: Eid = text.parse().map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))?;
            if eid != eid.node_id() {
                return Err(serde::de::Error::custom(format!(
                    "{text} is not a node ID: use ipn:N.0 or dtn://name/ (here: {})",
                    eid.node_id()
                )));
            }
            Ok(eid)
        })
        .collect()
}

pub(super) fn serial_framing<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<convergence_layers::serial::Framing>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

pub(super) fn rate_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Number(u64),
        Text(String),
    }
    match Rate::deserialize(d)? {
        Rate::Number(n) => Ok(Some(n)),
        Rate::Text(text) => routing::native::parse_rate(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

pub(super) fn plan_format<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<routing::PlanFormat>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

pub(super) fn eid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Eid, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e| serde::de::Error::custom(format!("{text:?} is not an endpoint ID: {e}")))
}

pub(super) fn eid_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Eid>, D::Error> {
    eid(d).map(Some)
}

/// A peer's node ID: `ipn:N.0` or `dtn://name/`, not an application endpoint.
pub(super) fn node_eid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Eid, D::Error> {
    let eid = eid(d)?;
    if eid.is_null() || eid.node_id() != eid {
        return Err(serde::de::Error::custom(format!(
            "{eid} is not a node ID: use ipn:N.0 or dtn://name/ (here: {})",
            if eid.is_null() { "none".to_string() } else { eid.node_id().to_string() }
        )));
    }
    Ok(eid)
}

pub(super) fn node_eid_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Eid>, D::Error> {
    node_eid(d).map(Some)
}

pub(super) fn pattern<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EidPattern, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

pub(super) fn patterns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<EidPattern>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts.iter().map(|text| text.parse().map_err(serde::de::Error::custom)).collect()
}

pub(super) fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    bpa::time::parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}
