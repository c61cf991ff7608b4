//! `wasi:sockets` as seen from a pod's network namespace: the few socket
//! functions that take an address are defined over wasmtime-wasi's own (the
//! linker shadows them) and translate the address through the run's
//! [`NetworkPolicy`] before calling wasmtime-wasi's implementation, which then
//! checks the translated address against the policy as before.
//!
//! wasmtime-wasi 48 offers only an allow/deny check per address
//! (`socket_addr_check`), so the translation happens one step earlier, here:
//!
//! - `tcp-socket.start-bind` and `udp-socket.start-bind`: [`NetworkPolicy::local`]
//!   (`0.0.0.0`, `::`, `127.0.0.1`, `::1` become the pod IP);
//! - `tcp-socket.start-connect`: [`NetworkPolicy::remote`] (loopback becomes the
//!   pod IP, then the [`ConnectRedirect`](crate::ConnectRedirect) applies);
//! - `udp-socket.stream` and `outgoing-datagram-stream.send`:
//!   [`NetworkPolicy::remote_datagram`] (loopback becomes the pod IP).
//!
//! The pod IP is IPv4, so an IPv6 address that becomes it (`::`, `::1`) needs
//! an IPv4 socket, as a dual-stack socket would use: a TCP socket that is
//! still fresh (neither bound, connected nor listening) is replaced, behind
//! the guest's handle, by a new IPv4 socket, and the guest keeps seeing an
//! IPv6 socket ([`Ipv6Views`]): its addresses (local, remote, and those of
//! the connections it accepts) are given IPv4-mapped (`::ffff:a.b.c.d`), its
//! family as IPv6. Options the guest set on the old socket before binding or
//! connecting are not carried over. A UDP socket keeps its family (an IPv6
//! UDP socket cannot bind the pod IP). Everything else is wasmtime-wasi's.
//! Name lookups are `name_lookup`'s (the run's `NameLookup`, then the host's
//! resolver): `localhost` resolves to the loopback addresses, which the
//! functions above translate.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{HostTcpSocket, TcpSocket};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::bindings::sockets::udp::{
    HostOutgoingDatagramStream, HostUdpSocket, IncomingDatagramStream, OutgoingDatagram,
    OutgoingDatagramStream, UdpSocket,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, SocketError, SocketResult};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};

use crate::error::{RuntimeError, describe};
use crate::network::NetworkPolicy;
use crate::state::ComponentState;

/// The `wasi:sockets` interfaces as wasmtime-wasi 48 defines them (its WIT is
/// `wasi:sockets@0.2.12`); guests importing any 0.2.x version are linked to
/// them by semver.
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";
const TCP_CREATE: &str = "wasi:sockets/tcp-create-socket@0.2.12";

/// What a socket function returns to the guest: its result or a WASI error
/// code (`Err` of the outer result traps).
type GuestResult<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;
type Accepted = (
    Resource<TcpSocket>,
    Resource<DynInputStream>,
    Resource<DynOutputStream>,
);
type DatagramStreams = (
    Resource<IncomingDatagramStream>,
    Resource<OutgoingDatagramStream>,
);

/// Defines the translating socket functions over wasmtime-wasi's; call after
/// `wasmtime_wasi::p2::add_to_linker_async`.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentState>) -> Result<(), RuntimeError> {
    let engine = |e: wasmtime::Error| RuntimeError::Engine(describe(&e));
    linker.allow_shadowing(true);
    let mut tcp = linker.instance(TCP).map_err(engine)?;
    tcp.func_wrap_async("[method]tcp-socket.start-bind", |store, params| {
        Box::new(tcp_start_bind(store, params))
    })
    .map_err(engine)?;
    tcp.func_wrap("[method]tcp-socket.start-connect", tcp_start_connect)
        .map_err(engine)?;
    tcp.func_wrap("[method]tcp-socket.accept", tcp_accept)
        .map_err(engine)?;
    tcp.func_wrap("[method]tcp-socket.local-address", |store, (this,)| {
        tcp_address(store, this, |v, r| HostTcpSocket::local_address(v, r))
    })
    .map_err(engine)?;
    tcp.func_wrap("[method]tcp-socket.remote-address", |store, (this,)| {
        tcp_address(store, this, |v, r| HostTcpSocket::remote_address(v, r))
    })
    .map_err(engine)?;
    tcp.func_wrap("[method]tcp-socket.address-family", tcp_address_family)
        .map_err(engine)?;
    linker
        .instance(TCP_CREATE)
        .map_err(engine)?
        .func_wrap("create-tcp-socket", tcp_create)
        .map_err(engine)?;
    let mut udp = linker.instance(UDP).map_err(engine)?;
    udp.func_wrap_async("[method]udp-socket.start-bind", |store, params| {
        Box::new(udp_start_bind(store, params))
    })
    .map_err(engine)?;
    udp.func_wrap_async("[method]udp-socket.stream", |store, params| {
        Box::new(udp_stream(store, params))
    })
    .map_err(engine)?;
    udp.func_wrap("[method]outgoing-datagram-stream.send", udp_send)
        .map_err(engine)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The TCP sockets (by handle) that the guest created as IPv6 but that are
/// IPv4 underneath, because they were bound or connected to the pod IP; and
/// the connections such a listener accepted. A handle number is forgotten
/// when it is given to a new socket (handles are reused).
#[derive(Debug, Default)]
pub(crate) struct Ipv6Views(HashSet<u32>);

impl Ipv6Views {
    fn set(&mut self, rep: u32, ipv6: bool) {
        if ipv6 {
            self.0.insert(rep);
        } else {
            self.0.remove(&rep);
        }
    }

    fn contains(&self, rep: u32) -> bool {
        self.0.contains(&rep)
    }
}

/// An IPv4 address as an IPv6 socket sees it.
fn mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        SocketAddr::V6(_) => addr,
    }
}

/// The store's policy and a view of its sockets.
fn split<'a>(
    store: &'a mut StoreContextMut<'_, ComponentState>,
) -> (std::sync::Arc<NetworkPolicy>, WasiSocketsCtxView<'a>) {
    let state = store.data_mut();
    (state.network().clone(), state.sockets())
}

/// A socket error as the guest gets it (an error code, or a trap).
fn lower<T>(view: &mut WasiSocketsCtxView<'_>, result: SocketResult<T>) -> GuestResult<T> {
    Ok((match result {
        Ok(value) => Ok(value),
        Err(error) => Err(network::Host::convert_error_code(view, error)?),
    },))
}

fn family(ip: IpAddr) -> IpAddressFamily {
    match ip {
        IpAddr::V4(_) => IpAddressFamily::Ipv4,
        IpAddr::V6(_) => IpAddressFamily::Ipv6,
    }
}

/// Another handle on the same socket, for the calls made before the real one.
fn again<T: 'static>(resource: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(resource.rep())
}

async fn tcp_start_bind(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, network, local): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress),
) -> GuestResult<()> {
    let rep = this.rep();
    let (policy, mut view) = split(&mut store);
    let local = policy.local(local.into());
    let (result, swapped) = match fit_tcp_family(&mut view, &this, local.ip()) {
        Ok(swapped) => (
            HostTcpSocket::start_bind(&mut view, this, network, local.into()).await,
            swapped,
        ),
        Err(e) => (Err(e), false),
    };
    let result = lower(&mut view, result);
    if swapped {
        store.data_mut().ipv6_views.set(rep, true);
    }
    result
}

fn tcp_start_connect(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, network, remote): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress),
) -> GuestResult<()> {
    let rep = this.rep();
    let (policy, mut view) = split(&mut store);
    let remote = policy.remote(remote.into());
    let (result, swapped) = match fit_tcp_family(&mut view, &this, remote.ip()) {
        Ok(swapped) => (
            HostTcpSocket::start_connect(&mut view, this, network, remote.into()),
            swapped,
        ),
        Err(e) => (Err(e), false),
    };
    let result = lower(&mut view, result);
    if swapped {
        store.data_mut().ipv6_views.set(rep, true);
    }
    result
}

fn tcp_create(
    mut store: StoreContextMut<'_, ComponentState>,
    (family,): (IpAddressFamily,),
) -> GuestResult<Resource<TcpSocket>> {
    let mut view = store.data_mut().sockets();
    let result = tcp_create_socket::Host::create_tcp_socket(&mut view, family);
    let result = lower(&mut view, result);
    if let Ok((Ok(socket),)) = &result {
        store.data_mut().ipv6_views.set(socket.rep(), false);
    }
    result
}

fn tcp_accept(
    mut store: StoreContextMut<'_, ComponentState>,
    (this,): (Resource<TcpSocket>,),
) -> GuestResult<Accepted> {
    let ipv6 = store.data().ipv6_views.contains(this.rep());
    let mut view = store.data_mut().sockets();
    let result = HostTcpSocket::accept(&mut view, this);
    let result = lower(&mut view, result);
    if let Ok((Ok((socket, _, _)),)) = &result {
        store.data_mut().ipv6_views.set(socket.rep(), ipv6);
    }
    result
}

/// `local-address` or `remote-address`, IPv4-mapped for an [`Ipv6Views`] socket.
fn tcp_address(
    mut store: StoreContextMut<'_, ComponentState>,
    this: Resource<TcpSocket>,
    get: fn(&mut WasiSocketsCtxView<'_>, Resource<TcpSocket>) -> SocketResult<IpSocketAddress>,
) -> GuestResult<IpSocketAddress> {
    let ipv6 = store.data().ipv6_views.contains(this.rep());
    let mut view = store.data_mut().sockets();
    let result = get(&mut view, this).map(|addr| {
        if ipv6 {
            mapped(addr.into()).into()
        } else {
            addr
        }
    });
    lower(&mut view, result)
}

fn tcp_address_family(
    mut store: StoreContextMut<'_, ComponentState>,
    (this,): (Resource<TcpSocket>,),
) -> wasmtime::Result<(IpAddressFamily,)> {
    if store.data().ipv6_views.contains(this.rep()) {
        return Ok((IpAddressFamily::Ipv6,));
    }
    let mut view = store.data_mut().sockets();
    Ok((HostTcpSocket::address_family(&mut view, this)?,))
}

/// Replaces a fresh IPv6 TCP socket with an IPv4 one when `ip` is IPv4;
/// whether it did.
fn fit_tcp_family(
    view: &mut WasiSocketsCtxView<'_>,
    this: &Resource<TcpSocket>,
    ip: IpAddr,
) -> SocketResult<bool> {
    let want = family(ip);
    if HostTcpSocket::address_family(view, again(this)).map_err(SocketError::trap)? == want
        || HostTcpSocket::is_listening(view, again(this)).map_err(SocketError::trap)?
        || HostTcpSocket::local_address(view, again(this)).is_ok()
        || HostTcpSocket::remote_address(view, again(this)).is_ok()
        || want == IpAddressFamily::Ipv6
    {
        return Ok(false);
    }
    let fresh = tcp_create_socket::Host::create_tcp_socket(view, want)?;
    let socket = view.table.delete(fresh)?;
    *view.table.get_mut(this)? = socket;
    Ok(true)
}

async fn udp_start_bind(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, network, local): (Resource<UdpSocket>, Resource<Network>, IpSocketAddress),
) -> GuestResult<()> {
    let (policy, mut view) = split(&mut store);
    let guest: SocketAddr = local.into();
    let local = policy.local(guest);
    // An IPv6 socket keeps its address (and so is refused unless the policy allows it).
    let local = if local.is_ipv4() == guest.is_ipv4() {
        local
    } else {
        guest
    };
    let result = HostUdpSocket::start_bind(&mut view, this, network, local.into()).await;
    lower(&mut view, result)
}

async fn udp_stream(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, remote): (Resource<UdpSocket>, Option<IpSocketAddress>),
) -> GuestResult<DatagramStreams> {
    let (policy, mut view) = split(&mut store);
    let remote =
        remote.map(|addr| same_family(addr.into(), policy.remote_datagram(addr.into())).into());
    let result = HostUdpSocket::stream(&mut view, this, remote).await;
    lower(&mut view, result)
}

fn udp_send(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, datagrams): (Resource<OutgoingDatagramStream>, Vec<OutgoingDatagram>),
) -> GuestResult<u64> {
    let (policy, mut view) = split(&mut store);
    let datagrams = datagrams
        .into_iter()
        .map(|datagram| OutgoingDatagram {
            remote_address: datagram
                .remote_address
                .map(|addr| same_family(addr.into(), policy.remote_datagram(addr.into())).into()),
            ..datagram
        })
        .collect();
    let result = HostOutgoingDatagramStream::send(&mut view, this, datagrams);
    lower(&mut view, result)
}

/// `translated` if it is of `guest`'s family (a UDP socket keeps its family), else `guest`.
fn same_family(guest: SocketAddr, translated: SocketAddr) -> SocketAddr {
    if guest.is_ipv4() == translated.is_ipv4() {
        translated
    } else {
        guest
    }
}
