//! Sections of the test agents' configuration files that every crate's tests write the
//! same way (included by `#[path]`): the `[central]` link with its registry key, and the
//! closing `[store]`, `[policy]` and `[console]` sections.
#![allow(dead_code)]

use std::path::Path;

/// Gate `gate` at PORT-A with lane L1 (a presence loop) and its three routes, the last
/// one to `inspect`: the head of the test configurations.
pub fn gate_with_lane_l1(gate: &str, inspect: &str) -> String {
    format!(
        "\n[gate]\nid = {gate:?}\nport = \"PORT-A\"\n\n[[lanes]]\nid = \"L1\"\n[lanes.routes]\n\
         fast = \"Lane 1 priority\"\nstandard = \"Lane 1 standard\"\ninspect = {inspect:?}\n"
    )
}

/// A `[central]` section for `url` with agent `token`, `settings` (lines such as
/// `poll_wait = "1s"`) and one `[[central.registry_keys]]` entry.
pub fn central(url: &str, token: &str, settings: &str, key_id: &str, public_key: &str) -> String {
    format!(
        "\n[central]\nurl = {url:?}\ntoken = {token:?}\n{settings}\n\
         [[central.registry_keys]]\nkey_id = {key_id:?}\npublic_key = {public_key:?}\n"
    )
}

/// `[store]` at `dir/agent.redb`, `[policy]` with `random_key` and `[console]` on `bind`.
pub fn store_policy_console(dir: &Path, random_key: &str, bind: &str) -> String {
    format!(
        "\n[store]\npath = {:?}\n\n[policy]\nrandom_key = {random_key:?}\n\n[console]\nbind = {bind:?}\n",
        dir.join("agent.redb").to_string_lossy()
    )
}
