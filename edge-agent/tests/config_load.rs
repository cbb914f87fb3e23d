//! Loading and validating the agent configuration.

use std::time::Duration;

use edge_agent::config::{Config, ConfigError, DeviceKind, MqttKind};
use protocol::operator::Programme;
use protocol::schema::{LaneId, PartyRole};

const MINIMAL: &str = r#"
[gate]
id = "G1"
port = "PORT-A"

[[lanes]]
id = "L1"
[lanes.routes]
fast = "fast"
standard = "standard"
inspect = "inspect"

[policy]
random_key = "0123456789abcdef0123"
"#;

fn invalid(text: &str) -> (usize, String, String) {
    match Config::from_toml_str(text, "agent.toml") {
        Err(e @ ConfigError::Invalid { .. }) => {
            let shown = e.to_string();
            let ConfigError::Invalid { line, key, .. } = e else {
                unreachable!("matched above")
            };
            (line, key, shown)
        }
        Err(other) => panic!("expected an Invalid error, got {other}"),
        Ok(_) => panic!("expected an error for:\n{text}"),
    }
}

/// [`invalid`] for `MINIMAL` with `lines` added to lane L1's table.
fn invalid_in_lane(lines: &str) -> (usize, String, String) {
    invalid(&MINIMAL.replace("id = \"L1\"", &format!("id = \"L1\"\n{lines}")))
}

/// [`invalid`] for `MINIMAL` followed by `tables`.
fn invalid_appended(tables: &str) -> (usize, String, String) {
    invalid(&format!("{MINIMAL}\n{tables}"))
}

/// Fails unless `MINIMAL` followed by `tables` is refused at `key` on `line`, saying
/// `says`.
fn appended_refused_at(tables: &str, key: &str, line: usize, says: &str) {
    let (at, refused_key, shown) = invalid_appended(tables);
    assert_eq!((at, refused_key.as_str()), (line, key), "{shown}");
    assert!(shown.contains(says), "{shown}");
}

#[test]
fn example_config_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    // As shipped, the example still carries its placeholders, and is refused for them.
    let refused = Config::load(&path).expect_err("the placeholders must be filled first");
    assert!(refused.to_string().contains("central.url"), "{refused}");
    // Filled as its comments say, it loads.
    let text = std::fs::read_to_string(&path)
        .expect("example")
        .replace(
            "# ca_cert = \"/etc/aeogate/central-ca.pem\"",
            "ca_cert = \"/etc/aeogate/central-ca.pem\"",
        )
        .replace(
            "random_key = \"replace-with-a-long-random-secret\"",
            "random_key = \"9f2c41d7a8e05b3361c4e2d9a7f0b8c3\"",
        );
    let cfg = Config::from_toml_str(&text, "agent.example.toml")
        .expect("the example configuration must load once filled");
    assert_eq!(cfg.gate.id.as_str(), "PORT1-G1");
    assert_eq!(cfg.lanes.len(), 2);
    assert!(!cfg.lanes[1].presence_loop);
    assert_eq!(cfg.lanes[1].quiet_close, Duration::from_secs(8));
    assert!(matches!(
        cfg.devices[1].kind,
        DeviceKind::UhfModule { baud: 115_200, .. }
    ));
    let mqtt = cfg.mqtt.as_ref().expect("mqtt");
    assert_eq!(mqtt.topics[1].kind, MqttKind::ESeal);
    assert_eq!(
        mqtt.topics[2].format,
        edge_agent::config::PayloadFormat::Impinj
    );
    assert_eq!(cfg.llrp.len(), 1);
    assert_eq!(cfg.llrp[0].antennas.len(), 4);
    assert_eq!(cfg.llrp[0].lanes().len(), 2);
    let central = cfg.central.as_ref().expect("central");
    assert_eq!(central.registry_keys.len(), 1);
    assert_eq!(cfg.policy.staleness_bound, Duration::from_secs(86_400));
    assert!(cfg.lane(&LaneId::parse("L2").expect("id")).is_some());
    assert!(cfg.lane(&LaneId::parse("L9").expect("id")).is_none());
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let cfg = Config::from_toml_str(MINIMAL, "agent.toml").expect("minimal config");
    let lane = &cfg.lanes[0];
    assert_eq!(lane.name, "L1");
    assert!(lane.presence_loop);
    assert_eq!(lane.transaction_timeout, Duration::from_secs(120));
    assert_eq!(lane.quiet_close, Duration::from_secs(10));
    assert_eq!(lane.pre_open_grace, Duration::from_secs(5));
    assert_eq!(lane.departure_grace, Duration::from_secs(1));
    assert_eq!(cfg.gate.name, "G1");
    assert!(cfg.mqtt.is_none() && cfg.central.is_none());
    assert_eq!(cfg.store.max_journal_bytes, 1 << 30);
    assert_eq!(
        cfg.store.replica_cache_bytes,
        edge_agent::store::DEFAULT_REPLICA_CACHE_BYTES
    );
    assert_eq!(
        cfg.policy.required_roles,
        vec![PartyRole::Importer, PartyRole::Carrier]
    );
    assert_eq!(cfg.policy.home_programmes, vec![Programme::EuAeo]);
    assert!((cfg.policy.random_rate_aeo - 0.005).abs() < f64::EPSILON);
    assert!((cfg.policy.random_rate_other - 0.03).abs() < f64::EPSILON);
    assert_eq!(cfg.console.bind.to_string(), "127.0.0.1:8080");
}

#[test]
fn mqtt_prefix_defaults_to_the_gate() {
    let text = format!("{MINIMAL}\n[mqtt]\nhost = \"broker\"\n");
    let cfg = Config::from_toml_str(&text, "agent.toml").expect("config");
    let mqtt = cfg.mqtt.expect("mqtt");
    assert_eq!(mqtt.lane_topic_prefix, "aeogate/G1/lanes");
    assert_eq!(mqtt.client_id, "aeogate-agent-G1");
    assert_eq!(mqtt.port, 1883);
}

#[test]
fn mqtt_lane_wills_are_on_unless_turned_off() {
    let on = Config::from_toml_str(&mqtt(""), "agent.toml").expect("config");
    assert!(on.mqtt.expect("mqtt").lane_wills);
    let off = Config::from_toml_str(&mqtt("lane_wills = false\n"), "agent.toml").expect("config");
    assert!(!off.mqtt.expect("mqtt").lane_wills);
    let err = Config::from_toml_str(&mqtt("lane_wills = \"yes\"\n"), "agent.toml")
        .expect_err("not a bool")
        .to_string();
    assert!(err.contains("lane_wills") && err.contains("line"), "{err}");
}

#[test]
fn empty_route_names_key_and_line() {
    let (line, key, shown) = invalid_appended(
        "[[lanes]]\nid = \"L2\"\n[lanes.routes]\nfast = \"  \"\nstandard = \"s\"\ninspect = \"i\"\n",
    );
    assert_eq!(key, "lanes[1].routes.fast");
    assert_eq!(line, 19);
    assert_eq!(
        shown,
        "agent.toml line 19: lanes[1].routes.fast: must not be empty"
    );
}

#[test]
fn unknown_key_is_refused_with_its_line() {
    let text = MINIMAL.replace("port = \"PORT-A\"", "port = \"PORT-A\"\nportt = 3");
    let (line, key, shown) = invalid(&text);
    assert_eq!(line, 5, "{shown}");
    assert_eq!(key, "gate.portt", "{shown}");
    assert!(shown.contains("unknown field"), "{shown}");
}

#[test]
fn wrong_type_is_refused_with_its_line() {
    let (line, key, shown) = invalid_in_lane("presence_loop = \"yes\"");
    assert_eq!(line, 8, "{shown}");
    assert_eq!(key, "lanes[0].presence_loop", "{shown}");
}

#[test]
fn bad_duration_is_refused() {
    let (line, key, _) = invalid_in_lane("transaction_timeout = \"soon\"");
    assert_eq!((line, key.as_str()), (8, "lanes[0].transaction_timeout"));
}

#[test]
fn zero_timeout_is_refused() {
    let (line, key, shown) = invalid_in_lane("quiet_close = \"0s\"");
    assert_eq!((line, key.as_str()), (8, "lanes[0].quiet_close"));
    assert!(shown.ends_with("must be longer than zero"));
}

#[test]
fn lane_timings_are_per_lane() {
    let text = MINIMAL.replace(
        "id = \"L1\"",
        "id = \"L1\"\npre_open_grace = \"0s\"\ndeparture_grace = \"2500ms\"",
    );
    let cfg = Config::from_toml_str(&text, "agent.toml").expect("config");
    assert_eq!(cfg.lanes[0].pre_open_grace, Duration::ZERO);
    assert_eq!(cfg.lanes[0].departure_grace, Duration::from_millis(2500));
}

#[test]
fn a_zero_departure_grace_is_refused_with_its_line() {
    let (line, key, shown) = invalid_in_lane("departure_grace = \"0s\"");
    assert_eq!((line, key.as_str()), (8, "lanes[0].departure_grace"));
    assert!(shown.contains("longer than zero"), "{shown}");
}

#[test]
fn duplicate_lane_ids_are_refused() {
    let lane =
        "[[lanes]]\nid = \"L1\"\n[lanes.routes]\nfast = \"a\"\nstandard = \"b\"\ninspect = \"c\"\n";
    appended_refused_at(lane, "lanes[1].id", 17, "duplicate lane id");
}

#[test]
fn device_on_unknown_lane_is_refused() {
    let device =
        "[[devices]]\nname = \"b\"\nlane = \"L7\"\nkind = \"lane_board\"\npath = \"/dev/ttyS0\"\n";
    appended_refused_at(
        device,
        "devices[0].lane",
        18,
        "names lane \"L7\", which no [[lanes]] entry defines",
    );
}

#[test]
fn topic_on_unknown_lane_is_refused() {
    let (_, key, _) = invalid_appended(
        "[mqtt]\n[[mqtt.topics]]\nfilter = \"x/#\"\nlane = \"L3\"\nkind = \"ocr\"\n",
    );
    assert_eq!(key, "mqtt.topics[0].lane");
}

#[test]
fn random_rates_must_be_probabilities_and_aeo_lower() {
    for (rate, ok) in [
        ("0.0", false),
        ("1.0", false),
        ("-0.1", false),
        ("0.01", true),
    ] {
        let text = MINIMAL.replace(
            "[policy]\n",
            &format!("[policy]\nrandom_rate_aeo = {rate}\n"),
        );
        let res = Config::from_toml_str(&text, "agent.toml");
        assert_eq!(res.is_ok(), ok, "rate {rate}");
    }
    let text = MINIMAL.replace(
        "[policy]\n",
        "[policy]\nrandom_rate_aeo = 0.2\nrandom_rate_other = 0.1\n",
    );
    let (_, key, _) = invalid(&text);
    assert_eq!(key, "policy.random_rate_aeo");
}

#[test]
fn short_random_key_is_refused() {
    let text = MINIMAL.replace("0123456789abcdef0123", "short");
    let (_, key, _) = invalid(&text);
    assert_eq!(key, "policy.random_key");
}

#[test]
fn unparseable_bind_is_refused() {
    let (line, key, shown) = invalid_appended("[console]\nbind = \"localhost\"\n");
    assert_eq!(key, "console.bind");
    assert_eq!(line, 17, "{shown}");
}

#[test]
fn unknown_programme_and_role_are_refused() {
    let text = MINIMAL.replace("[policy]\n", "[policy]\nhome_programmes = [\"XX-AEO\"]\n");
    let (_, key, _) = invalid(&text);
    assert!(key.starts_with("policy.home_programmes"), "{key}");
    let text = MINIMAL.replace("[policy]\n", "[policy]\nrequired_roles = [\"PILOT\"]\n");
    let (_, key, _) = invalid(&text);
    assert!(key.starts_with("policy.required_roles"), "{key}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Config::load(std::path::Path::new("/nonexistent/agent.toml")).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/agent.toml"));
}

#[test]
fn central_requires_a_pinned_key_of_64_hex_digits() {
    let (_, key, _) = invalid_appended(
        "[central]\nurl = \"https://c.example\"\ntoken = \"t\"\n[[central.registry_keys]]\nkey_id = \"k\"\npublic_key = \"abcd\"\n",
    );
    assert_eq!(key, "central.registry_keys[0].public_key");
    let (_, key, _) = invalid_appended("[central]\nurl = \"https://c.example\"\ntoken = \"t\"\n");
    assert_eq!(key, "central.registry_keys");
}

#[test]
fn a_staleness_bound_not_longer_than_the_long_poll_is_refused() {
    let key = "0".repeat(64);
    let with = |bound: &str| {
        MINIMAL.replace(
            "[policy]\n",
            &format!(
                "[central]\nurl = \"https://c.example\"\nca_cert = \"ca.pem\"\ntoken = \"t\"\npoll_wait = \"25s\"\n[[central.registry_keys]]\nkey_id = \"k\"\npublic_key = \"{key}\"\n\n[policy]\nstaleness_bound = \"{bound}\"\n"
            ),
        )
    };
    let (_, key_path, shown) = invalid(&with("20s"));
    assert_eq!(key_path, "policy.staleness_bound");
    assert!(shown.contains("central.poll_wait (25s)"), "{shown}");
    assert!(Config::from_toml_str(&with("26s"), "agent.toml").is_ok());
}

#[test]
fn syntax_error_reports_a_line() {
    let text = MINIMAL.replace("port = \"PORT-A\"", "port = \"PORT-A");
    let (line, _, shown) = invalid(&text);
    assert_eq!(line, 4, "{shown}");
}

fn mqtt(keys: &str) -> String {
    format!("{MINIMAL}\n[mqtt]\n{keys}")
}

#[test]
fn mqtt_password_comes_from_a_file_or_the_environment_and_is_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mqtt.password");
    std::fs::write(&file, "s3cret-from-file\n").expect("write");
    let cfg = Config::from_toml_str(
        &mqtt(&format!(
            "username = \"agent\"\npassword_file = \"{}\"\n",
            file.display()
        )),
        "agent.toml",
    )
    .expect("loads");
    let m = cfg.mqtt.expect("mqtt");
    assert_eq!(
        m.password.as_ref().map(|p| p.expose()),
        Some("s3cret-from-file")
    );
    assert!(
        !format!("{m:?}").contains("s3cret"),
        "Debug shows the password"
    );
    assert_eq!(m.availability_topic, "aeogate/G1/availability");

    let (_, key, _) = invalid(&mqtt(
        "username = \"agent\"\npassword_env = \"AEOGATE_TEST_UNSET_VARIABLE_7731\"\n",
    ));
    assert_eq!(key, "mqtt.password_env");
    let (_, key, _) = invalid(&mqtt(&format!(
        "username = \"agent\"\npassword = \"x\"\npassword_file = \"{}\"\n",
        file.display()
    )));
    assert_eq!(key, "mqtt.password_file");
    let (_, key, _) = invalid(&mqtt("password = \"x\"\n"));
    assert_eq!(key, "mqtt.username");
    let (_, key, shown) = invalid(&mqtt(
        "username = \"agent\"\npassword_file = \"/nonexistent/aeogate/mqtt.password\"\n",
    ));
    assert_eq!(key, "mqtt.password_file");
    assert!(shown.contains("line 18"), "{shown}");
}

#[test]
fn mqtt_password_in_clear_to_another_host_is_refused() {
    let (_, key, shown) = invalid(&mqtt(
        "host = \"broker.gate.example\"\nusername = \"agent\"\npassword = \"x\"\n",
    ));
    assert_eq!(key, "mqtt.ca_cert");
    assert!(shown.contains("clear"), "{shown}");
    let (_, key, _) = invalid(&mqtt(
        "host = \"broker.gate.example\"\nca_cert = \"/nonexistent/aeogate/ca.pem\"\n",
    ));
    assert_eq!(key, "mqtt.ca_cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let (_, key, shown) = invalid(&mqtt(&format!("ca_cert = \"{}\"\n", junk.display())));
    assert_eq!(key, "mqtt.ca_cert");
    assert!(shown.contains("no certificate"), "{shown}");
    let (_, key, _) = invalid(&mqtt(&format!(
        "ca_cert = \"{}\"\nclient_cert = \"{}\"\n",
        junk.display(),
        junk.display()
    )));
    assert_eq!(key, "mqtt.client_key");
}

#[test]
fn mqtt_filters_and_topics_must_be_valid() {
    let (_, key, _) = invalid(&mqtt(
        "[[mqtt.topics]]\nfilter = \"readers/#/rfid\"\nlane = \"L1\"\nkind = \"rfid\"\n",
    ));
    assert_eq!(key, "mqtt.topics[0].filter");
    let (_, key, _) = invalid(&mqtt("lane_topic_prefix = \"aeogate/#\"\n"));
    assert_eq!(key, "mqtt.lane_topic_prefix");
    let (_, key, _) = invalid(&mqtt("availability_topic = \"aeogate/+/up\"\n"));
    assert_eq!(key, "mqtt.availability_topic");
}

#[test]
fn replica_cache_bytes_is_read_from_the_store_section() {
    let text = format!("{MINIMAL}\n[store]\nreplica_cache_bytes = 100663296\n");
    let cfg = Config::from_toml_str(&text, "agent.toml").expect("config");
    assert_eq!(cfg.store.replica_cache_bytes, 96 << 20);
}

#[test]
fn a_replica_cache_below_one_mib_is_refused_with_its_line() {
    appended_refused_at(
        "[store]\nreplica_cache_bytes = 4096",
        "store.replica_cache_bytes",
        17,
        "must be between 1048576 (1 MiB)",
    );
}

#[test]
fn a_replica_cache_above_64_gib_is_refused_with_its_line() {
    appended_refused_at(
        "[store]\npath = \"a.redb\"\nreplica_cache_bytes = 1099511627776",
        "store.replica_cache_bytes",
        18,
        "found 1099511627776",
    );
}
