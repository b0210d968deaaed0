//! A small network of Linux network namespaces made by the test itself: a `broker` namespace
//! joined to each host namespace by its own veth pair, plus one pair to the test's own
//! namespace (where its publisher and checker run). Addresses are on a private /16 that exists
//! only on those links, so traffic goes only between these namespaces. Cutting a host's link
//! (its veth down) is a real cut: packets are dropped, no connection is refused or reset.
//! Needs root (`ip netns add`); everything is removed on drop.

use std::ffi::OsString;
use std::process::Command;

/// The namespaces and links; removed on drop.
pub struct Lab {
    /// Namespace names are `sl{tag}-...`, veth names `sl{tag}...` (15 characters at most).
    tag: String,
    /// `10.{net}.0.0/16`.
    net: u8,
    hosts: Vec<String>,
    made: Vec<String>,
    root_link: Option<String>,
}

impl Lab {
    /// Makes the broker namespace, one namespace per name in `hosts` and their links.
    pub fn try_new(hosts: &[&str]) -> Result<Lab, String> {
        let pid = std::process::id();
        let mut lab = Lab {
            tag: format!("{}", pid % 100_000),
            net: 200 + (pid % 50) as u8,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            made: Vec::new(),
            root_link: None,
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<(), String> {
        let broker = self.namespace("broker");
        ip(&["netns", "add", &broker])?;
        self.made.push(broker.clone());
        ip(&["-n", &broker, "link", "set", "lo", "up"])?;
        // The test's own namespace to the broker: subnet 0.
        let (outside, inside) = (format!("sl{}r", self.tag), format!("sl{}R", self.tag));
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ])?;
        self.root_link = Some(outside.clone());
        ip(&["link", "set", &inside, "netns", &broker])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.test_address()),
            "dev",
            &outside,
        ])?;
        ip(&["link", "set", &outside, "up"])?;
        ip(&[
            "-n",
            &broker,
            "addr",
            "add",
            &format!("10.{}.0.2/24", self.net),
            "dev",
            &inside,
        ])?;
        ip(&["-n", &broker, "link", "set", &inside, "up"])?;
        // Each host: subnet i+1, the broker at .1, the host at .2.
        for i in 0..self.hosts.len() {
            let host = self.namespace(&self.hosts[i]);
            ip(&["netns", "add", &host])?;
            self.made.push(host.clone());
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            let (at_host, at_broker) = (self.host_link(i), self.broker_link(i));
            ip(&[
                "-n", &host, "link", "add", &at_host, "type", "veth", "peer", "name", &at_broker,
                "netns", &broker,
            ])?;
            let subnet = i + 1;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("10.{}.{subnet}.2/24", self.net),
                "dev",
                &at_host,
            ])?;
            ip(&["-n", &host, "link", "set", &at_host, "up"])?;
            ip(&[
                "-n",
                &broker,
                "addr",
                "add",
                &format!("10.{}.{subnet}.1/24", self.net),
                "dev",
                &at_broker,
            ])?;
            ip(&["-n", &broker, "link", "set", &at_broker, "up"])?;
        }
        Ok(())
    }

    fn namespace(&self, name: &str) -> String {
        format!("sl{}-{name}", self.tag)
    }

    fn index(&self, host: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("no host {host} in the lab"))
    }

    fn host_link(&self, i: usize) -> String {
        format!("sl{}h{i}", self.tag)
    }

    fn broker_link(&self, i: usize) -> String {
        format!("sl{}b{i}", self.tag)
    }

    /// The test's own address, on its link to the broker.
    pub fn test_address(&self) -> String {
        format!("10.{}.0.1", self.net)
    }

    /// The broker's address as the test reaches it.
    pub fn broker_address_for_test(&self) -> String {
        format!("10.{}.0.2", self.net)
    }

    /// The broker's address as `host` reaches it.
    pub fn broker_address_for(&self, host: &str) -> String {
        format!("10.{}.{}.1", self.net, self.index(host) + 1)
    }

    /// `ip netns exec NAMESPACE`: a command prefix that runs the rest of its line in the
    /// namespace of `host` (or `broker`).
    pub fn exec_in(&self, host: &str) -> Vec<OsString> {
        ["ip", "netns", "exec", &self.namespace(host)]
            .iter()
            .map(OsString::from)
            .collect()
    }

    /// Cuts `host` off: its link goes down (packets both ways are dropped).
    pub fn cut(&self, host: &str) {
        self.set_link(host, "down");
    }

    /// Reconnects `host`.
    pub fn reconnect(&self, host: &str) {
        self.set_link(host, "up");
    }

    /// Sets the broker's end of `host`'s link `up` or `down`.
    fn set_link(&self, host: &str, state: &str) {
        let link = self.broker_link(self.index(host));
        ip(&["-n", &self.namespace("broker"), "link", "set", &link, state])
            .unwrap_or_else(|e| panic!("set {host}'s link {state}: {e}"));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it, and with them their peers.
        for namespace in self.made.iter().rev() {
            let _ = ip(&["netns", "del", namespace]);
        }
        if let Some(link) = &self.root_link {
            let _ = ip(&["link", "del", link]);
        }
    }
}

/// Runs `ip ARGS`; its error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Mosquitto in the lab's broker namespace, default settings but persistence on, listening on
/// port 1883 of every lab address; stopped on drop.
pub struct LabMosquitto {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl LabMosquitto {
    /// Starts it and waits until the test's namespace can connect.
    pub fn start(lab: &Lab) -> LabMosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nallow_anonymous true\npersistence true\npersistence_location {}/\nlistener 1883 0.0.0.0\n",
                dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).expect("log");
        let mut command = lab.exec_in("broker");
        let program = command.remove(0);
        let child = Command::new(program)
            .args(command)
            .arg(crate::mqtt::mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto in the broker namespace");
        let address = format!("{}:1883", lab.broker_address_for_test());
        let deadline = std::time::Instant::now() + crate::WAIT;
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto never listened on {address}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        LabMosquitto { child, dir }
    }

    /// Waits until its log has a line containing every one of `needles`; returns it.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + crate::WAIT;
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto never logged {needles:?}; its log:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for LabMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
