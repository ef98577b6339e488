//! Socket activation: serving HTTP on a socket that a service manager bound
//! and passed, instead of binding an address. The protocol is systemd's
//! (`sd_listen_fds(3)`): the manager sets `LISTEN_PID` to the PID of the
//! process the sockets are for and `LISTEN_FDS` to how many it passed, as
//! file descriptors from 3 on. `litevault replicate --addr systemd` (or
//! `addr: systemd` in the config) serves on the one socket passed.
//!
//! Why: the port is open before litevault starts and stays open across its
//! restarts (a health check queues instead of being refused), a privileged
//! port needs no privilege in the service, and whoever starts litevault
//! (systemd, a supervisor, a test) owns the port, so nothing else can take
//! it between choosing it and litevault binding it.
//!
//! The socket must be a listening TCP socket (`ListenStream=` with the
//! default `Accept=no`). Taking it marks it close-on-exec, so an application
//! started with `--exec` does not inherit it, and the environment variables
//! are not passed on to that application either.

use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::ServerError;

/// The address that means "the socket the service manager passed".
pub const ADDR: &str = "systemd";

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The protocol's environment variables, not passed on to an application
/// litevault starts once the socket is taken.
pub const ENV_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Whether `addr` (as written on the command line or in the config) asks
/// for the passed socket.
pub fn is_activation_addr(addr: &str) -> bool {
    addr.trim() == ADDR
}

/// Whether [`take_listener`] took the socket in this process.
pub fn taken() -> bool {
    TAKEN.load(Ordering::SeqCst)
}

fn refuse(problem: impl Into<String>) -> ServerError {
    ServerError::Activation {
        problem: problem.into(),
    }
}

/// Takes the listening socket passed by the service manager (descriptor 3),
/// after checking that `LISTEN_PID` names this process, that `LISTEN_FDS`
/// is 1, and that the descriptor is a listening TCP socket. It can be taken
/// once per process; it is then close-on-exec.
pub fn take_listener() -> Result<std::net::TcpListener, ServerError> {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string());
    let (Some(pid), Some(fds)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Err(refuse(
            "no socket was passed (LISTEN_PID and LISTEN_FDS are not set): start litevault \
             from a systemd .socket unit (or a launcher speaking its protocol), or give an \
             address such as 127.0.0.1:9090",
        ));
    };
    let me = std::process::id();
    if pid.parse::<u32>().ok() != Some(me) {
        return Err(refuse(format!(
            "LISTEN_PID={pid} is not this process ({me}): the sockets were passed to another \
             process (run litevault itself as the service, not through a shell that stays)"
        )));
    }
    match fds.parse::<u32>() {
        Ok(1) => {}
        Ok(0) | Err(_) => {
            return Err(refuse(format!("LISTEN_FDS={fds:?}: no socket was passed")));
        }
        Ok(n) => {
            return Err(refuse(format!(
                "LISTEN_FDS={n}: litevault serves HTTP on one socket; give the .socket unit \
                 a single ListenStream="
            )));
        }
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(refuse(
            "the passed socket was already taken in this process",
        ));
    }
    let fd = LISTEN_FDS_START;
    check_listening_tcp(fd)?;
    // SAFETY: fcntl on a descriptor checked open just above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(refuse(format!(
            "cannot mark descriptor {fd} close-on-exec: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: descriptor 3 is an open listening TCP socket (checked), passed
    // to this process for it to own, and taken at most once (TAKEN).
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

/// Checks that `fd` is an open, listening, IPv4 or IPv6 stream socket.
fn check_listening_tcp(fd: RawFd) -> Result<(), ServerError> {
    let int_opt = |opt: libc::c_int| -> std::io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r == 0 {
            Ok(v)
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let kind = int_opt(libc::SO_TYPE).map_err(|e| {
        refuse(format!(
            "descriptor {fd} is not a socket ({e}); LISTEN_FDS says one was passed"
        ))
    })?;
    if kind != libc::SOCK_STREAM {
        return Err(refuse(format!(
            "descriptor {fd} is not a stream socket: use ListenStream= in the .socket unit"
        )));
    }
    let listening =
        int_opt(libc::SO_ACCEPTCONN).map_err(|e| refuse(format!("descriptor {fd}: {e}")))?;
    if listening == 0 {
        return Err(refuse(format!(
            "descriptor {fd} is not listening: the .socket unit must keep the default Accept=no"
        )));
    }
    let domain = int_opt(libc::SO_DOMAIN).map_err(|e| refuse(format!("descriptor {fd}: {e}")))?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(refuse(format!(
            "descriptor {fd} is not a TCP socket (a Unix socket?): litevault serves HTTP on \
             TCP, e.g. ListenStream=127.0.0.1:9090"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keyword_asks_for_the_passed_socket() {
        assert!(is_activation_addr("systemd"));
        assert!(is_activation_addr(" systemd "));
        assert!(!is_activation_addr("systemd:9090"));
        assert!(!is_activation_addr(":9090"));
    }

    #[test]
    fn a_listening_tcp_socket_passes_the_checks_and_others_do_not() {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        check_listening_tcp(l.as_raw_fd()).unwrap();
        // Connected, not listening.
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let e = check_listening_tcp(c.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("not listening"), "{e}");
        // A datagram socket.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = check_listening_tcp(u.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("ListenStream"), "{e}");
        // A Unix socket.
        let dir = tempfile::tempdir().unwrap();
        let s = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let e = check_listening_tcp(s.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("not a TCP socket"), "{e}");
        // Not a socket at all.
        let f = std::fs::File::open(dir.path()).unwrap();
        let e = check_listening_tcp(f.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
    }
}
