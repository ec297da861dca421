//! Real TCP between the sandbox's namespaces: servers that answer with an address, clients with
//! short timeouts. Each socket is made on a thread inside its namespace, then used from any thread.
//! Imports only kernel::netns.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::kernel::netns::run_in_netns;

/// What a server writes back before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The client's address, as the server saw it (the Internet host, the vSwitch peer).
    PeerAddr,
    /// The local address the client reached (the guest: which address got the connection).
    LocalAddr,
}

/// A running server; stops (and joins its threads) when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&SockAddr::from(addr))?;
    s.listen(256)?;
    // accept() honours SO_RCVTIMEO: the loop wakes up to notice `stop`.
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s)
}

/// Listen on every address in `binds` inside namespace `ns`; answer each connection with
/// `reply` and close it.
pub fn serve(ns: &str, binds: Vec<SocketAddr>, reply: Reply) -> Result<Server, String> {
    let shown = binds
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let sockets = run_in_netns(Some(ns), move || async move {
        binds
            .into_iter()
            .map(|b| listener(b).map_err(|e| format!("listen on {b}: {e}")))
            .collect::<Result<Vec<Socket>, String>>()
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("network namespace {ns:?}: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for s in sockets {
        let stop = stop.clone();
        let t = std::thread::Builder::new()
            .name("sandbox-server".into())
            .spawn(move || serve_loop(s, reply, &stop))
            .map_err(|e| format!("network namespace {ns:?}: server thread for {shown}: {e}"))?;
        threads.push(t);
    }
    Ok(Server { stop, threads })
}

fn serve_loop(listener: Socket, reply: Reply, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(_) => continue,
        };
        let addr = match reply {
            Reply::PeerAddr => peer.as_socket(),
            Reply::LocalAddr => conn.local_addr().ok().and_then(|a| a.as_socket()),
        };
        let text = addr
            .map(|a| format!("{}\n", a.ip()))
            .unwrap_or_else(|| "?\n".into());
        let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
        let mut conn = conn;
        let _ = conn.write_all(text.as_bytes());
        let _ = conn.shutdown(std::net::Shutdown::Both);
    }
}

/// One client connection to make.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Bind this source address (port 0) or, when None, only `sport` on the wildcard address.
    pub bind: Option<IpAddr>,
    /// A fixed source port (0 = the kernel picks one).
    pub sport: u16,
    pub target: SocketAddr,
}

/// How a client connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The server answered with this text (trimmed).
    Answer(String),
    /// The source address could not be bound (it is not assigned in the namespace).
    BindFailed(String),
    /// No connection: timeout, refused, unreachable.
    NoConnection(String),
    /// Connected but no answer came back.
    NoAnswer(String),
}

impl ProbeResult {
    /// The answer parsed as an address.
    pub fn addr(&self) -> Option<IpAddr> {
        match self {
            ProbeResult::Answer(a) => a.parse().ok(),
            _ => None,
        }
    }

    /// A short description for the report.
    pub fn describe(&self) -> String {
        match self {
            ProbeResult::Answer(a) => format!("answered {a}"),
            ProbeResult::BindFailed(e) => format!("cannot bind: {e}"),
            ProbeResult::NoConnection(e) => format!("no connection ({e})"),
            ProbeResult::NoAnswer(e) => format!("connected, no answer ({e})"),
        }
    }
}

fn io_short(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout".into(),
        _ => e.to_string(),
    }
}

fn client_socket(p: &Probe) -> Result<Socket, String> {
    let domain = Domain::for_address(p.target);
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
    let _ = s.set_reuse_address(true);
    let local = match (p.bind, p.target) {
        (Some(ip), _) => Some(SocketAddr::new(ip, p.sport)),
        (None, SocketAddr::V4(_)) if p.sport != 0 => {
            Some(SocketAddr::new(IpAddr::from([0u8, 0, 0, 0]), p.sport))
        }
        (None, SocketAddr::V6(_)) if p.sport != 0 => {
            Some(SocketAddr::new(IpAddr::from([0u16; 8]), p.sport))
        }
        _ => None,
    };
    if let Some(l) = local {
        s.bind(&SockAddr::from(l)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                format!("{} is not assigned", l.ip())
            } else {
                format!("{}: {e}", l.ip())
            }
        })?;
    }
    Ok(s)
}

fn connect(s: Socket, target: SocketAddr, timeout: Duration) -> ProbeResult {
    if let Err(e) = s.connect_timeout(&SockAddr::from(target), timeout) {
        return ProbeResult::NoConnection(io_short(&e));
    }
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = Vec::new();
    let mut s = s;
    let mut chunk = [0u8; 128];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 1024 {
                    break;
                }
            }
            Err(e) => {
                if buf.is_empty() {
                    return ProbeResult::NoAnswer(io_short(&e));
                }
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if text.is_empty() {
        ProbeResult::NoAnswer("closed without an answer".into())
    } else {
        ProbeResult::Answer(text)
    }
}

/// Make every probe from namespace `ns`, all at once, each bounded by `timeout` (connect) plus
/// `timeout` (answer). Results are in the order of `probes`.
pub fn connect_all(
    ns: &str,
    probes: Vec<Probe>,
    timeout: Duration,
) -> Result<Vec<ProbeResult>, String> {
    let ps = probes.clone();
    let sockets: Vec<Result<Socket, String>> = run_in_netns(Some(ns), move || async move {
        ps.iter().map(client_socket).collect()
    })
    .map_err(|e| e.to_string())?;
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .into_iter()
            .zip(&probes)
            .map(|(s, p)| {
                let target = p.target;
                std::thread::Builder::new()
                    .name("sandbox-probe".into())
                    .spawn_scoped(scope, move || match s {
                        Err(e) => ProbeResult::BindFailed(e),
                        Ok(s) => connect(s, target, timeout),
                    })
                    .map_err(|e| format!("cannot start a probe thread: {e}"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| ProbeResult::NoConnection("probe thread panicked".into())),
                Err(e) => ProbeResult::NoConnection(e),
            })
            .collect::<Vec<_>>()
    });
    Ok(results)
}
