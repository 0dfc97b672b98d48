//! A delaying TCP proxy: what a slow network looks like to the gateway.
//!
//! Each storage server gets one listener; every connection accepted there
//! is forwarded to the server's real port. Every chunk read in either
//! direction is held for the current one-way delay (RTT / 2) from the
//! moment it was read, then written out; chunks leave in the order they
//! arrived, so the byte stream is unchanged, only late. The delay is shared
//! and can be changed at any time (0 = plain forwarding). No `tc`, no
//! network namespace, no privileges.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks held per direction before reading stops (back-pressure).
const QUEUE: usize = 4096;
const CHUNK: usize = 64 * 1024;

/// The shared state of all proxies of one grid.
#[derive(Clone, Default)]
pub struct Delay {
    one_way_us: Arc<AtomicU64>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
}

impl Delay {
    /// Sets the round-trip time added between the two sides.
    pub fn set_rtt(&self, rtt: Duration) {
        self.one_way_us
            .store(rtt.as_micros() as u64 / 2, Ordering::Relaxed);
    }
    fn one_way(&self) -> Duration {
        Duration::from_micros(self.one_way_us.load(Ordering::Relaxed))
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Starts a proxy on a free loopback port forwarding to `127.0.0.1:target`;
/// returns its port. Runs on `rt` until the runtime is dropped.
pub fn start(rt: &tokio::runtime::Handle, target: u16, delay: Delay) -> Result<u16> {
    let std_listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("binding a proxy port")?;
    std_listener.set_nonblocking(true)?;
    let port = std_listener.local_addr()?.port();
    rt.spawn(async move {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("proxy {port}: {e}");
                return;
            }
        };
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                continue;
            };
            let delay = delay.clone();
            tokio::spawn(async move {
                delay.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = connection(inbound, target, &delay).await;
            });
        }
    });
    Ok(port)
}

async fn connection(inbound: TcpStream, target: u16, delay: &Delay) -> std::io::Result<()> {
    let outbound = TcpStream::connect(("127.0.0.1", target)).await?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let a = tokio::spawn(pipe(ir, ow, delay.clone()));
    let b = tokio::spawn(pipe(or, iw, delay.clone()));
    let _ = a.await;
    let _ = b.await;
    Ok(())
}

/// Copies `r` to `w`, each chunk delayed by the one-way delay at the time
/// it was read. EOF is passed on (write half shut down) after the last
/// chunk, delayed as well.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Delay,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            // An error ends the stream like EOF.
            let n: usize = r.read(&mut buf).await.unwrap_or_default();
            buf.truncate(n);
            let due = Instant::now() + delay.one_way();
            // An empty chunk marks EOF.
            if tx.send((due, buf)).await.is_err() || n == 0 {
                return;
            }
        }
    });
    while let Some((due, buf)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if buf.is_empty() {
            break;
        }
        if w.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_in_order_with_the_delay() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // An echo server.
            let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let echo_port = echo.local_addr().unwrap().port();
            tokio::spawn(async move {
                loop {
                    let (mut s, _) = echo.accept().await.unwrap();
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            });
            let delay = Delay::default();
            delay.set_rtt(Duration::from_millis(40));
            let port = start(&tokio::runtime::Handle::current(), echo_port, delay.clone()).unwrap();
            let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let t0 = std::time::Instant::now();
            let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let (mut r, mut w) = c.split();
            let write = async {
                for part in msg.chunks(1000) {
                    w.write_all(part).await.unwrap();
                }
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let read = r.read_to_end(&mut got);
            let (_, n) = tokio::join!(write, read);
            n.unwrap();
            let rtt = t0.elapsed();
            assert_eq!(got, msg, "same bytes, same order");
            assert!(rtt >= Duration::from_millis(40), "{rtt:?}");
            assert!(rtt < Duration::from_millis(1000), "{rtt:?}");
            assert_eq!(delay.accepted(), 1);
        });
    }
}
