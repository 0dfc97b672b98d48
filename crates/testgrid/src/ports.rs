//! Loopback ports: handing out free ones (never the same twice in one
//! process) and keeping those of a reopened grid from being handed out.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static GIVEN_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Keeps [`free_port`] from handing out `port` (in use by a reopened grid).
pub(crate) fn claim_port(port: u16) {
    let mut given = GIVEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    given.get_or_insert_with(HashSet::new).insert(port);
}

/// Binds `127.0.0.1:0` and returns the port the kernel chose. Ports handed
/// out earlier in this process are never returned again, so parallel grids
/// in one test binary do not collide.
pub fn free_port() -> u16 {
    let mut given = GIVEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind 127.0.0.1:0");
        if given.insert(port) {
            return port;
        }
    }
}

/// The Twisted endpoint a node listens on: `port` on 127.0.0.1 only.
pub(crate) fn loopback(port: u16) -> String {
    format!("tcp:{port}:interface=127.0.0.1")
}
