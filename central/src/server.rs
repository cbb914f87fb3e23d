//! Serving the API: HTTPS with axum-server and rustls (ring provider), or plain HTTP only
//! when the configuration says so explicitly and the address is loopback. Shutdown is a
//! `CancellationToken`: live streams and long polls end, in-flight requests get a grace
//! period, then [`serve`] returns.

use std::net::TcpListener;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::Config;
use crate::service::Central;

/// How long in-flight requests may take to finish after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Installs ring as rustls's process-wide crypto provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Checks that the configuration says how to serve: TLS, or plain HTTP on loopback.
///
/// # Errors
/// When neither holds.
pub fn check_transport(cfg: &Config, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    if cfg.tls.is_some() {
        return Ok(());
    }
    if !cfg.allow_plain_http_on_loopback {
        bail!(
            "no [tls] section: set tls.cert_pem and tls.key_pem (or, for a loopback address only, allow_plain_http_on_loopback = true)"
        );
    }
    if !addr.ip().is_loopback() {
        bail!(
            "plain HTTP is only allowed on a loopback address, and {addr} is not one; configure [tls]"
        );
    }
    Ok(())
}

/// Binds `cfg.listen`.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(cfg: &Config) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(cfg.listen).with_context(|| format!("binding {}", cfg.listen))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Binds `cfg.listen` and serves until `shutdown` is cancelled.
///
/// # Errors
/// Bind, TLS or transport errors.
pub async fn serve(
    central: Central,
    cfg: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    check_transport(&cfg, cfg.listen)?;
    let listener = bind(&cfg)?;
    serve_with_listener(central, listener, cfg, shutdown).await
}

/// Serves on an already bound listener (bind `127.0.0.1:0` to get a free port).
///
/// # Errors
/// TLS or transport errors, or a configuration that allows neither TLS nor plain HTTP.
pub async fn serve_with_listener(
    central: Central,
    listener: TcpListener,
    cfg: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    check_transport(&cfg, addr)?;
    listener.set_nonblocking(true)?;
    let app = api::app(central.clone());
    let stop = central.stop_token().clone();
    match &cfg.tls {
        Some(tls) => {
            install_crypto_provider();
            let rustls =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_pem, &tls.key_pem)
                    .await
                    .with_context(|| {
                        format!(
                            "loading TLS certificate {} and key {}",
                            tls.cert_pem.display(),
                            tls.key_pem.display()
                        )
                    })?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            let watcher = tokio::spawn(async move {
                shutdown.cancelled().await;
                stop.cancel();
                h.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            tracing::info!(%addr, "central listening (HTTPS)");
            let r = axum_server::from_tcp_rustls(listener, rustls)?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await;
            watcher.abort();
            r.context("HTTPS server failed")
        }
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tracing::info!(%addr, "central listening (plain HTTP, loopback only)");
            let signal = shutdown.clone();
            let server = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                signal.cancelled().await;
                stop.cancel();
            });
            let mut server = std::pin::pin!(server.into_future());
            tokio::select! {
                r = &mut server => return r.context("HTTP server failed"),
                () = shutdown.cancelled() => {}
            }
            match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
                Ok(r) => r.context("HTTP server failed"),
                Err(_) => {
                    tracing::warn!("connections still open after the grace period; closing");
                    Ok(())
                }
            }
        }
    }
}
