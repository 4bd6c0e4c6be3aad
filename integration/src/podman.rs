//! [`Podman`]: Debian's podman (4.x, CNI network backend) driving `mesh-cni` on the hosts
//! of a [`Topology`](crate::Topology), with a store, configuration and image of its own.
//!
//! Every podman command runs inside a host's network namespace, entered with
//! `nsenter --net=/var/run/netns/HOST` (not `ip netns exec`, which remounts `/sys` and hides
//! the cgroup mounts runc needs), so the containers' veths and routes are made there and
//! never in the machine's own namespace. podman gets its own `--root`, `--runroot`,
//! `--tmpdir` and `containers.conf` (via `CONTAINERS_CONF`) under a temporary directory: the
//! machine's podman state is not touched, and no registry is asked for anything (the image
//! is imported from a busybox-static root filesystem, and every `run` has `--pull never`).
//!
//! Containers get a cgroup parent of their own (`--cgroup-parent /mpm-PREFIX`, conmon's
//! cgroup goes below it too). Dropping it removes every container it started (`podman rm
//! -f` by name, which makes podman call the plugin's DEL), then the image, the cgroups and
//! the temporary directory (unmounting whatever podman left mounted below it), also when a
//! test panics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::Host;
use crate::process::Proc;

/// How long one podman command may take.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);
/// The CNI network every host's conflist defines (one conflist per host, all named alike,
/// as on the nodes of a cluster).
pub const NETWORK: &str = "mesh";
/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";
/// Commands linked to busybox in the image.
/// Where Debian's containernetworking-plugins are (bridge, host-local, portmap, ...).
const DEBIAN_CNI: &str = "/usr/lib/cni";
const APPLETS: &[&str] = &[
    "sh", "ping", "ip", "sleep", "cat", "ls", "hostname", "nslookup", "wget", "true",
];

/// podman with its own store, driving `mesh-cni` (see the module documentation).
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    /// `--cgroup-parent` of every container (and its conmon), removed on drop.
    cgroup_parent: String,
    image: String,
    /// Containers started and not removed yet: (host namespace, its CNI config dir, name).
    containers: Vec<(String, PathBuf, String)>,
    image_imported: Option<String>,
}

impl Podman {
    /// Prepares a store and configuration under a new temporary directory named after
    /// `prefix` (e.g. the topology's [`prefix`](crate::Topology::prefix)), with `mesh_cni` (the
    /// plugin binary) in the CNI plugin directory. Fails with a message saying how to
    /// install podman, runc or busybox-static when one is missing.
    pub fn new(prefix: &str, mesh_cni: &Path) -> Result<Self, String> {
        for (what, path, package) in [
            ("podman", "/usr/bin/podman", "podman"),
            ("runc", "/usr/sbin/runc", "runc"),
            ("conmon", "/usr/bin/conmon", "conmon"),
            ("nsenter", "/usr/bin/nsenter", "util-linux"),
            ("busybox (static)", BUSYBOX, "busybox-static"),
        ] {
            if !Path::new(path).is_file() {
                return Err(format!(
                    "{what} not found at {path}: install Debian's {package} package \
                     (scripts/deps.sh installs podman, runc, conmon and busybox-static)"
                ));
            }
        }
        if has_interpreter(Path::new(BUSYBOX))? {
            return Err(format!(
                "{BUSYBOX} is dynamically linked (Debian's busybox package): the test image \
                 needs a static one, install busybox-static"
            ));
        }
        if !mesh_cni.is_file() {
            return Err(format!(
                "mesh-cni not found at {}: run `cargo build --workspace` first",
                mesh_cni.display()
            ));
        }
        // Short: podman's and conmon's unix sockets live below the run root.
        let dir = std::env::temp_dir().join(format!("mpm-{prefix}"));
        if dir.exists() {
            unmount_below(&dir);
            fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
        let podman = Self {
            image: format!("localhost/mesh-busybox-{prefix}:1"),
            cgroup_parent: format!("/mpm-{prefix}"),
            dir,
            containers: Vec::new(),
            image_imported: None,
        };
        for sub in ["root", "run", "tmp", "cni-bin", "net.d"] {
            let path = podman.dir.join(sub);
            fs::create_dir_all(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        let plugin = podman.dir.join("cni-bin/mesh-cni");
        fs::copy(mesh_cni, &plugin).map_err(|e| {
            format!(
                "cannot copy {} to {}: {e}",
                mesh_cni.display(),
                plugin.display()
            )
        })?;
        // podman asks for 1048576 open files and processes by default, which a machine (or CI
        // container) without CAP_SYS_RESOURCE refuses ("error setting rlimit type 7"); even
        // this process's own hard limits can be refused for runc's init. A sleeping busybox
        // needs few: ask for at most 4096 of each.
        let nofile = hard_limit("Max open files").unwrap_or(1024).min(4096);
        let nproc = hard_limit("Max processes").unwrap_or(1024).min(4096);
        let conf = format!(
            "# podman for the mesh tests: CNI backend, no systemd, nothing outside {dir}\n\
             [containers]\n\
             default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             \n\
             [network]\n\
             network_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{dir}/cni-bin\", \"{DEBIAN_CNI}\"]\n\
             \n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{dir}/events.log\"\n\
             tmp_dir = \"{dir}/tmp\"\n\
             volume_path = \"{dir}/root/volumes\"\n",
            dir = podman.dir.display()
        );
        write(&podman.dir.join("containers.conf"), conf.as_bytes())?;
        Ok(podman)
    }

    /// The temporary directory holding the store, configuration and plugin.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CNI configuration directory of `host` (its conflists).
    pub fn cni_config_dir(&self, host: &Host) -> PathBuf {
        self.dir.join("net.d").join(&host.name)
    }

    /// Writes `host`'s conflist for network [`NETWORK`]: `mesh-cni` talking to the host's
    /// `meshd` (its [`api_socket`](Host::api_socket)). podman 4.3 vendors libcni 1.1, which
    /// reads results up to cniVersion 1.0.0, so that is the version asked for.
    pub fn add_mesh_network(&self, host: &Host) -> Result<PathBuf, String> {
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {"type": "mesh-cni", "socket": host.api_socket()}
            ]
        });
        let dir = self.cni_config_dir(host);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("10-{NETWORK}.conflist"));
        write(&path, conflist.to_string().as_bytes())?;
        Ok(path)
    }

    /// Adds a second network `name` on `host`: Debian's `bridge` plugin on bridge `bridge`
    /// with `host-local` addresses out of `subnet` (gateway its first address), the way a
    /// cluster adds a network beside the mesh (Multus' secondary networks). Returns the
    /// conflist's path.
    pub fn add_bridge_network(
        &self,
        host: &Host,
        name: &str,
        bridge: &str,
        subnet: &str,
    ) -> Result<PathBuf, String> {
        for plugin in ["bridge", "host-local"] {
            let path = Path::new(DEBIAN_CNI).join(plugin);
            if !path.is_file() {
                return Err(format!(
                    "{} not found: install Debian's containernetworking-plugins",
                    path.display()
                ));
            }
        }
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "subnet": subnet,
                    "dataDir": self.dir.join("host-local"),
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            }]
        });
        let dir = self.cni_config_dir(host);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("20-{name}.conflist"));
        write(&path, conflist.to_string().as_bytes())?;
        Ok(path)
    }

    /// The image [`Podman::import_image`] makes.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Makes the test image without any registry: a root filesystem holding Debian's
    /// static busybox and links to it (`sh`, `ping`, `ip`, `sleep`, …), imported with
    /// `podman import` (run in `host`'s namespace).
    pub fn import_image(&mut self, host: &Host) -> Result<(), String> {
        let rootfs = self.dir.join("rootfs");
        for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "run"] {
            let path = rootfs.join(sub);
            fs::create_dir_all(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
            .map_err(|e| format!("cannot copy {BUSYBOX}: {e}"))?;
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .map_err(|e| format!("cannot link {applet}: {e}"))?;
        }
        write(&rootfs.join("etc/passwd"), b"root:x:0:0:root:/:/bin/sh\n")?;
        write(&rootfs.join("etc/group"), b"root:x:0:\n")?;
        let tar = self.dir.join("rootfs.tar");
        let tar_s = tar.to_string_lossy().into_owned();
        let rootfs_s = rootfs.to_string_lossy().into_owned();
        crate::cmd::run(&["tar", "-C", &rootfs_s, "-cf", &tar_s, "."])?;
        let image = self.image.clone();
        self.run(
            host,
            &[
                "import",
                "--change",
                "CMD [\"/bin/sh\"]",
                "--change",
                "ENV PATH=/bin",
                &tar_s,
                &image,
            ],
        )?;
        self.image_imported = Some(host.netns.clone());
        Ok(())
    }

    /// The command line of `podman ARGS…` inside `host`'s namespace, with this store and
    /// `host`'s CNI configuration directory.
    pub fn argv(&self, host: &Host, args: &[&str]) -> Vec<String> {
        self.argv_in(&host.netns, &self.cni_config_dir(host), args)
    }

    fn argv_in(&self, netns: &str, cni_dir: &Path, args: &[&str]) -> Vec<String> {
        let dir = |sub: &str| self.dir.join(sub).to_string_lossy().into_owned();
        let mut argv: Vec<String> = vec![
            "nsenter".into(),
            format!("--net=/var/run/netns/{netns}"),
            "podman".into(),
            "--root".into(),
            dir("root"),
            "--runroot".into(),
            dir("run"),
            "--tmpdir".into(),
            dir("tmp"),
            "--storage-driver".into(),
            "vfs".into(),
            "--network-backend".into(),
            "cni".into(),
            "--cni-config-dir".into(),
            cni_dir.to_string_lossy().into_owned(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--runtime".into(),
            "runc".into(),
        ];
        argv.extend(args.iter().map(|&a| a.to_owned()));
        argv
    }

    /// Runs `podman ARGS…` in `host`'s namespace, bounded by [`PODMAN_TIMEOUT`]; its
    /// output, whatever its exit status.
    pub fn output(&self, host: &Host, args: &[&str]) -> Result<Output, String> {
        self.output_in(&host.netns, &self.cni_config_dir(host), args)
    }

    fn output_in(&self, netns: &str, cni_dir: &Path, args: &[&str]) -> Result<Output, String> {
        let argv = self.argv_in(netns, cni_dir, args);
        // Output goes to files, not pipes: conmon, which outlives `podman run -d`, must not
        // hold a pipe of ours open.
        let out_file = self.dir.join("tmp/podman.out");
        let err_file = self.dir.join("tmp/podman.err");
        let open = |path: &Path| {
            fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env_remove("CONTAINERS_STORAGE_CONF")
            .env_remove("CONTAINERS_REGISTRIES_CONF")
            .stdin(Stdio::null())
            .stdout(open(&out_file)?)
            .stderr(open(&err_file)?);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CNI_") {
                command.env_remove(&key);
            }
        }
        let what = format!("podman {}", args.join(" "));
        let mut proc = Proc::spawn(what.clone(), &mut command)?;
        let status = match proc.wait_timeout(PODMAN_TIMEOUT)? {
            Some(status) => status,
            None => {
                proc.kill();
                return Err(format!(
                    "`{what}` in {netns} still running after {PODMAN_TIMEOUT:?}, killed; stderr: {}",
                    fs::read_to_string(&err_file).unwrap_or_default().trim()
                ));
            }
        };
        Ok(Output {
            status,
            stdout: fs::read(&out_file).unwrap_or_default(),
            stderr: fs::read(&err_file).unwrap_or_default(),
        })
    }

    /// Runs `podman ARGS…` in `host`'s namespace; its stdout, or an error with its stderr.
    pub fn run(&self, host: &Host, args: &[&str]) -> Result<String, String> {
        let out = self.output(host, args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`podman {}` in {} failed ({}): {}",
                args.join(" "),
                host.netns,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `podman run -d --name NAME --network mesh --cap-add NET_RAW --pull never IMAGE
    /// sleep 3600` on `host` (the image must have been imported); returns the container ID
    /// (what podman passes as `CNI_CONTAINERID`). Removed again on drop unless
    /// [`Podman::remove`]d first.
    pub fn start(&mut self, host: &Host, name: &str) -> Result<String, String> {
        self.start_with(host, name, &["--network", NETWORK])
    }

    /// [`Podman::start`] with `extra` options (network, …) instead of `--network mesh`.
    pub fn start_with(
        &mut self,
        host: &Host,
        name: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        self.containers.push((
            host.netns.clone(),
            self.cni_config_dir(host),
            name.to_owned(),
        ));
        let image = self.image.clone();
        let cgroup_parent = self.cgroup_parent.clone();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--cap-add",
            "NET_RAW",
            "--cgroup-parent",
            &cgroup_parent,
            "--pull",
            "never",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&image, "sleep", "3600"]);
        let id = self.run(host, &args)?;
        Ok(id.trim().to_owned())
    }

    /// `podman exec NAME ARGV…` on `host`; its output whatever the exit status.
    pub fn exec(&self, host: &Host, name: &str, argv: &[&str]) -> Result<Output, String> {
        let mut args = vec!["exec", name];
        args.extend_from_slice(argv);
        self.output(host, &args)
    }

    /// `podman inspect -f FORMAT NAME` on `host`, trimmed.
    pub fn inspect(&self, host: &Host, name: &str, format: &str) -> Result<String, String> {
        Ok(self
            .run(host, &["inspect", "-f", format, name])?
            .trim()
            .to_owned())
    }

    /// `podman rm -f -t 0 NAME` on `host`: podman stops the container and tears its network
    /// down (CNI DEL) before it returns.
    pub fn remove(&mut self, host: &Host, name: &str) -> Result<(), String> {
        self.run(host, &["rm", "-f", "-t", "0", name])?;
        self.containers
            .retain(|(netns, _, n)| !(netns == &host.netns && n == name));
        Ok(())
    }

    /// The names of the containers started and not removed yet.
    pub fn containers(&self) -> Vec<String> {
        self.containers.iter().map(|(_, _, n)| n.clone()).collect()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for (netns, cni_dir, name) in std::mem::take(&mut self.containers) {
            match self.output_in(&netns, &cni_dir, &["rm", "-f", "-t", "0", &name]) {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "mesh-integration: cannot remove container {name}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("mesh-integration: cannot remove container {name}: {e}"),
            }
        }
        if let Some(netns) = self.image_imported.take() {
            let cni_dir = self.dir.join("net.d");
            let image = self.image.clone();
            let _ = self.output_in(&netns, &cni_dir, &["rmi", "-f", &image]);
        }
        unmount_below(&self.dir);
        remove_cgroups(&self.cgroup_parent);
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "mesh-integration: cannot remove {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// Unmounts (lazily, deepest first) every mount point below `dir`, e.g. a container's
/// `shm` that podman left behind after a failure.
fn unmount_below(dir: &Path) {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = crate::cmd::output(&["umount", "-l", point]);
    }
}

/// Whether the ELF file at `path` names a program interpreter (is dynamically linked).
fn has_interpreter(path: &Path) -> Result<bool, String> {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only (what Debian ships on the machines that run the tests).
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(format!(
            "{} is not a 64-bit little-endian ELF file",
            path.display()
        ));
    }
    let bad = || format!("{}: truncated ELF header", path.display());
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize).ok_or_else(bad)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The hard limit `name` (a row of /proc/self/limits) of this process, if it is a number.
fn hard_limit(name: &str) -> Option<u64> {
    fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Removes the (empty, once the containers are gone) cgroup `parent` and everything below
/// it from every cgroup hierarchy mounted.
fn remove_cgroups(parent: &str) {
    fn remove_tree(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path());
                }
            }
        }
        // rmdir: only succeeds on a cgroup without processes or children.
        if let Err(e) = fs::remove_dir(dir) {
            eprintln!(
                "mesh-integration: cannot remove cgroup {}: {e}",
                dir.display()
            );
        }
    }
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in mounts.lines() {
        let fs_type = line
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        if !matches!(fs_type, Some("cgroup" | "cgroup2")) {
            continue;
        }
        if let Some(point) = line.split(' ').nth(4) {
            let dir = Path::new(point).join(parent.trim_start_matches('/'));
            if dir.is_dir() {
                remove_tree(&dir);
            }
        }
    }
}

fn write(path: &Path, contents: &[u8]) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_has_an_interpreter_and_static_busybox_none() {
        // This test binary is dynamically linked (glibc).
        assert_eq!(has_interpreter(Path::new("/proc/self/exe")), Ok(true));
        if Path::new(BUSYBOX).is_file() {
            // Debian's busybox-static, when installed (its dynamic sibling would fail here).
            assert_eq!(has_interpreter(Path::new(BUSYBOX)), Ok(false));
        }
        assert!(has_interpreter(Path::new("/proc/self/status")).is_err());
    }
}
