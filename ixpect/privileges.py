"""Give up privileges once the capture socket is open: a parsed frame must not be
able to reach anything a capability grants.

Started as root with a user, we switch to that user; leaving uid 0 clears every
capability set. Only when capabilities are still held after that (started as a
non-root user with ambient ones and `--user` naming that user) do we call capset().
Without a user we never call setuid() or capset() (systemd's `~@privileged`
filter refuses them). That is how systemd starts capture: an unprivileged user
with CAP_NET_RAW as ambient capability. There we clear the ambient set and
execute ourselves again, handing the open socket down: an exec without ambient
or file capabilities leaves a non-root process with none.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import sys

log = logging.getLogger(__name__)

PR_GET_SECUREBITS = 27
SECBIT_NOROOT = 1
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_libc = ctypes.CDLL(None, use_errno=True)
#: the environment variable naming the capture socket a re-executed process inherits
INHERITED = "IXPECT_INHERITED_SOCKET"


def status(field: str) -> str:
    """A field of /proc/self/status, e.g. status("CapEff") -> "0000000000000000"."""
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == field:
                return value.strip()
    raise KeyError(field)


def effective() -> int:
    return int(status("CapEff"), 16)


def _prctl(*args: int) -> None:
    if _libc.prctl(*(ctypes.c_ulong(a) for a in args)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl{args}: {os.strerror(err)}")


def _clear_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2 words: all zero
    if _libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def drop(user: str | None, handover: int | None = None) -> None:
    """Become `user` (if given) with no capabilities; call before starting threads,
    since capset() applies to the calling thread only. Without a user, capabilities
    left are shed by executing again with the socket `handover` (if given) open."""
    if user:
        pw = pwd.getpwnam(user)  # KeyError: no such user
        if os.getuid() == 0:
            os.setgroups([])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
        if effective() or int(status("CapPrm"), 16):
            _clear_capabilities()
        _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if effective():
            raise RuntimeError(f"capabilities still held after dropping them: CapEff={status('CapEff')}")
    else:
        try:
            _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        except OSError as exc:  # a kernel without ambient capabilities has none to clear
            log.debug("%s", exc)
        root_regains = os.getuid() == 0 and not _libc.prctl(PR_GET_SECUREBITS, 0, 0, 0, 0) & SECBIT_NOROOT
        if handover is not None and effective() and not root_regains:
            _reexec(handover)
    cap = status("CapEff")
    if os.getuid() == 0:
        log.warning("running as root after opening the capture socket; give --user to drop it")
    elif int(cap, 16):
        log.warning("capabilities still held (CapEff=%s): give --user to drop them", cap)
    log.info("running as uid %d gid %d, CapEff=%s", os.getuid(), os.getgid(), cap)


def inherited_socket() -> int | None:
    """The socket descriptor handed down by an exec of `drop`, once (the variable is removed)."""
    fd = os.environ.pop(INHERITED, None)
    return int(fd) if fd is not None else None


def _reexec(fd: int) -> None:
    """Execute this program again with the same arguments, `fd` kept open; no return."""
    os.set_inheritable(fd, True)
    log.info("executing again to shed CapEff=%s, keeping the capture socket (fd %d)", status("CapEff"), fd)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execve(sys.executable, sys.orig_argv, dict(os.environ, **{INHERITED: str(fd)}))
