//! systemd's notification protocol (`Type=notify`, `WatchdogSec=`), spoken over
//! `$NOTIFY_SOCKET` with a std `UnixDatagram`.
//!
//! Why: with `Type=simple` systemd calls the service started the moment the process exists,
//! so units ordered `After=exo-authproxy.service` (scheduled scripts) start while the proxy is
//! still reading certificates and binding. With `Type=notify` the unit becomes active when
//! [`serve`](crate::serve_with_grace) sends `READY=1`, right after both listeners accept;
//! `STOPPING=1` tells systemd the drain has begun (so `systemctl status` says "deactivating"
//! instead of a proxy that seems hung for the grace period); `WATCHDOG=1` every half
//! `WATCHDOG_USEC` lets systemd restart a proxy whose runtime stopped making progress.
//!
//! The protocol is one datagram per message, `KEY=VALUE` lines, to the path in
//! `$NOTIFY_SOCKET` (`@name` is Linux's abstract namespace). Without the variable (a terminal,
//! a container, tests) every call is a no-op. Failures to send are logged once at debug level
//! and never stop the proxy: notification is advice to the supervisor, not a duty of serving.
//! The environment comes in as a parameter ([`Environment`]), so the unit tests here never
//! touch the process's. Windows has no systemd: the type exists and does nothing there.

use std::time::Duration;

use crate::config::Environment;

/// A connection to systemd's notification socket (or nothing, outside systemd).
#[derive(Debug, Default)]
pub struct Notifier {
    #[cfg(unix)]
    socket: Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::SocketAddr,
    )>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, with the watchdog interval systemd set
    /// (`WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or names this process).
    pub fn from_env(env: &dyn Environment) -> Self {
        let watchdog = watchdog_interval(env, std::process::id());
        #[cfg(unix)]
        {
            let socket = env
                .var("NOTIFY_SOCKET")
                .filter(|p| !p.is_empty())
                .and_then(|path| match open(&path) {
                    Ok(pair) => Some(pair),
                    Err(err) => {
                        tracing::warn!(socket = %path, error = %err, "NOTIFY_SOCKET is set but unusable; systemd will not hear READY=1 (is the unit Type=notify with NotifyAccess=main?)");
                        None
                    }
                });
            Self {
                watchdog: watchdog.filter(|_| socket.is_some()),
                socket,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = watchdog;
            Self::default()
        }
    }

    /// Whether anything listens (`$NOTIFY_SOCKET` was set and usable).
    pub fn is_active(&self) -> bool {
        #[cfg(unix)]
        {
            self.socket.is_some()
        }
        #[cfg(not(unix))]
        {
            false
        }
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (None: no watchdog).
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1` with a status line (`systemctl status` shows it).
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1`: the drain has begun.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1`: still alive.
    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        #[cfg(unix)]
        if let Some((socket, address)) = &self.socket
            && let Err(err) = socket.send_to_addr(message.as_bytes(), address)
        {
            tracing::debug!(error = %err, "systemd notification not sent");
        }
        #[cfg(not(unix))]
        let _ = message;
    }
}

/// A status is one line in the protocol: a newline would start a new assignment.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// Half of `WATCHDOG_USEC` (systemd's advice), when the watchdog is meant for `pid`.
fn watchdog_interval(env: &dyn Environment, pid: u32) -> Option<Duration> {
    if let Some(owner) = env.var("WATCHDOG_PID")
        && owner.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    let usec: u64 = env.var("WATCHDOG_USEC")?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(unix)]
fn open(
    path: &str,
) -> std::io::Result<(
    std::os::unix::net::UnixDatagram,
    std::os::unix::net::SocketAddr,
)> {
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let address = match path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?
        }
        _ => std::os::unix::net::SocketAddr::from_pathname(path)?,
    };
    Ok((socket, address))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::net::UnixDatagram;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
        let n = Notifier::from_env(&env(&[("WATCHDOG_USEC", "1000000")]));
        assert!(!n.is_active());
        assert_eq!(n.watchdog(), None, "no watchdog without a socket to ping");
        n.ready("x");
        n.stopping("x");
    }

    #[test]
    fn messages_arrive_as_systemd_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&env(&[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "30000000"),
        ]));
        assert!(n.is_active());
        assert_eq!(n.watchdog(), Some(Duration::from_secs(15)));
        n.ready("serving\non two lines");
        assert_eq!(recv(&listener), "READY=1\nSTATUS=serving on two lines");
        n.watchdog_ping();
        assert_eq!(recv(&listener), "WATCHDOG=1");
        n.stopping("draining");
        assert_eq!(recv(&listener), "STOPPING=1\nSTATUS=draining");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_name_is_understood() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("exo-authproxy-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &format!("@{name}"))]));
        n.ready("ok");
        assert_eq!(recv(&listener), "READY=1\nSTATUS=ok");
    }

    #[test]
    fn the_watchdog_is_for_this_process_only() {
        let me = std::process::id();
        let usec = [("WATCHDOG_USEC", "2000000")];
        assert_eq!(
            watchdog_interval(&env(&usec), me),
            Some(Duration::from_secs(1))
        );
        let other = (me + 1).to_string();
        let mine = me.to_string();
        assert_eq!(
            watchdog_interval(&env(&[usec[0], ("WATCHDOG_PID", &other)]), me),
            None
        );
        assert_eq!(
            watchdog_interval(&env(&[usec[0], ("WATCHDOG_PID", &mine)]), me),
            Some(Duration::from_secs(1))
        );
        for bad in ["0", "", "soon", "-5"] {
            assert_eq!(
                watchdog_interval(&env(&[("WATCHDOG_USEC", bad)]), me),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_missing_socket_is_a_warning_not_a_failure() {
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", "/nonexistent/dir/notify")]));
        // Sending to a path nobody bound fails at send time; the proxy carries on.
        n.ready("ok");
        n.stopping("bye");
    }
}
