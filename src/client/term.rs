//! The few descriptor facts the client needs from libc: is it a terminal,
//! readiness of a blocking stdin, and the local time of day for the
//! timestamp column. Raw mode and drawing are crossterm's and ratatui's.

use std::io;
use std::os::fd::RawFd;

/// True when `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// True when a read on `fd` would not block (data, end of file or an error
/// is waiting). Stdin stays in blocking mode, since O_NONBLOCK would leak to
/// the shell that shares it; this check is what lets the loop read it safely.
pub fn readable_now(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc > 0 && pfd.revents != 0
}

/// Reads once from `fd` into `buf`; EINTR is retried.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The local time of day at `secs` since the Unix epoch, as `HH:MM`.
pub fn clock_at(secs: u64) -> String {
    let when = libc::time_t::try_from(secs).unwrap_or(0);
    // SAFETY: localtime_r writes only into the tm we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&when, &mut tm) }.is_null() {
        return "--:--".into();
    }
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// The local calendar day of `secs` since the Unix epoch, as
/// `Tue 1 Dec 2026`.
pub fn day_at(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let when = libc::time_t::try_from(secs).unwrap_or(0);
    // SAFETY: localtime_r writes only into the tm we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&when, &mut tm) }.is_null() {
        return "----".into();
    }
    let day = DAYS.get(tm.tm_wday as usize).unwrap_or(&"?");
    let month = MONTHS.get(tm.tm_mon as usize).unwrap_or(&"?");
    format!("{day} {} {month} {}", tm.tm_mday, tm.tm_year + 1900)
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
