//! Socket-level load balancing for guests, as Cilium's socket LB does it: a guest's TCP connect (a
//! `wasi:sockets` connect or an outbound wasi-http request) to a Service's `clusterIP:port` is
//! connected straight to a ready endpoint that the node's proxy's [`herd_proxy::Balancer`] picks for
//! that connection, with the guest's pod IP as the client: no proxy hop, and the bytes never pass
//! through herd. An endpoint on this host is connected to directly; one on another host through
//! the pod network's tunnel listener ([`PodNetwork::redirect`]).
//!
//! A connect the balancer has no endpoint for (the address is no Service port, or the Service has
//! no usable endpoint) is left as before: to the proxy's fallback port of a Service port it could
//! not listen on ([`herd_proxy::Redirects`]), or to the proxy's own listener, which may hold the
//! connection while a scaled-to-zero Service wakes up; and a pod IP of another host through the
//! tunnel.
//!
//! Only TCP is balanced here: a guest's datagrams to a UDP Service go to the host proxy's UDP
//! listener.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use herd_node::ConnectRedirect;
use herd_node::pod_network::PodNetwork;
use herd_proxy::{Balancer, Redirects};

/// The node's guests' [`ConnectRedirect`]: [`guest_target`] over the proxy's `balancer` and
/// `redirects` and the node's pod `network` (none for a node whose pods are all on this host).
pub fn guest_connect_redirect(
    balancer: Balancer,
    redirects: Redirects,
    network: Option<PodNetwork>,
) -> ConnectRedirect {
    ConnectRedirect::from_client(move |client, to| {
        guest_target(
            &balancer,
            client,
            to,
            |addr| redirects.get(addr),
            |addr| network.as_ref().and_then(|network| network.redirect(addr)),
        )
    })
}

/// Where a guest's TCP connect from `client` (its pod IP) to `to` really goes; `None` leaves it
/// where the guest said.
///
/// A Service port with a usable endpoint: the endpoint `balancer` picks, or the local listener
/// `remote_pod` gives for an endpoint on another host. Anything else: `fallback` (the proxy's
/// fallback port of a Service port), then `remote_pod` (a pod IP of another host).
pub fn guest_target(
    balancer: &Balancer,
    client: Option<IpAddr>,
    to: SocketAddr,
    fallback: impl Fn(SocketAddr) -> Option<SocketAddr>,
    remote_pod: impl Fn(SocketAddr) -> Option<SocketAddr>,
) -> Option<SocketAddr> {
    let client = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Some(endpoint) = balancer.pick(to, client) {
        return Some(remote_pod(endpoint).unwrap_or(endpoint));
    }
    fallback(to).or_else(|| remote_pod(to))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herd_proxy::RoutingTable;

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    const GUEST: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(127, 1, 0, 9)));

    /// Service 127.10.0.1:80 over a local pod and a pod of another host (127.2.0.4, reached
    /// through a tunnel listener on 127.0.0.1:41000); Service 127.10.0.2:80 with no endpoint,
    /// which the proxy serves on fallback port 30080.
    fn setup() -> (
        Balancer,
        impl Fn(SocketAddr) -> Option<SocketAddr>,
        impl Fn(SocketAddr) -> Option<SocketAddr>,
    ) {
        let balancer = Balancer::new();
        let mut table = RoutingTable::new();
        table.insert(
            addr("127.10.0.1:80"),
            vec![addr("127.1.0.3:8080"), addr("127.2.0.4:8080")],
        );
        table.insert(addr("127.10.0.2:80"), vec![]);
        balancer.update(table);
        let fallback =
            |to: SocketAddr| (to == addr("127.10.0.2:80")).then(|| addr("127.10.0.2:30080"));
        let remote_pod =
            |to: SocketAddr| (to.ip() == addr("127.2.0.4:0").ip()).then(|| addr("127.0.0.1:41000"));
        (balancer, fallback, remote_pod)
    }

    #[test]
    fn a_service_connect_goes_straight_to_each_endpoint_in_turn() {
        let (balancer, fallback, remote_pod) = setup();
        let mut seen = BTreeMap::new();
        for _ in 0..4 {
            let target = guest_target(
                &balancer,
                GUEST,
                addr("127.10.0.1:80"),
                &fallback,
                &remote_pod,
            )
            .expect("an endpoint");
            *seen.entry(target).or_insert(0) += 1;
        }
        // The local pod directly, the other host's pod through its tunnel listener, alike.
        assert_eq!(
            seen,
            BTreeMap::from([(addr("127.0.0.1:41000"), 2), (addr("127.1.0.3:8080"), 2)])
        );
    }

    #[test]
    fn without_an_endpoint_the_connect_is_left_to_the_proxy() {
        let (balancer, fallback, remote_pod) = setup();
        // No endpoint: the proxy's fallback port (its listener may hold the connection).
        assert_eq!(
            guest_target(
                &balancer,
                GUEST,
                addr("127.10.0.2:80"),
                &fallback,
                &remote_pod
            ),
            Some(addr("127.10.0.2:30080"))
        );
        // Another port of the cluster IP, a pod IP of this host: where the guest said.
        assert_eq!(
            guest_target(
                &balancer,
                GUEST,
                addr("127.10.0.1:81"),
                &fallback,
                &remote_pod
            ),
            None
        );
        assert_eq!(
            guest_target(
                &balancer,
                GUEST,
                addr("127.1.0.3:8080"),
                &fallback,
                &remote_pod
            ),
            None
        );
        // A pod IP of another host: its tunnel listener.
        assert_eq!(
            guest_target(
                &balancer,
                None,
                addr("127.2.0.4:8080"),
                &fallback,
                &remote_pod
            ),
            Some(addr("127.0.0.1:41000"))
        );
    }
}
