//! Every Envoy config in `envoy/`, rendered as the scripts render it, passes
//! `envoy --mode validate` (the hubgate one with the real built .wasm).

use hubgate_e2e::envoy::{render, validate};
use hubgate_e2e::paths;
use serde_json::json;

/// What every deployment gives Envoy: the internal token in its environment.
const TOKEN_ENV: &[(&str, &str)] = &[("HUBGATE_INTERNAL_TOKEN", "validate-only-token")];

/// Values for every template in `envoy/`, with `plugin` as the filter's
/// configuration.
fn vars(plugin: serde_json::Value) -> Vec<(&'static str, String)> {
    let wasm = paths::wasm().expect("the built filter is required");
    let empty_wasm = paths::empty_wasm().expect("the built empty filter is required");
    vec![
        ("LISTEN_ADDRESS", "127.0.0.1".to_string()),
        ("LISTEN_PORT", "10000".to_string()),
        ("ADMIN_SOCKET", "/tmp/hubgate-validate.sock".to_string()),
        ("UPSTREAM_PORT", "8080".to_string()),
        ("CP_HOST", "127.0.0.1".to_string()),
        ("CP_PORT", "8082".to_string()),
        ("WASM_PATH", wasm.display().to_string()),
        ("EMPTY_WASM_PATH", empty_wasm.display().to_string()),
        ("UPSTREAM_CA", hubgate_e2e::SYSTEM_CA_BUNDLE.to_string()),
        ("PLUGIN_CONFIG", plugin.to_string()),
    ]
}

#[test]
fn every_envoy_config_passes_validate() {
    let envoy = paths::envoy().expect("Envoy is required");
    let out_dir = paths::fresh_log_dir("envoy_configs").unwrap();
    let vars = vars(json!({"poll_interval_ms": 300}));
    let mut entries: Vec<_> = std::fs::read_dir(paths::workspace_root().join("envoy"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".tmpl") || name.ends_with(".yaml") || name.ends_with(".yml")
        })
        .collect();
    entries.sort();
    let names: Vec<String> = entries.iter().map(|p| p.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert!(names.contains(&"hubgate.yaml.tmpl".to_string()), "{names:?}");
    assert!(names.contains(&"plain.yaml.tmpl".to_string()), "{names:?}");
    assert!(names.contains(&"empty-filter.yaml.tmpl".to_string()), "{names:?}");

    let mut failures = Vec::new();
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let rendered = match render(&text, &vars) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e:#}"));
                continue;
            }
        };
        let out = out_dir.join(format!("{}.yaml", name.trim_end_matches(".tmpl").trim_end_matches(".yaml")));
        std::fs::write(&out, rendered).unwrap();
        if let Err(e) = validate(&envoy, &out, TOKEN_ENV) {
            failures.push(format!("{name}: {e:#}"));
        }
    }
    assert!(failures.is_empty(), "invalid Envoy configs:\n{}", failures.join("\n"));
}

/// Validation really loads the filter: a plugin configuration it must reject
/// (unknown field) fails `envoy --mode validate`.
#[test]
fn validate_rejects_an_unknown_plugin_config_field() {
    let envoy = paths::envoy().expect("Envoy is required");
    let out_dir = paths::fresh_log_dir("envoy_configs_negative").unwrap();
    let text = std::fs::read_to_string(paths::envoy_template("hubgate.yaml.tmpl")).unwrap();
    let vars = vars(json!({"pol_interval_ms": 300}));
    let out = out_dir.join("hubgate-bad-plugin-config.yaml");
    std::fs::write(&out, render(&text, &vars).unwrap()).unwrap();
    let err = validate(&envoy, &out, TOKEN_ENV).expect_err("an unknown plugin config field must be rejected");
    assert!(err.to_string().contains("hubgate"), "{err:#}");
}

/// The internal token comes from Envoy's environment, never from the
/// plugin configuration (which `config_dump` shows): without the variable
/// the filter refuses to start, and a token in the configuration is an
/// unknown field.
#[test]
fn the_internal_token_comes_only_from_the_environment() {
    let envoy = paths::envoy().expect("Envoy is required");
    let out_dir = paths::fresh_log_dir("envoy_configs_token").unwrap();
    let text = std::fs::read_to_string(paths::envoy_template("hubgate.yaml.tmpl")).unwrap();
    let render_with = |plugin: serde_json::Value, name: &str| {
        let vars = vars(plugin);
        let out = out_dir.join(name);
        std::fs::write(&out, render(&text, &vars).unwrap()).unwrap();
        out
    };
    let good = render_with(json!({}), "no-token-in-config.yaml");
    let err = validate(&envoy, &good, &[]).expect_err("the filter must not start without its token");
    assert!(err.to_string().contains("HUBGATE_INTERNAL_TOKEN"), "{err:#}");
    validate(&envoy, &good, TOKEN_ENV).unwrap();

    let leaked = render_with(json!({"internal_token": "in-the-config"}), "token-in-config.yaml");
    let err = validate(&envoy, &leaked, TOKEN_ENV).expect_err("a token in the plugin config must be refused");
    assert!(err.to_string().contains("internal_token"), "{err:#}");
}

/// The compose deployment renders the same template with its own values
/// (see `deploy/compose/compose.yaml`); that rendering validates too.
#[test]
fn compose_envoy_config_passes_validate() {
    let envoy = paths::envoy().expect("Envoy is required");
    let compose = std::fs::read_to_string(paths::workspace_root().join("deploy/compose/compose.yaml")).unwrap();
    assert!(compose.contains("../../envoy/hubgate.yaml.tmpl:/etc/hubgate/hubgate.yaml.tmpl"), "{compose}");
    let text = std::fs::read_to_string(paths::envoy_template("hubgate.yaml.tmpl")).unwrap();
    let mut vars = vars(json!({"control_plane_authority": "control-plane"}));
    vars.retain(|(name, _)| !matches!(*name, "UPSTREAM_PORT" | "EMPTY_WASM_PATH"));
    for (name, value) in vars.iter_mut() {
        match *name {
            "LISTEN_ADDRESS" => *value = "0.0.0.0".to_string(),
            "CP_HOST" => *value = "control-plane".to_string(),
            _ => {}
        }
    }
    for (name, _) in &vars {
        assert!(compose.contains(&format!("{{{{{name}}}}}")), "compose.yaml does not fill {{{{{name}}}}}");
    }
    let out = paths::fresh_log_dir("envoy_configs_compose").unwrap().join("compose-envoy.yaml");
    std::fs::write(&out, render(&text, &vars).unwrap()).unwrap();
    validate(&envoy, &out, TOKEN_ENV).unwrap();
}
