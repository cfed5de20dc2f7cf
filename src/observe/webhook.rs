//! A webhook receiver as a tap (observe mode): for shops that call out over HTTP (an order
//! confirmation hook, a fulfilment partner's API), an output `from: http://127.0.0.1:PORT/path`
//! makes doorbuster listen there on loopback and count every request to that path as one
//! output event: the body is the request's, the headers its headers, the key its path. It
//! answers `204 No Content` at once, as a healthy receiver does.
//!
//! Outputs that share an address share one server; each takes the requests to its own path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio_util::sync::CancellationToken;

use super::Observer;

/// Where a webhook output listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Webhook {
    pub listen: SocketAddr,
    /// The request path this output counts, e.g. `/hooks/paid`.
    pub path: String,
}

/// `http://127.0.0.1:PORT/path`, on loopback; `None` when `from` is not an http URL (a
/// topic on the broker).
pub fn parse(from: &str) -> Option<Result<Webhook, crate::config::units::UnitError>> {
    let rest = from.strip_prefix("http://")?;
    Some(webhook_of(from, rest))
}

fn webhook_of(from: &str, rest: &str) -> Result<Webhook, crate::config::units::UnitError> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let listen = crate::config::units::parse_listen(authority).map_err(|mut e| {
        e.message = format!("{from:?}: {}", e.message);
        e
    })?;
    Ok(Webhook {
        listen,
        path: path.to_owned(),
    })
}

/// Serves every webhook output of the run until `stop`: one server per address, bound
/// before this returns (so a receiver that cannot listen fails the setup, not the run).
pub async fn serve(
    observer: &Arc<Observer>,
    stop: &CancellationToken,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let Some(outputs) = &observer.outputs else {
        return Ok(Vec::new());
    };
    let mut by_address: BTreeMap<SocketAddr, Vec<(String, usize)>> = BTreeMap::new();
    for (index, tally) in outputs.outputs.iter().enumerate() {
        if let Some(hook) = &tally.spec.webhook {
            by_address
                .entry(hook.listen)
                .or_default()
                .push((hook.path.clone(), index));
        }
    }
    let mut tasks = Vec::new();
    for (addr, routes) in by_address {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let observer = observer.clone();
        let routes = Arc::new(routes);
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (observer, routes) = (observer.clone(), routes.clone());
            async move { receive(&observer, &routes, &uri, &headers, body) }
        });
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, %addr, "webhook receiver stopped with an error");
            }
        }));
    }
    Ok(tasks)
}

fn receive(
    observer: &Observer,
    routes: &[(String, usize)],
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(outputs) = &observer.outputs else {
        return StatusCode::NOT_FOUND;
    };
    let mut taken = false;
    let event = crate::transport::Tapped {
        key: Some(Bytes::copy_from_slice(uri.path().as_bytes())),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        body,
        at: observer.now(),
    };
    for (path, index) in routes {
        if uri.path() == path {
            outputs.tapped(*index, &event);
            taken = true;
        }
    }
    if taken {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_an_http_url_on_loopback() {
        let hook = parse("http://127.0.0.1:18080/hooks/paid").unwrap().unwrap();
        assert_eq!(hook.listen.port(), 18080);
        assert_eq!(hook.path, "/hooks/paid");
        assert_eq!(parse("http://127.0.0.1:18080").unwrap().unwrap().path, "/");
        assert!(parse("shop.payments").is_none());
        let e = parse("http://10.0.0.1:18080/x").unwrap().unwrap_err();
        assert!(
            e.message.contains("not a loopback address"),
            "{}",
            e.message
        );
        assert!(parse("http://127.0.0.1/x").unwrap().is_err());
    }
}
