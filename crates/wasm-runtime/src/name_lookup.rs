//! `wasi:sockets/ip-name-lookup` through the run's [`NameLookup`]: the interface is defined over
//! wasmtime-wasi's own (the linker shadows its resource and functions), so a name the lookup
//! answers (a Service of the cluster) never reaches the host's resolver, an unknown cluster name is
//! `name-unresolvable` at once, and every other name goes to the host's resolver as in
//! wasmtime-wasi (`getaddrinfo` through tokio). Without a lookup every name is the host's.
//!
//! Names are checked as wasmtime-wasi checks them (`url::Host::parse`: an invalid name is
//! `invalid-argument`, an international one is looked up in its punycode form, an IP address is
//! itself).

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::sockets::WasiSocketsView;

use crate::error::{RuntimeError, describe};
use crate::network::Answer;
use crate::state::ComponentState;

/// The interface as wasmtime-wasi 48 defines it (guests of any 0.2.x link to it by semver).
const IP_NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// Defines `resolve-addresses` and the `resolve-address-stream` resource over wasmtime-wasi's;
/// call after `wasmtime_wasi::p2::add_to_linker_async`.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentState>) -> Result<(), RuntimeError> {
    let engine = |e: wasmtime::Error| RuntimeError::Engine(describe(&e));
    linker.allow_shadowing(true);
    let mut lookup = linker.instance(IP_NAME_LOOKUP).map_err(engine)?;
    lookup
        .resource(
            "resolve-address-stream",
            ResourceType::host::<NameStream>(),
            |mut store, rep| {
                store
                    .data_mut()
                    .sockets()
                    .table
                    .delete(Resource::<NameStream>::new_own(rep))?;
                Ok(())
            },
        )
        .map_err(engine)?;
    lookup
        .func_wrap("resolve-addresses", resolve_addresses)
        .map_err(engine)?;
    lookup
        .func_wrap(
            "[method]resolve-address-stream.resolve-next-address",
            resolve_next_address,
        )
        .map_err(engine)?;
    lookup
        .func_wrap("[method]resolve-address-stream.subscribe", subscribe)
        .map_err(engine)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The addresses of one lookup: known at once, or still being resolved by the host.
pub(crate) struct NameStream(State);

enum State {
    Ready(Result<std::vec::IntoIter<IpAddr>, ErrorCode>),
    Pending(tokio::task::JoinHandle<Result<Vec<IpAddr>, ErrorCode>>),
}

impl NameStream {
    fn ready(result: Result<Vec<IpAddr>, ErrorCode>) -> Self {
        Self(State::Ready(result.map(Vec::into_iter)))
    }

    /// Asks the host's resolver for `names` in the background.
    fn host(names: Vec<String>, otherwise: Vec<IpAddr>) -> Self {
        Self(State::Pending(tokio::spawn(async move {
            host_addresses(&names, otherwise)
                .await
                .ok_or(ErrorCode::NameUnresolvable)
        })))
    }

    /// Takes the host's result when it is there.
    fn settle(&mut self) {
        if let State::Pending(handle) = &mut self.0
            && let Poll::Ready(joined) =
                Pin::new(handle).poll(&mut Context::from_waker(Waker::noop()))
        {
            self.0 = State::Ready(joined_result(joined).map(Vec::into_iter));
        }
    }
}

fn joined_result(
    joined: Result<Result<Vec<IpAddr>, ErrorCode>, tokio::task::JoinError>,
) -> Result<Vec<IpAddr>, ErrorCode> {
    joined.unwrap_or(Err(ErrorCode::PermanentResolverFailure))
}

impl Drop for NameStream {
    fn drop(&mut self) {
        if let State::Pending(handle) = &self.0 {
            handle.abort();
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for NameStream {
    async fn ready(&mut self) {
        if let State::Pending(handle) = &mut self.0 {
            let joined = handle.await;
            self.0 = State::Ready(joined_result(joined).map(Vec::into_iter));
        }
    }
}

/// The first of `names` the host's resolver resolves, all its addresses; else `otherwise`, unless
/// empty.
pub(crate) async fn host_addresses(
    names: &[String],
    otherwise: Vec<IpAddr>,
) -> Option<Vec<IpAddr>> {
    for name in names {
        match tokio::net::lookup_host((name.as_str(), 0)).await {
            Ok(addrs) => {
                let ips: Vec<IpAddr> = addrs.map(|a| a.ip().to_canonical()).collect();
                if !ips.is_empty() {
                    return Some(ips);
                }
            }
            Err(error) => tracing::debug!(name, %error, "the host's resolver has no answer"),
        }
    }
    (!otherwise.is_empty()).then_some(otherwise)
}

/// A name as wasmtime-wasi takes it: an address, or a domain (punycode); `None` if invalid.
fn parse(name: &str) -> Option<Result<IpAddr, String>> {
    match url::Host::parse(name) {
        Ok(url::Host::Domain(domain)) => Some(Err(domain)),
        Ok(url::Host::Ipv4(ip)) => Some(Ok(IpAddr::V4(ip))),
        Ok(url::Host::Ipv6(ip)) => Some(Ok(IpAddr::V6(ip))),
        // `url::Host::parse` wants brackets around an IPv6 address.
        Err(_) => name
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| Ok(IpAddr::V6(ip))),
    }
}

type GuestResult<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

fn resolve_addresses(
    mut store: StoreContextMut<'_, ComponentState>,
    (network, name): (Resource<Network>, String),
) -> GuestResult<Resource<NameStream>> {
    let names = store.data().network().names.clone();
    let view = store.data_mut().sockets();
    // The network resource is the capability to look names up.
    view.table.get(&network)?;
    let stream = match parse(&name) {
        None => return Ok((Err(ErrorCode::InvalidArgument),)),
        Some(Ok(ip)) => NameStream::ready(Ok(vec![ip])),
        Some(Err(domain)) => match names.map(|names| names.lookup(&domain)) {
            None => NameStream::host(vec![domain], Vec::new()),
            Some(Answer::Addresses(ips)) if ips.is_empty() => {
                NameStream::ready(Err(ErrorCode::NameUnresolvable))
            }
            Some(Answer::Addresses(ips)) => NameStream::ready(Ok(ips)),
            Some(Answer::NotFound) => NameStream::ready(Err(ErrorCode::NameUnresolvable)),
            Some(Answer::AskHost { names, otherwise }) => NameStream::host(names, otherwise),
        },
    };
    Ok((Ok(view.table.push(stream)?),))
}

fn resolve_next_address(
    mut store: StoreContextMut<'_, ComponentState>,
    (this,): (Resource<NameStream>,),
) -> GuestResult<Option<IpAddress>> {
    let view = store.data_mut().sockets();
    let stream = view.table.get_mut(&this)?;
    stream.settle();
    Ok((match &mut stream.0 {
        State::Pending(_) => Err(ErrorCode::WouldBlock),
        State::Ready(Ok(addresses)) => Ok(addresses.next().map(IpAddress::from)),
        State::Ready(Err(code)) => Err(*code),
    },))
}

fn subscribe(
    mut store: StoreContextMut<'_, ComponentState>,
    (this,): (Resource<NameStream>,),
) -> wasmtime::Result<(Resource<DynPollable>,)> {
    let view = store.data_mut().sockets();
    Ok((wasmtime_wasi::p2::subscribe(view.table, this)?,))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_wasmtime_wasi_checks_them() {
        assert_eq!(parse("10.1.2.3"), Some(Ok("10.1.2.3".parse().expect("ip"))));
        assert_eq!(parse("::1"), Some(Ok("::1".parse().expect("ip"))));
        assert_eq!(parse("[::1]"), Some(Ok("::1".parse().expect("ip"))));
        assert_eq!(parse("Web.Other"), Some(Err("web.other".to_owned())));
        assert_eq!(
            parse("bücher.example"),
            Some(Err("xn--bcher-kva.example".to_owned()))
        );
        assert_eq!(parse("a b"), None);
    }

    #[tokio::test]
    async fn the_host_answers_the_first_name_it_knows_else_the_fallback() {
        let fallback: Vec<IpAddr> = vec!["10.96.0.7".parse().expect("ip")];
        let names = ["no-such-name.invalid".to_owned(), "localhost".to_owned()];
        let ips = host_addresses(&names, fallback.clone())
            .await
            .expect("localhost");
        assert!(ips.iter().all(IpAddr::is_loopback), "{ips:?}");
        let unknown = ["no-such-name.invalid".to_owned()];
        assert_eq!(
            host_addresses(&unknown, fallback.clone()).await,
            Some(fallback)
        );
        assert_eq!(host_addresses(&unknown, Vec::new()).await, None);
    }
}
