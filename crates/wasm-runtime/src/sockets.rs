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
//! an IPv4 socket: a socket that is still fresh (neither bound, connected nor
//! listening) is replaced, behind the guest's handle, by a new IPv4 socket of
//! the same kind. Options the guest set on the old socket before binding or
//! connecting are not carried over. Everything else is wasmtime-wasi's.
//! Name lookups are left alone: `localhost` resolves to the loopback
//! addresses, which the functions above translate.

use std::net::IpAddr;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{HostTcpSocket, TcpSocket};
use wasmtime_wasi::p2::bindings::sockets::udp::{
    HostOutgoingDatagramStream, HostUdpSocket, IncomingDatagramStream, OutgoingDatagram,
    OutgoingDatagramStream, UdpSocket,
};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{SocketError, SocketResult};
use wasmtime_wasi::sockets::{WasiSocketsCtxView, WasiSocketsView};

use crate::error::{RuntimeError, describe};
use crate::network::NetworkPolicy;
use crate::state::ComponentState;

/// The `wasi:sockets` interfaces as wasmtime-wasi 48 defines them (its WIT is
/// `wasi:sockets@0.2.12`); guests importing any 0.2.x version are linked to
/// them by semver.
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";

/// What a socket function returns to the guest: its result or a WASI error
/// code (`Err` of the outer result traps).
type GuestResult<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;
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
    let (policy, mut view) = split(&mut store);
    let local = policy.local(local.into());
    let result = match fit_tcp_family(&mut view, &this, local.ip()) {
        Ok(()) => HostTcpSocket::start_bind(&mut view, this, network, local.into()).await,
        Err(e) => Err(e),
    };
    lower(&mut view, result)
}

fn tcp_start_connect(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, network, remote): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress),
) -> GuestResult<()> {
    let (policy, mut view) = split(&mut store);
    let remote = policy.remote(remote.into());
    let result = match fit_tcp_family(&mut view, &this, remote.ip()) {
        Ok(()) => HostTcpSocket::start_connect(&mut view, this, network, remote.into()),
        Err(e) => Err(e),
    };
    lower(&mut view, result)
}

/// Replaces a fresh TCP socket of the other family with a new one of `ip`'s.
fn fit_tcp_family(
    view: &mut WasiSocketsCtxView<'_>,
    this: &Resource<TcpSocket>,
    ip: IpAddr,
) -> SocketResult<()> {
    let want = family(ip);
    if HostTcpSocket::address_family(view, again(this)).map_err(SocketError::trap)? == want
        || HostTcpSocket::is_listening(view, again(this)).map_err(SocketError::trap)?
        || HostTcpSocket::local_address(view, again(this)).is_ok()
        || HostTcpSocket::remote_address(view, again(this)).is_ok()
    {
        return Ok(());
    }
    let fresh = tcp_create_socket::Host::create_tcp_socket(view, want)?;
    let socket = view.table.delete(fresh)?;
    *view.table.get_mut(this)? = socket;
    Ok(())
}

async fn udp_start_bind(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, network, local): (Resource<UdpSocket>, Resource<Network>, IpSocketAddress),
) -> GuestResult<()> {
    let (policy, mut view) = split(&mut store);
    let local = policy.local(local.into());
    let result = match fit_udp_family(&mut view, &this, local.ip()).await {
        Ok(()) => HostUdpSocket::start_bind(&mut view, this, network, local.into()).await,
        Err(e) => Err(e),
    };
    lower(&mut view, result)
}

/// Replaces a fresh UDP socket of the other family with a new one of `ip`'s.
async fn fit_udp_family(
    view: &mut WasiSocketsCtxView<'_>,
    this: &Resource<UdpSocket>,
    ip: IpAddr,
) -> SocketResult<()> {
    let want = family(ip);
    if HostUdpSocket::address_family(view, again(this)).map_err(SocketError::trap)? == want
        || HostUdpSocket::local_address(view, again(this)).is_ok()
    {
        return Ok(());
    }
    let fresh = udp_create_socket::Host::create_udp_socket(view, want).await?;
    let socket = view.table.delete(fresh)?;
    *view.table.get_mut(this)? = socket;
    Ok(())
}

async fn udp_stream(
    mut store: StoreContextMut<'_, ComponentState>,
    (this, remote): (Resource<UdpSocket>, Option<IpSocketAddress>),
) -> GuestResult<DatagramStreams> {
    let (policy, mut view) = split(&mut store);
    let remote = remote.map(|addr| policy.remote_datagram(addr.into()).into());
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
                .map(|addr| policy.remote_datagram(addr.into()).into()),
            ..datagram
        })
        .collect();
    let result = HostOutgoingDatagramStream::send(&mut view, this, datagrams);
    lower(&mut view, result)
}
