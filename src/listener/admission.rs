//! How many connections are open, in all and per client address, and whether one more may be.
//!
//! Each open connection costs a socket, a task and its buffers (about 25 KiB when idle, see
//! SECURITY.md), so without a bound a client opening sockets and sending nothing could take
//! the process past its memory limit. The bound is checked at accept, before anything is read;
//! a connection over it gets a short answer and is closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The configured bounds (`server.max_connections`, `server.max_connections_per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, in all.
    pub total: usize,
    /// 0: no bound per address.
    pub per_client: usize,
}

/// Why a connection is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    /// `server.max_connections` are open.
    Total,
    /// This address has `server.max_connections_per_client` open.
    Client,
}

/// The open connections, shared by every listener of the proxy.
#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; the count goes down when it is dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    /// The address counted per client, when it was.
    client: Option<IpAddr>,
}

impl Admission {
    /// Counts against `limits`, starting from no connection.
    pub fn new(limits: ConnectionLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `client` in, or says why not. `client` is `None` for a
    /// peer that is not counted per address (a trusted proxy carries many users' connections).
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Admitted, Crowded> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.limits.total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Crowded::Total);
        }
        let client = client.filter(|_| self.limits.per_client > 0);
        if let Some(ip) = client {
            // A poisoned lock only means another connection's bookkeeping panicked; the map
            // itself is still consistent enough to count with.
            let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.limits.per_client {
                drop(map);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Crowded::Client);
            }
            *n += 1;
        }
        Ok(Admitted {
            admission: self.clone(),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        if let Some(ip) = self.client {
            let mut map = a.per_client.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        a.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_and_are_given_back() {
        let a = Admission::new(ConnectionLimits {
            total: 3,
            per_client: 2,
        });
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let first = a.admit(Some(one)).unwrap();
        let second = a.admit(Some(one)).unwrap();
        assert_eq!(a.admit(Some(one)).unwrap_err(), Crowded::Client);
        let third = a.admit(Some(two)).unwrap();
        assert_eq!(a.admit(Some(two)).unwrap_err(), Crowded::Total);
        assert_eq!(a.admit(None).unwrap_err(), Crowded::Total);
        assert_eq!(a.open(), 3);
        drop(first);
        assert_eq!(a.open(), 2);
        let again = a.admit(Some(one)).unwrap();
        drop((second, third, again));
        assert_eq!(a.open(), 0);
        assert!(
            a.per_client.lock().unwrap().is_empty(),
            "no address is remembered"
        );
        // Not counted per address: only the total applies.
        let b = Admission::new(ConnectionLimits {
            total: 2,
            per_client: 1,
        });
        let _x = b.admit(None).unwrap();
        let _y = b.admit(None).unwrap();
        assert_eq!(b.admit(Some(one)).unwrap_err(), Crowded::Total);
    }
}
