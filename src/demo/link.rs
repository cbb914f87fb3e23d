//! The demo's "WAN": a TCP forwarder between the gate agents and central that can be cut.
//!
//! While it is down it closes every connection it carries and refuses new ones at once,
//! which is what an agent sees when the network to central fails: connection refused or
//! reset, never a half answer. TLS passes through untouched (the agents still verify
//! central's certificate against their pinned CA).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A running forwarder.
#[derive(Debug)]
pub struct Link {
    port: u16,
    down: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Link {
    /// Listens on `127.0.0.1:port` and forwards to `target` until `stop`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(port: u16, target: SocketAddr, stop: CancellationToken) -> Result<Link> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let port = listener.local_addr()?.port();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (down2, cut2) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => break,
                    a = listener.accept() => a,
                };
                let Ok((inbound, _)) = accepted else { continue };
                if down2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Ok(Link { port, down, cut })
    }

    /// The local port agents connect to.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts (`true`) or restores (`false`) the link. Cutting closes every open connection.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}
