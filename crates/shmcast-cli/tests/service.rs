//! `shmcast service`: the Windows service, under Wine's own service
//! manager (services.exe and sc.exe): install, start, frames flowing, stop
//! handled cleanly, the log file, uninstall; and `service run` from a
//! console, which serves in the foreground.
#![cfg(windows)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{shmcast, unique};

fn sc(args: &[&str]) -> std::process::Output {
    Command::new("sc").args(args).output().expect("sc.exe")
}

fn channel(name: &str) -> Option<serde_json::Value> {
    let out = shmcast().args(["info", name, "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v["channel"].clone())
}

fn until(name: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !channel(name).is_some_and(|c| ok(&c)) {
        assert!(
            Instant::now() < deadline,
            "{name}: never {what}: {:?}",
            channel(name)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[[channel]]\nname = \"{name}\"\nsource = \"pattern\"\nwidth = 64\nheight = 48\nformat = \"gray8\"\nfps = 20\n"),
    )
    .unwrap();
    path
}

#[test]
fn the_service_installs_starts_publishes_stops_cleanly_and_uninstalls() {
    let name = unique("svc");
    let config = config(&name);
    // A service left by an earlier failed run would be in the way.
    let _ = shmcast().args(["service", "uninstall"]).output();

    let out = shmcast()
        .args(["service", "install", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(sc(&["start", "shmcast"]).status.success());
    until(&name, "publishing from the service", |c| {
        c["latest_frame"].as_u64() > Some(10) && c["health"] == "live"
    });

    // A stop request ends it cleanly: the publisher lets go of the channel
    // (and, nobody else holding it, the section goes with its last handle).
    assert!(sc(&["stop", "shmcast"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while channel(&name).is_some_and(|c| c["health"] != "gone") {
        assert!(
            Instant::now() < deadline,
            "the stopped service still publishes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut log = config.clone().into_os_string();
    log.push(".log");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("service started"), "{log}");
    assert!(
        log.contains("asks us to stop") && log.contains("service stopped"),
        "{log}"
    );

    let out = shmcast().args(["service", "uninstall"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !sc(&["query", "shmcast"]).status.success(),
        "the service is still registered"
    );
    let _ = std::fs::remove_file(config);
}

#[test]
fn service_run_from_a_console_serves_in_the_foreground() {
    let name = unique("svc-console");
    let config = config(&name);
    let mut run = shmcast()
        .args(["service", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    until(&name, "publishing", |c| {
        c["latest_frame"].as_u64() > Some(5)
    });
    run.kill().unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("serving in the foreground"));
    let _ = std::fs::remove_file(config);
}

#[test]
fn install_refuses_a_config_that_does_not_parse() {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("svc-bad")));
    std::fs::write(&path, "[[channel]]\nname = \"x\"\n").unwrap();
    let out = shmcast()
        .args(["service", "install", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing field"));
    let _ = std::fs::remove_file(path);
}
