"""The operating-system facilities that confine a sandboxed tool process (Linux), applied inside that process.

`enter_sandbox` is called by a fresh process that leads its own session, before any tool code runs. It tries, in
order, and keeps what the kernel allows:

- user, mount, PID, network and IPC namespaces (`unshare(2)`): no network interface but a loopback that is down, no
  capability over the host even when the caller is root. In a new PID namespace the process forks an init (PID 1)
  that mounts a /proc of its own (so the caller's processes, their command lines and environments are out of sight)
  and a worker under it; when the init ends the kernel kills every process left in the namespace, so nothing the
  tool forked outlives the call, even if it left the process group.
- Landlock (Linux >= 5.13, `landlock(7)`): writes, removals, renames and new files only beneath the working folder
  (and writes to /dev/null); no TCP bind or connect (ABI >= 4); no signals to, and no abstract Unix sockets of,
  processes outside the sandbox (ABI >= 6); no ptrace of, or /proc/PID/mem of, processes outside it; no mounts.
- no capabilities: the worker drops all of them (effective, permitted, inheritable, ambient, bounding set), so a
  caller running as root does not lend the tool its privileges even without a user namespace.
- resource limits (`setrlimit(2)`): address space, CPU time, size of a written file, no core files.

Each facility's name is returned when it took effect, so the caller can say what was enforced and warn about the rest.
"""

from __future__ import annotations

import ctypes
import os
import resource
from collections.abc import Sequence

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000

# Landlock system calls have the same numbers on every architecture (they are newer than the unified table).
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18

_FS_WRITE_FILE = 1 << 1
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE_ANY = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block devices, symlinks
_FS_REFER = 1 << 13  # ABI 2: link or rename across folders
_FS_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

_EXIT_SIGNAL_BASE = 128
"""A relaying process exits with 128 + N when the process it waited for was killed by signal N (as shells do)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)


def enter_sandbox(workdir: str, memory_limit_mb: int, cpu_limit_s: int, file_limit_mb: int) -> list[str]:
    """Confine this process (and, with a PID namespace, return in a worker process under a fresh init).

    Must be called by a single-threaded process that leads its own session. Returns the facilities in force.
    """
    enforced = _unshare_namespaces()
    if "pid_namespace" in enforced:
        _relay_exit_of(os.fork())  # this process stays outside the namespace; its child is the namespace's init
        if "mount_namespace" in enforced:
            enforced += _mount_private_proc()
        _relay_exit_of(os.fork())  # the init waits for the worker: signals to an init are mostly ignored
    enforced += _restrict_with_landlock(workdir)
    enforced += _drop_capabilities()
    _set_limits(memory_limit_mb, cpu_limit_s, file_limit_mb)
    return enforced + ["resource_limits"]


def _relay_exit_of(pid: int) -> None:
    """In the parent (pid != 0): wait for the child and exit with its status; in the child: return."""
    if pid == 0:
        return
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else _EXIT_SIGNAL_BASE - code)


def _unshare_namespaces() -> list[str]:
    """Enter new namespaces: with a user namespace first (works unprivileged), else without (root only), else none."""
    private = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC
    names = ["mount_namespace", "pid_namespace", "network_namespace", "ipc_namespace"]
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(_CLONE_NEWUSER | private) == 0:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
        return ["user_namespace", *names]
    if _libc.unshare(private) == 0:
        return names
    return []


def _mount_private_proc() -> list[str]:
    """As the PID namespace's init: a /proc that shows this namespace's processes only, seen by nobody outside."""
    if _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return []  # without private propagation the new /proc could show up in the caller's mount namespace
    if _libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None) != 0:
        return []  # refused, e.g. where a container masks parts of /proc
    return ["private_proc"]


def _drop_capabilities() -> list[str]:
    """Empty the bounding and ambient sets (so no exec regains a capability), then the process's own sets."""
    with open("/proc/sys/kernel/cap_last_cap") as last:
        for capability in range(int(last.read()) + 1):
            _libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)  # refused without CAP_SETPCAP: nothing to drop
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    no_capabilities = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable; two 32-bit words each
    _check(_libc.capset(header, no_capabilities))
    return ["no_capabilities"]


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _restrict_with_landlock(workdir: str) -> list[str]:
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        return []  # kernel without Landlock, or Landlock not among the enabled security modules
    writes = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE_ANY
    writes |= _FS_REFER if abi >= 2 else 0
    truncate = _FS_TRUNCATE if abi >= 3 else 0
    attr = _RulesetAttr(handled_access_fs=writes | truncate,
                        handled_access_net=_NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        scoped=_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    ruleset = _check(_libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0))
    try:
        _allow_beneath(ruleset, workdir, writes | truncate)
        _allow_beneath(ruleset, os.devnull, _FS_WRITE_FILE | truncate)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        _check(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0))
    finally:
        os.close(ruleset)
    return ["landlock_filesystem"] + (["landlock_tcp"] if abi >= 4 else []) + (["landlock_scope"] if abi >= 6 else [])


def _allow_beneath(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        _check(_libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0))
    finally:
        os.close(fd)


def _check(result: int) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def _set_limits(memory_limit_mb: int, cpu_limit_s: int, file_limit_mb: int) -> None:
    """Address space: what the process maps now plus `memory_limit_mb`; CPU: a SIGXCPU, then SIGKILL a second later."""
    address_space = _mapped_bytes() + memory_limit_mb * 1024 * 1024
    limits: Sequence[tuple[int, int]] = (
        (resource.RLIMIT_AS, address_space),
        (resource.RLIMIT_FSIZE, file_limit_mb * 1024 * 1024),
        (resource.RLIMIT_CORE, 0),
    )
    for which, value in limits:
        _lower_limit(which, value, value)
    _lower_limit(resource.RLIMIT_CPU, cpu_limit_s, cpu_limit_s + 1)


def _lower_limit(which: int, soft: int, hard: int) -> None:
    """Set a limit, never above the hard limit already in force (raising it needs a capability)."""
    _, current = resource.getrlimit(which)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(which, (soft, hard))


def _mapped_bytes() -> int:
    """The process's virtual memory size (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def signal_of_exit_code(code: int) -> int | None:
    """The signal that ended a sandboxed process, from its exit code (negative: killed; above 128: relayed)."""
    if code < 0:
        return -code
    if code > _EXIT_SIGNAL_BASE:
        return code - _EXIT_SIGNAL_BASE
    return None
