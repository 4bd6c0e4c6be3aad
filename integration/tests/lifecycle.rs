//! `meshd`'s life cycle and its answers to bad input: configuration errors, a busy port or
//! API socket, SIGTERM and restart, `meshd reset`, secrets kept out of logs and the API,
//! `meshd gen-secret` and the TOML config file.
#![allow(clippy::expect_used)] // helpers of tests fail by panicking, like the tests

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{POLL, full_mesh, wait_established, wait_ping};
use mesh_integration::topology::{BRIDGE, DEFAULT_RANGE, MESHD_PORT};
use mesh_integration::{Host, MeshdOpts, Topology, random_secret, require_root, wait_until};
use mesh_integration::{MESHD_EXIT_BOUND as EXIT_BOUND, describe, text};

/// The TUN device `meshd` creates by default.
const TUN: &str = "meshtun0";
/// Bound of pings after `meshd` (re)starts.
const PING_BOUND: Duration = Duration::from_secs(10);

/// Panics if `host`'s namespace has `mesh0` or `meshtun0`.
fn assert_no_mesh_links(host: &Host, what: &str) {
    let links = host.links().expect("list links");
    for name in [BRIDGE, TUN] {
        assert!(
            !links.iter().any(|l| l == name),
            "{what}: link {name} was left in {}: {links:?}",
            host.netns
        );
    }
}

/// The lines of `ip -4 route show` in `host` for destination `dst`.
fn routes_to(host: &Host, dst: &str) -> Vec<String> {
    host.ip(&["-4", "route", "show"])
        .expect("ip route show")
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(dst))
        .map(str::to_owned)
        .collect()
}

/// `ip -o link show NAME`'s interface index.
fn ifindex(host: &Host, name: &str) -> String {
    host.ip(&["-o", "link", "show", name])
        .expect("ip link show")
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Standard base64 (with padding) decoded, `None` if it is not valid.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::new();
    for (i, chunk) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n: u32 = 0;
        for &c in &chunk[..4 - pad] {
            let v = ALPHABET.iter().position(|&a| a == c)?;
            n = (n << 6) | u32::try_from(v).ok()?;
        }
        n <<= 6 * pad;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One host with no `meshd`, for the tests that start it by hand.
fn one_host(test: &str) -> (Topology, Host) {
    require_root();
    let mut topo = Topology::new(test).expect("topology");
    let host = topo.add_host("a").expect("host a");
    (topo, host)
}

#[test]
fn bad_input_is_refused_with_one_line_and_leaves_nothing_behind() {
    let (topo, host) = one_host("bad_input_is_refused_with_one_line_and_leaves_nothing_behind");
    let dir = host.dir.join("bad");
    let state_dir = dir.join("state");
    let socket = dir.join("meshd.sock");
    let good_secret = topo.secret_file().to_string_lossy().into_owned();
    let short_secret = host.dir.join("short-secret");
    std::fs::write(&short_secret, "  short \n").expect("write short secret");
    let missing_secret = host.dir.join("no-such-dir/secret");
    let garbage_toml = host.dir.join("garbage.toml");
    std::fs::write(&garbage_toml, "mtuu = 1400\n").expect("write config");

    let base = |secret: Option<&str>, block: &str| -> Vec<String> {
        let mut args: Vec<String> = [
            "--name",
            "a",
            "--listen",
            "0.0.0.0:6788",
            "--state-dir",
            &state_dir.to_string_lossy(),
            "--api-socket",
            &socket.to_string_lossy(),
            "--range",
            DEFAULT_RANGE,
            "--block",
            block,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(secret) = secret {
            args.extend(["--secret-file".to_owned(), secret.to_owned()]);
        }
        args
    };
    let with = |mut args: Vec<String>, more: &[&str]| {
        args.extend(more.iter().map(|s| (*s).to_owned()));
        args
    };
    let good = Some(good_secret.as_str());
    let missing = missing_secret.to_string_lossy().into_owned();
    let short = short_secret.to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "no --secret-file",
            base(None, "10.32.1.0/24"),
            vec!["--secret-file".into()],
        ),
        (
            "a secret file that does not exist",
            base(Some(&missing), "10.32.1.0/24"),
            vec!["cannot read secret file".into(), missing.clone()],
        ),
        (
            "a directory as secret file",
            base(Some(&host.dir.to_string_lossy()), "10.32.1.0/24"),
            vec!["secret file".into(), "not a regular file".into()],
        ),
        (
            "a 5-byte secret",
            base(Some(&short), "10.32.1.0/24"),
            vec![short.clone(), "holds 5 bytes".into(), "at least 16".into()],
        ),
        (
            "--block outside --range",
            base(good, "10.64.1.0/24"),
            vec![
                "--block 10.64.1.0/24".into(),
                "not inside --range 10.32.0.0/12".into(),
            ],
        ),
        (
            "--block with host bits",
            base(good, "10.32.1.7/24"),
            vec!["--block".into(), "host bits".into(), "10.32.1.0/24".into()],
        ),
        (
            "--block-size with --block",
            with(base(good, "10.32.1.0/24"), &["--block-size", "26"]),
            vec!["--block-size 26 is for automatic IPAM".into()],
        ),
        (
            "--mtu 10",
            with(base(good, "10.32.1.0/24"), &["--mtu", "10"]),
            vec!["--mtu 10".into(), "out of range".into()],
        ),
        (
            "--peer with a port that is no port",
            with(base(good, "10.32.1.0/24"), &["--peer", "198.18.0.2:99999"]),
            vec!["--peer".into(), "198.18.0.2:99999".into()],
        ),
        (
            "an unknown key in the config file",
            with(
                base(good, "10.32.1.0/24"),
                &["--config", &garbage_toml.to_string_lossy()],
            ),
            vec![garbage_toml.to_string_lossy().into_owned(), "mtuu".into()],
        ),
    ];

    let mut failures = Vec::new();
    for (what, args, wants) in &cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = topo
            .run_meshd(&host, &argv, EXIT_BOUND)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if out.status.code() != Some(2) {
            failures.push(format!("{what}: want exit code 2; {}", describe(&out)));
        }
        if lines.len() != 1 {
            failures.push(format!(
                "{what}: want exactly one line on stderr, got {}: {stderr:?}",
                lines.len()
            ));
        }
        for want in wants {
            if !stderr.contains(want.as_str()) {
                failures.push(format!(
                    "{what}: stderr should contain {want:?}: {stderr:?}"
                ));
            }
        }
        let links = host.links().expect("list links");
        for name in [BRIDGE, TUN] {
            if links.iter().any(|l| l == name) {
                failures.push(format!("{what}: link {name} left behind: {links:?}"));
            }
        }
        for path in [&socket, &state_dir] {
            if path.exists() {
                failures.push(format!("{what}: {} was created", path.display()));
            }
        }
        // Clear whatever one case left, so the next is judged on its own.
        let _ = std::fs::remove_dir_all(&dir);
        for name in [BRIDGE, TUN] {
            let _ = host.ip(&["link", "del", name]);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn udp_port_in_use_is_refused_and_leaves_nothing_behind() {
    let (topo, host) = one_host("udp_port_in_use_is_refused_and_leaves_nothing_behind");
    let holder = host
        .spawn(&["socat", "-u", &format!("UDP-RECV:{MESHD_PORT}"), "-"])
        .expect("start socat");
    wait_until(
        &format!("socat to bind UDP {MESHD_PORT}"),
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let out = host.exec(&["ss", "-H", "-u", "-a", "-n"])?;
            let listing = text(&out.stdout);
            if listing.contains(&format!(":{MESHD_PORT} ")) {
                Ok(())
            } else {
                Err(listing)
            }
        },
    )
    .expect("port held");

    let args = topo
        .meshd_args(&host, &MeshdOpts::new("10.32.1.0/24"))
        .expect("args");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = topo
        .run_meshd(&host, &argv, EXIT_BOUND)
        .expect("meshd exits");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("already in use"),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains(&MESHD_PORT.to_string()),
        "the message should name the port: {}",
        describe(&out)
    );
    assert_no_mesh_links(&host, "UDP port in use");
    assert!(
        !host.api_socket().exists(),
        "API socket {} left behind",
        host.api_socket().display()
    );
    drop(holder);
}

#[test]
fn a_start_failing_after_the_bridge_was_created_removes_it() {
    let (topo, host) = one_host("a_start_failing_after_the_bridge_was_created_removes_it");
    // A link that is no TUN device holds the TUN's name: creating the TUN fails, after the
    // bridge was made.
    host.ip(&["link", "add", TUN, "type", "veth", "peer", "name", "notun0"])
        .expect("add a veth named like the TUN");
    let args = topo
        .meshd_args(&host, &MeshdOpts::new("10.32.1.0/24"))
        .expect("args");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = topo
        .run_meshd(&host, &argv, EXIT_BOUND)
        .expect("meshd exits");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(TUN),
        "the message should name {TUN}: {}",
        describe(&out)
    );
    assert!(
        !host.api_socket().exists(),
        "API socket left behind: {}",
        describe(&out)
    );
    // The bridge is removed by a task spawned from a destructor; give it a bounded while.
    let gone = wait_until(
        &format!("{BRIDGE} to be removed after the failed start"),
        Duration::from_secs(5),
        POLL,
        || {
            let links = host.links()?;
            if links.iter().any(|l| l == BRIDGE) {
                Err(format!("{links:?}"))
            } else {
                Ok(())
            }
        },
    );
    assert!(gone.is_ok(), "{gone:?}; meshd said: {}", describe(&out));
}

#[test]
fn a_second_meshd_on_the_same_api_socket_is_refused() {
    let (mut topo, host) = one_host("a_second_meshd_on_the_same_api_socket_is_refused");
    topo.start_meshd(&host, MeshdOpts::new("10.32.1.0/24"))
        .expect("first meshd");
    let key = topo.status(&host).expect("status").node.public_key;

    let mut args = topo
        .meshd_args(&host, &MeshdOpts::new("10.32.1.0/24"))
        .expect("args");
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .expect("--listen given");
    args[listen + 1] = format!("0.0.0.0:{}", MESHD_PORT + 1);
    let state = args
        .iter()
        .position(|a| a == "--state-dir")
        .expect("--state-dir given");
    args[state + 1] = host.dir.join("state2").to_string_lossy().into_owned();
    // The metrics port is taken by the first meshd too (and is checked first); this test is
    // about the API socket.
    args.extend(["--metrics".to_owned(), "off".to_owned()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = topo
        .run_meshd(&host, &argv, EXIT_BOUND)
        .expect("meshd exits");
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("in use"), "{}", describe(&out));
    assert!(
        stderr.contains(&host.api_socket().to_string_lossy().into_owned()),
        "the message should name the socket: {}",
        describe(&out)
    );

    assert!(topo.meshd_pid(&host).is_some(), "the first meshd exited");
    let status = topo.status(&host).expect("the first meshd still answers");
    assert_eq!(status.node.public_key, key);
    assert!(host.api_socket().exists(), "API socket removed");
    for name in [BRIDGE, TUN] {
        assert!(
            host.has_link(name).expect("links"),
            "{name} of the first meshd is gone"
        );
    }
    assert_eq!(
        routes_to(&host, DEFAULT_RANGE).len(),
        1,
        "the route of the range should still be there"
    );
}

#[test]
fn sigterm_keeps_the_bridge_and_a_restart_reuses_it() {
    let (mut topo, hosts, pods, started) =
        full_mesh("sigterm_keeps_the_bridge_and_a_restart_reuses_it", 2);
    let a = &hosts[0];
    wait_ping(&pods[0], &pods[1], started + PING_BOUND).expect("a -> b");
    for name in [BRIDGE, TUN] {
        assert!(host_has(a, name), "{name} missing while meshd runs");
    }
    assert_eq!(
        routes_to(a, DEFAULT_RANGE).len(),
        1,
        "route of the range while meshd runs"
    );
    assert!(a.api_socket().exists());
    let bridge_index = ifindex(a, BRIDGE);

    let status = topo.stop_meshd(a).expect("stop meshd on a");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "meshd should exit 0 on SIGTERM within the grace period: {status:?}"
    );
    assert!(
        host_has(a, BRIDGE),
        "{BRIDGE} was removed by SIGTERM; links: {:?}",
        a.links()
    );
    let addrs = a
        .ip(&["-4", "-o", "addr", "show", "dev", BRIDGE])
        .expect("addresses of the bridge");
    assert!(
        addrs.contains("10.32.1.1/24"),
        "{BRIDGE} lost its gateway address: {addrs}"
    );
    pods[0]
        .ping("10.32.1.1".parse().expect("address"), 2)
        .expect("the pod still reaches its gateway after SIGTERM");
    assert!(
        !host_has(a, TUN),
        "{TUN} is still there after SIGTERM: {:?}",
        a.links()
    );
    assert!(
        routes_to(a, DEFAULT_RANGE).is_empty(),
        "route of the range left after SIGTERM: {:?}",
        routes_to(a, DEFAULT_RANGE)
    );
    assert!(
        !a.api_socket().exists(),
        "API socket {} left after SIGTERM",
        a.api_socket().display()
    );

    let restarted = Instant::now();
    topo.restart_meshd(a).expect("restart meshd on a");
    assert_eq!(
        ifindex(a, BRIDGE),
        bridge_index,
        "the restarted meshd made a new bridge"
    );
    let port = a
        .ip(&["-o", "link", "show", &pods[0].host_if])
        .expect("pod veth");
    assert!(
        port.contains(&format!("master {BRIDGE}")),
        "the pod's veth left the bridge: {port}"
    );
    wait_ping(&pods[0], &pods[1], restarted + PING_BOUND).expect("a -> b after the restart");
    wait_ping(&pods[1], &pods[0], restarted + PING_BOUND).expect("b -> a after the restart");
}

fn host_has(host: &Host, link: &str) -> bool {
    host.has_link(link).expect("list links")
}

/// `meshd reset` for `host`'s state dir and socket.
fn reset(topo: &Topology, host: &Host) -> Output {
    let state = host.state_dir().to_string_lossy().into_owned();
    let socket = host.api_socket().to_string_lossy().into_owned();
    topo.run_meshd(
        host,
        &["reset", "--state-dir", &state, "--api-socket", &socket],
        EXIT_BOUND,
    )
    .expect("meshd reset exits")
}

#[test]
fn reset_refuses_while_meshd_runs_and_removes_everything_after() {
    let (mut topo, hosts, pods, started) = full_mesh(
        "reset_refuses_while_meshd_runs_and_removes_everything_after",
        2,
    );
    let (a, b) = (&hosts[0], &hosts[1]);
    wait_ping(&pods[0], &pods[1], started + PING_BOUND).expect("a -> b");
    for (host, peer) in [(a, b), (b, a)] {
        wait_established(&topo, host, peer, PING_BOUND);
        let peers = host.state_dir().join("peers.json");
        wait_until(
            &format!("{} to exist", peers.display()),
            PING_BOUND,
            POLL,
            || {
                if peers.exists() {
                    Ok(())
                } else {
                    Err("absent".to_owned())
                }
            },
        )
        .expect("peers.json written");
    }
    let key = a.state_dir().join("node.key");

    // While meshd runs: refused, nothing removed.
    let out = reset(&topo, a);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("running"),
        "the refusal should say meshd is running: {}",
        describe(&out)
    );
    for name in [BRIDGE, TUN] {
        assert!(host_has(a, name), "refused reset removed {name}");
    }
    for path in [
        a.api_socket(),
        key.clone(),
        a.state_dir().join("peers.json"),
    ] {
        assert!(path.exists(), "refused reset removed {}", path.display());
    }
    topo.status(a)
        .expect("meshd still answers after the refused reset");

    // a stopped by SIGKILL (its socket stays behind), b by SIGTERM.
    topo.kill_meshd(a).expect("kill meshd on a");
    let status = topo.stop_meshd(b).expect("stop meshd on b");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(a.api_socket().exists(), "SIGKILL cannot remove the socket");

    for host in [a, b] {
        let socket_was_there = host.api_socket().exists();
        let out = reset(&topo, host);
        assert_eq!(
            out.status.code(),
            Some(0),
            "reset on {}: {}",
            host.name,
            describe(&out)
        );
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(BRIDGE),
            "reset on {} should say it removed {BRIDGE}: {}",
            host.name,
            describe(&out)
        );
        let mut removed = vec![
            host.state_dir().join("node.key"),
            host.state_dir().join("peers.json"),
        ];
        if socket_was_there {
            removed.push(host.api_socket());
        }
        for path in &removed {
            assert!(
                !path.exists(),
                "reset on {} left {}",
                host.name,
                path.display()
            );
            assert!(
                stdout.contains(&path.to_string_lossy().into_owned()),
                "reset on {} should say it removed {}: {}",
                host.name,
                path.display(),
                describe(&out)
            );
        }
        assert!(
            !host.api_socket().exists(),
            "API socket of {} left",
            host.name
        );
        assert_no_mesh_links(host, &format!("reset on {}", host.name));
    }
}

#[test]
fn node_key_is_private_and_no_secret_reaches_the_log_or_the_api() {
    require_root();
    let test = "node_key_is_private_and_no_secret_reaches_the_log_or_the_api";
    let mut topo = Topology::new(test).expect("topology");
    let a = topo.add_host("a").expect("host a");
    let b = topo.add_host("b").expect("host b");
    let secret = random_secret().expect("secret");
    let started = Instant::now();
    for (host, peer, block) in [(&a, &b, "10.32.1.0/24"), (&b, &a, "10.32.2.0/24")] {
        let mut opts = MeshdOpts::new(block)
            .peers([peer])
            .secret(&format!("{secret}\n"));
        opts.extra_args = vec!["--log".into(), "trace".into()];
        topo.start_meshd(host, opts).expect("start meshd");
    }
    let pa = topo.add_pod(&a, "p1", "10.32.1.10").expect("pod a");
    let pb = topo.add_pod(&b, "p1", "10.32.2.10").expect("pod b");
    wait_ping(&pa, &pb, started + PING_BOUND).expect("a -> b");

    for host in [&a, &b] {
        let key_path = host.state_dir().join("node.key");
        let mode = std::fs::metadata(&key_path)
            .expect("node.key exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "mode of {}: {mode:o}", key_path.display());
        let key_text = std::fs::read_to_string(&key_path).expect("read node.key");
        let key_text = key_text.trim();
        let key_bytes = base64_decode(key_text).expect("node.key is base64");
        assert_eq!(key_bytes.len(), 32, "node.key: {} bytes", key_bytes.len());

        let status = topo
            .meshctl(host, &["status", "-o", "json"])
            .expect("status");
        let text_status = topo.meshctl(host, &["status"]).expect("status");
        let log = topo.meshd_log(host);
        // The haystacks are real: the public key is shown, in both.
        let public_key = topo.status(host).expect("status").node.public_key;
        assert!(status.contains(&public_key), "{status}");
        assert!(
            log.contains(&public_key),
            "meshd logs its public key: {log}"
        );
        let secrets = [
            ("node key (base64)", key_text.to_owned()),
            ("node key (hex)", hex(&key_bytes)),
            (
                "node key (bytes)",
                format!("{:?}", &key_bytes[..8])
                    .trim_end_matches(']')
                    .to_owned(),
            ),
            ("cluster secret", secret.clone()),
            ("cluster secret (hex)", hex(secret.as_bytes())),
        ];
        for (what, value) in &secrets {
            for (where_, haystack) in [
                ("meshd's log", &log),
                ("meshctl status -o json", &status),
                ("meshctl status", &text_status),
            ] {
                assert!(
                    !haystack.contains(value.as_str()),
                    "{what} of {} appears in {where_}",
                    host.name
                );
            }
        }
    }
}

#[test]
fn gen_secret_prints_32_random_bytes_in_base64() {
    let (topo, host) = one_host("gen_secret_prints_32_random_bytes_in_base64");
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let out = topo
            .run_meshd(&host, &["gen-secret"], EXIT_BOUND)
            .expect("gen-secret exits");
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
        let secret = stdout.trim().to_owned();
        let bytes = base64_decode(&secret)
            .unwrap_or_else(|| panic!("gen-secret printed no base64: {secret:?}"));
        assert_eq!(bytes.len(), 32, "{secret:?} holds {} bytes", bytes.len());
        secrets.push(secret);
    }
    assert_ne!(secrets[0], secrets[1], "two calls printed the same secret");
    assert_no_mesh_links(&host, "gen-secret");
}

#[test]
fn a_config_file_gives_block_peers_and_secret() {
    require_root();
    let mut topo = Topology::new("a_config_file_gives_block_peers_and_secret").expect("topology");
    let a = topo.add_host("a").expect("host a");
    let b = topo.add_host("b").expect("host b");
    let secret_file = topo.secret_file();
    let started = Instant::now();
    for (host, peer, block) in [(&a, &b, "10.32.1.0/24"), (&b, &a, "10.32.2.0/24")] {
        let config = host.dir.join("meshd.toml");
        write_config(
            &config,
            &format!(
                "block = \"{block}\"\npeers = [\"{}\"]\nsecret_file = \"{}\"\n",
                peer.peer_addr(),
                secret_file.display()
            ),
        );
        let args: Vec<String> = [
            "--config",
            &config.to_string_lossy(),
            "--name",
            &host.name,
            "--state-dir",
            &host.state_dir().to_string_lossy(),
            "--api-socket",
            &host.api_socket().to_string_lossy(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        topo.start_meshd_with_args(host, Some(block), args)
            .expect("start meshd from its config file");
        let status = topo.status(host).expect("status");
        assert_eq!(status.node.blocks, vec![block.to_owned()], "{status:?}");
    }
    let pa = topo.add_pod(&a, "p1", "10.32.1.10").expect("pod a");
    let pb = topo.add_pod(&b, "p1", "10.32.2.10").expect("pod b");
    wait_ping(&pa, &pb, started + PING_BOUND).expect("a -> b");
    wait_ping(&pb, &pa, started + PING_BOUND).expect("b -> a");
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs `meshd ARGS` in `host`'s namespace behind `wrapper` (a command line whose last
/// word is followed by the meshd path and its arguments) and returns (exit code, stderr).
fn run_wrapped(topo: &Topology, host: &Host, wrapper: &[&str], args: &[String]) -> (i32, String) {
    let meshd = mesh_integration::bin_dir().join("meshd");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &host.netns])
        .args(wrapper)
        .arg(&meshd)
        .args(args)
        .env_remove("MESH_METRICS")
        .output()
        .expect("run meshd");
    let _ = topo;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn minimal_args(host: &Host, secret: &std::path::Path) -> Vec<String> {
    [
        "--name",
        "a",
        "--secret-file",
        &secret.to_string_lossy(),
        "--state-dir",
        &host.dir.join("state-x").to_string_lossy(),
        "--api-socket",
        &host.dir.join("x.sock").to_string_lossy(),
        "--block",
        "10.32.1.0/24",
        "--metrics",
        "off",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[test]
fn not_root_is_refused_with_one_line_and_leaves_nothing_behind() {
    let (topo, host) = one_host("not_root_is_refused_with_one_line_and_leaves_nothing_behind");
    // A secret the unprivileged user can read, so that privilege is what fails.
    let secret = host.dir.join("readable-secret");
    std::fs::copy(topo.secret_file(), &secret).expect("copy secret");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod secret");
    let (code, stderr) = run_wrapped(
        &topo,
        &host,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        &minimal_args(&host, &secret),
    );
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("root"), "{stderr}");
    assert_no_mesh_links(&host, "not root");
    assert!(!host.dir.join("x.sock").exists());
    assert!(!host.dir.join("state-x").exists());
}

#[test]
fn missing_dev_net_tun_is_refused_with_one_line_and_leaves_nothing_behind() {
    let (topo, host) =
        one_host("missing_dev_net_tun_is_refused_with_one_line_and_leaves_nothing_behind");
    // `ip netns exec` runs in a mount namespace of its own: an empty tmpfs over /dev/net
    // hides the TUN device from this meshd only.
    let (code, stderr) = run_wrapped(
        &topo,
        &host,
        &[
            "sh",
            "-c",
            "mount -t tmpfs none /dev/net && exec \"$0\" \"$@\"",
        ],
        &minimal_args(&host, &topo.secret_file()),
    );
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("/dev/net/tun"), "{stderr}");
    assert_no_mesh_links(&host, "no /dev/net/tun");
    assert!(!host.dir.join("x.sock").exists());
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "the machine's own /dev/net/tun must be untouched"
    );
}
