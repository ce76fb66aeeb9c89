//! Finding the instances of each service and keeping only the healthy ones
//! in play.
//!
//! Instances come from a DNS SRV name (what Kubernetes headless services
//! and Consul publish) through hickory-resolver, looked up again every few
//! seconds; when the name gives nothing (unset, failing, empty) the
//! configured static list stands in, and failing that the last known set
//! stays. Every instance's `/readyz` is checked every few seconds: one that
//! fails leaves the pool until it passes again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use tokio_util::sync::CancellationToken;

use crate::proxy::HttpClient;
use crate::upstream::Pool;

/// Where a service's instances are found.
#[derive(Debug, Clone, Default)]
pub struct ServiceSource {
    /// SRV name, `_http._tcp.studio.buildstream.svc.cluster.local`.
    pub srv: Option<String>,
    /// Base URLs used when the SRV name gives nothing.
    pub fallback: Vec<String>,
}

/// How often discovery looks again.
#[derive(Debug, Clone, Copy)]
pub struct DiscoveryTimings {
    /// Between two SRV lookups.
    pub resolve_every: Duration,
    /// Between two health checks of an instance.
    pub check_every: Duration,
    /// How long a health check may take.
    pub check_timeout: Duration,
}

impl Default for DiscoveryTimings {
    fn default() -> Self {
        Self {
            resolve_every: Duration::from_secs(5),
            check_every: Duration::from_secs(2),
            check_timeout: Duration::from_secs(1),
        }
    }
}

/// The DNS resolver: the system's, or one name server (`127.0.0.1:53`).
pub fn resolver(name_server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match name_server {
        Some(addr) => {
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
            TokioResolver::builder_with_config(config, provider)
        }
        None => TokioResolver::builder(provider).map_err(|err| err.to_string())?,
    };
    // Instances come and go: a record is trusted no longer than a lookup
    // interval, whatever its TTL.
    let options = builder.options_mut();
    options.positive_max_ttl = Some(Duration::from_secs(5));
    options.negative_max_ttl = Some(Duration::from_secs(1));
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    builder.build().map_err(|err| err.to_string())
}

/// Keeps `pool` following `source` until `cancel` fires.
pub async fn run(
    pool: Arc<Pool>,
    source: ServiceSource,
    resolver: Arc<TokioResolver>,
    client: HttpClient,
    timings: DiscoveryTimings,
    cancel: CancellationToken,
) {
    if !source.fallback.is_empty() {
        pool.set_members(&source.fallback);
    }
    let mut resolve = tokio::time::interval(timings.resolve_every);
    let mut check = tokio::time::interval(timings.check_every);
    resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = resolve.tick() => refresh_members(&pool, &source, &resolver).await,
            _ = check.tick() => check_health(&pool, &client, timings.check_timeout).await,
        }
    }
}

async fn refresh_members(pool: &Pool, source: &ServiceSource, resolver: &TokioResolver) {
    let Some(name) = &source.srv else {
        return;
    };
    let found = match lookup_srv(resolver, name).await {
        Ok(found) if !found.is_empty() => found,
        Ok(_) => {
            tracing::debug!(service = %pool.service, %name, "SRV name has no instances");
            source.fallback.clone()
        }
        Err(err) => {
            tracing::debug!(service = %pool.service, %name, error = %err, "SRV lookup failed");
            source.fallback.clone()
        }
    };
    if found.is_empty() {
        return;
    }
    if pool.set_members(&found) {
        tracing::info!(service = %pool.service, instances = ?found, "instances changed");
    }
}

/// The base URLs an SRV name points at, lowest priority value first.
pub async fn lookup_srv(resolver: &TokioResolver, name: &str) -> Result<Vec<String>, String> {
    let lookup = resolver
        .srv_lookup(name)
        .await
        .map_err(|err| err.to_string())?;
    let mut targets: Vec<(u16, String, u16)> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some((srv.priority, srv.target.to_ascii(), srv.port)),
            _ => None,
        })
        .collect();
    targets.sort();
    let mut urls = Vec::new();
    for (_, target, port) in targets {
        // The answer's additional section usually carries the addresses;
        // otherwise the target is looked up.
        let mut addresses: Vec<std::net::IpAddr> = lookup
            .additionals()
            .iter()
            .filter(|record| record.name.to_ascii() == target)
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(std::net::IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        if addresses.is_empty() {
            match resolver.lookup_ip(target.as_str()).await {
                Ok(found) => addresses.extend(found.iter()),
                Err(err) => {
                    tracing::debug!(%target, error = %err, "SRV target has no address");
                    continue;
                }
            }
        }
        for ip in addresses {
            let url = format!("http://{}", SocketAddr::new(ip, port));
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    Ok(urls)
}

async fn check_health(pool: &Pool, client: &HttpClient, timeout: Duration) {
    let checks = pool.instances().into_iter().map(|instance| {
        let client = client.clone();
        async move {
            let ready = crate::proxy::probe(&client, &format!("{}/readyz", instance.url), timeout)
                .await;
            metrics::gauge!("gateway_instance_healthy", "service" => pool.service.clone(),
                "instance" => instance.url.clone())
            .set(if ready { 1.0 } else { 0.0 });
            if instance.set_healthy(ready) {
                if ready {
                    tracing::info!(service = %pool.service, instance = %instance.url, "instance healthy");
                } else {
                    tracing::warn!(service = %pool.service, instance = %instance.url, "instance unhealthy; out of the pool");
                }
            }
        }
    });
    futures::future::join_all(checks).await;
}
