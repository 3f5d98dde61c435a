//! Socket options and system calls the drivers need that tokio does not
//! wrap: address reuse, original destinations, sending from an address,
//! large buffers.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

pub(super) fn reuse_socket(local: SocketAddr) -> std::io::Result<socket2::Socket> {
    let domain = if local.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    Ok(s)
}

/// A UDP socket bound to `local` with IP_FREEBIND: the address may not be
/// on this host yet (the virtual address of a pair, which the redundancy
/// protocol moves to the node that owns it).
pub(super) fn freebind_udp(local: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    freebind(&s, local)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    UdpSocket::from_std(s.into())
}

/// A TCP listener on `local` with IP_FREEBIND (see [`freebind_udp`]).
pub(super) fn freebind_listener(local: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    freebind(&s, local)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}

fn freebind(s: &socket2::Socket, local: SocketAddr) -> std::io::Result<()> {
    if local.is_ipv4() {
        s.set_freebind_v4(true)
    } else {
        s.set_freebind_v6(true)
    }
}

/// Send one datagram from `from`, an endpoint's own gatekeeper-side
/// address: a socket bound to it for this send only. Its answers still
/// reach the shared socket (sk_lookup runs before the normal lookup), so
/// the proxy holds one descriptor, not one per endpoint; the cost is a
/// bind per datagram, which at the re-registration pace (1,000/s) is small.
pub(super) fn send_from(from: SocketAddr, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(from),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&from.into())?;
    s.send_to(bytes, &to.into())
}

/// Ask for the original destination address of every datagram
/// (IP_RECVORIGDSTADDR): with sk_lookup steering many addresses to one
/// socket, it is the only way to know which one a datagram was sent to.
pub(super) fn recv_original_destination(s: &socket2::Socket, v4: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    let (level, opt) = if v4 {
        (libc::SOL_IP, libc::IP_RECVORIGDSTADDR)
    } else {
        (libc::SOL_IPV6, libc::IPV6_RECVORIGDSTADDR)
    };
    // SAFETY: setsockopt on our own socket with a valid int.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `recv_from` that also returns the datagram's original destination
/// (see [`recv_original_destination`]).
pub(super) async fn recv_with_destination(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<SocketAddr>)> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    sock.async_io(tokio::io::Interest::READABLE, || {
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut cbuf = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; every pointer in it outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: fd is our socket, msg is set up above.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel wrote a sockaddr of msg_namelen bytes.
        let from = unsafe { sockaddr_to(&from) }
            .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
        let mut to = None;
        // SAFETY: walking the control messages the kernel wrote into cbuf.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let (lvl, ty) = ((*c).cmsg_level, (*c).cmsg_type);
                if (lvl == libc::SOL_IP && ty == libc::IP_ORIGDSTADDR)
                    || (lvl == libc::SOL_IPV6 && ty == libc::IPV6_ORIGDSTADDR)
                {
                    let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                    let len = ((*c).cmsg_len as usize)
                        .saturating_sub(libc::CMSG_LEN(0) as usize)
                        .min(std::mem::size_of::<libc::sockaddr_storage>());
                    std::ptr::copy_nonoverlapping(
                        libc::CMSG_DATA(c),
                        (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                        len,
                    );
                    to = sockaddr_to(&ss);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n as usize, from, to))
    })
    .await
}

/// A socket address out of a `sockaddr_storage` (IPv4-mapped IPv6 turned
/// into IPv4).
///
/// # Safety
/// `ss` must hold a sockaddr of the family it names.
unsafe fn sockaddr_to(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::from((v4, port)),
                None => SocketAddr::from((ip, port)),
            })
        }
        _ => None,
    }
}

/// 8 MiB socket buffers (SO_RCVBUFFORCE/SO_SNDBUFFORCE when privileged, so
/// net.core.rmem_max does not cap them; the plain options otherwise).
pub fn big_buffers(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: setsockopt on our own socket with a valid int.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}
