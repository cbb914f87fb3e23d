//! Serving the API: HTTPS with axum-server and rustls (ring provider), or plain HTTP only
//! when the configuration says so explicitly and the address is loopback. Shutdown is a
//! `CancellationToken`: live streams and long polls end, in-flight requests get a grace
//! period, then [`serve`] returns.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::auth::{PeerCert, cert_fingerprint};
use crate::config::Config;
use crate::service::Central;

/// How long in-flight requests may take to finish after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Installs ring as rustls's process-wide crypto provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The fingerprint of the first certificate in a PEM file (`central agent add --cert`).
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn pem_cert_fingerprint(path: &std::path::Path) -> anyhow::Result<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let cert = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificate {}", path.display()))?
        .next()
        .with_context(|| format!("{} holds no certificate", path.display()))?
        .with_context(|| format!("{} holds a malformed certificate", path.display()))?;
    Ok(cert_fingerprint(&cert))
}

/// rustls server configuration from the `[tls]` section: the certificate and key, and,
/// with `client_ca_pem`, a verifier that asks clients for a certificate chained to that
/// CA (clients without one, such as staff browsers, may still connect; agents bound to a
/// certificate are checked per request).
fn server_tls(tls: &crate::config::TlsConfig) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_pem)
        .with_context(|| format!("reading TLS certificate {}", tls.cert_pem.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS certificate {} is malformed", tls.cert_pem.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_pem)
        .with_context(|| format!("reading TLS key {}", tls.key_pem.display()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &tls.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading client CA {}", ca.display()))?
            {
                let c = c.with_context(|| format!("client CA {} is malformed", ca.display()))?;
                roots
                    .add(c)
                    .with_context(|| format!("client CA {} is not a usable CA", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The rustls acceptor, plus the connection's client certificate as a [`PeerCert`]
/// request extension.
#[derive(Clone)]
struct PeerCertAcceptor {
    inner: axum_server::tls_rustls::RustlsAcceptor,
}

impl<I, S> axum_server::accept::Accept<I, S> for PeerCertAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = tower_http::add_extension::AddExtension<S, PeerCert>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send,
        >,
    >;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = inner.await?;
            let fp = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| cert_fingerprint(c));
            Ok((
                stream,
                tower_http::add_extension::AddExtension::new(service, PeerCert(fp)),
            ))
        })
    }
}

/// Cancels `shutdown` on the first SIGTERM (how systemd stops a service) or SIGINT
/// (Ctrl-C). The handlers are installed before this returns, so a signal that arrives
/// while central is still starting is not lost and does not kill the process.
///
/// # Errors
/// When a signal handler cannot be installed.
pub fn cancel_on_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::spawn(async move {
        #[cfg(unix)]
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = shutdown.cancelled() => return,
        };
        #[cfg(not(unix))]
        let which = tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_ok() { "Ctrl-C" } else { return },
            () = shutdown.cancelled() => return,
        };
        tracing::info!(signal = which, "shutting down");
        shutdown.cancel();
    });
    Ok(())
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
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_tls(tls)?));
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            let watcher = tokio::spawn(async move {
                shutdown.cancelled().await;
                stop.cancel();
                h.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            tracing::info!(%addr, "central listening (HTTPS)");
            let acceptor = PeerCertAcceptor {
                inner: axum_server::tls_rustls::RustlsAcceptor::new(rustls),
            };
            let r = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
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
