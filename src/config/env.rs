//! Reading the environment: every variable of [`SETTINGS`], checked by the
//! setting's kind.
//!
//! Variables are read through the caller's lookup function, so tests never
//! touch the process environment. An empty value counts as unset
//! (supervisors often blank a variable to unset it), except for a list,
//! where it means "none" (`MERKLE_KV_ANTI_ENTROPY_PEER_LIST=` clears the
//! file's peers). Of a setting's several variables the first one set wins
//! (`MERKLE_KV_MQTT_CLIENT_ID` over the 1.x name `CLIENT_ID`).

use super::error::ConfigError;
use super::resolve::Layers;
use super::settings::SETTINGS;
use super::values::{Refused, Val, from_text};

/// Applies every variable that is set to `layers`.
pub fn apply(layers: &mut Layers, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    for (i, setting) in SETTINGS.iter().enumerate() {
        for var in setting.env {
            let Some(raw) = env(var) else { continue };
            if raw.is_empty() && !setting.kind.is_list() {
                continue;
            }
            let value = from_text(setting.kind, &raw).map_err(|r| match r {
                Refused::Expected(message) => ConfigError::Env {
                    var: var.to_string(),
                    message,
                },
                Refused::Error(e) => e,
            })?;
            layers.set(i, value);
            // A broker given in the environment turns replication on, as
            // the presence of [mqtt] does in the nested layout.
            if setting.name == "mqtt.broker_address" {
                layers.set_named("replication.enabled", Val::Bool(true));
            }
            break;
        }
    }
    Ok(())
}
