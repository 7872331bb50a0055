"""fd-anchored file access: the only way the file tools touch the filesystem.

A checked path *string* is never safe to open: between the check and the ``open`` another process
can swap a directory for a symlink to ``../outside`` (the check-then-open race; a prototype of the
old string-based tools leaked the outside file in ~20% of reads under that race). So, as Go's
``os.Root`` and filepath-securejoin do, a path is resolved into a *file descriptor*, never into a
string:

- the walk starts from an ``O_PATH`` descriptor of the anchor (the workspace root or a mount; the
  anchor path itself may be a symlink: it was vetted by host policy when the worker was created);
- every intermediate component is opened with ``openat(dir_fd, name, O_PATH|O_NOFOLLOW|
  O_DIRECTORY)``, so a component swapped for a symlink fails to open instead of being followed;
- ``..`` in a caller's path is refused outright;
- a symlink met on the way (read with ``readlinkat``) is followed only if its target is relative;
  its components are pushed back onto the walk, and a ``..`` among them pops one real directory
  (and re-walks the kept components from the anchor fd, never a string ``realpath``), so a link
  can never climb above the anchor; at most ``MAX_SYMLINK_HOPS`` links per path;
- the last component is checked with ``fstatat(AT_SYMLINK_NOFOLLOW)`` (so a FIFO or a device is
  refused without being opened at all), then opened with ``O_NOFOLLOW|O_NONBLOCK`` (a FIFO swapped
  in meanwhile cannot block the open) and ``fstat`` must show a regular file.

Every refusal or failure is an :class:`FsError` whose message never names a host path (not even
a symlink's target): the tools turn it into an error *result* the model sees.

Known limit, shared with ``os.Root``: a directory *moved* (renamed) out of the anchor while a walk
holds a descriptor of it can be read through that descriptor for the rest of that one call; that
needs write access both inside and outside the anchor. Linux only (``O_PATH``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

MAX_SYMLINK_HOPS = 32
MAX_PATH_CHARS = 4096  # PATH_MAX: a longer path cannot name a file anyway
MAX_NAME_BYTES = 255  # NAME_MAX

_O_PATH: int = getattr(os, "O_PATH", 0)
_DIR = _O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class FsError(Exception):
    """A refused or failed file access; the message is safe to show (it names no host path)."""


def os_error(exc: OSError) -> FsError:
    """An OSError without its filename (``str(OSError)`` would echo a host path)."""
    known = {
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "not a directory",
        errno.EISDIR: "is a directory",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ELOOP: "a path component changed into a symlink during access",
        errno.ENAMETOOLONG: "a path component is too long",
        errno.ENOSPC: "no space left on device",
        errno.EROFS: "read-only file system",
        errno.EXDEV: "crosses a file system boundary",
        errno.EEXIST: "already exists",
        errno.ENXIO: "not a regular file",
    }
    return FsError(known.get(exc.errno or 0, os.strerror(exc.errno or 0) or "I/O error"))


def split_path(raw: object) -> tuple[bool, tuple[str, ...]]:
    """Validate a caller's path: ``(absolute, components)`` without ``.`` or empty parts.

    Refused: a non-string, an empty or over-long path, a NUL byte, a component over NAME_MAX,
    and any ``..`` (a caller never needs it; symlinks inside the workspace may still use it)."""
    if not isinstance(raw, str) or not raw:
        raise FsError("path must be a non-empty string")
    if len(raw) > MAX_PATH_CHARS:
        raise FsError(f"path is longer than {MAX_PATH_CHARS} characters")
    if "\x00" in raw:
        raise FsError("path contains a NUL byte")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    for part in parts:
        if part == "..":
            raise FsError("'..' is not allowed in a path")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise FsError(f"a path component is longer than {MAX_NAME_BYTES} bytes")
    return raw.startswith("/"), parts


def open_anchor(real_path: str) -> int:
    """An ``O_PATH`` descriptor of a workspace root or mount, by its *real* path as vetted when
    the worker was created: walked from ``/`` with ``O_NOFOLLOW`` at every component, so a
    symlink in the requested path retargeted later (or a component replaced by one) cannot move
    the anchor somewhere the host policy and the allocation manager never saw."""
    parts = [p for p in real_path.split("/") if p]
    try:
        top = os.open("/", _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise FsError(f"the workspace directory is not available ({os_error(exc)})") from None
    try:
        return _walk(top, parts)
    except FsError as exc:
        raise FsError(f"the workspace directory is not available ({exc})") from None
    finally:
        os.close(top)


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a path led: ``name`` in the directory ``dir_fd`` (an ``O_PATH`` fd the caller owns;
    close it), and the real components from the anchor to it, symlinks resolved. ``name`` is ""
    when the path is a directory reached by its own name (``.``, the anchor, ``a/``)."""

    dir_fd: int
    name: str
    parts: tuple[str, ...]


def _readlink(dir_fd: int, name: str) -> str | None:
    """The target of ``name`` if it is a symlink, else None (also when it does not exist)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return None
        raise os_error(exc) from None


def _walk(anchor_fd: int, parts: Sequence[str]) -> int:
    """Re-open real directories ``parts`` from the anchor, following nothing."""
    fd = os.dup(anchor_fd)
    try:
        for part in parts:
            nxt = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError as exc:
        os.close(fd)
        raise os_error(exc) from None
    return fd


def _link_parts(target: str) -> list[str]:
    if target.startswith("/"):
        raise FsError("a symlink on the path points outside the workspace")
    return [p for p in target.split("/") if p not in ("", ".")]


def resolve(anchor_fd: int, parts: Sequence[str], *, follow_last: bool = True) -> Resolved:
    """Resolve ``parts`` below the anchor (see the module docstring). The last component need
    not exist (a write creates it); with ``follow_last`` a symlink there is followed too (within
    the anchor), so a dangling link pointing out can never be written through."""
    pending = list(reversed(parts))  # a stack: the next component is pending[-1]
    stack: list[str] = []
    hops = 0
    cur = os.dup(anchor_fd)
    try:
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":  # only ever from a symlink target: split_path refuses it
                if not stack:
                    raise FsError("a symlink on the path points outside the workspace")
                stack.pop()
                nxt = _walk(anchor_fd, stack)
                os.close(cur)
                cur = nxt
                continue
            if not pending:  # the last component: resolved, never opened here
                target = _readlink(cur, name) if follow_last else None
                if target is None:
                    out, cur = Resolved(cur, name, (*stack, name)), -1
                    return out
            else:
                try:
                    nxt = os.open(name, _DIR, dir_fd=cur)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise os_error(exc) from None
                    target = _readlink(cur, name)
                    if target is None:
                        raise FsError("not a directory") from None
                else:
                    os.close(cur)
                    cur = nxt
                    stack.append(name)
                    continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise FsError(f"more than {MAX_SYMLINK_HOPS} symlinks on the path")
            pending.extend(reversed(_link_parts(target)))
        out, cur = Resolved(cur, "", tuple(stack)), -1
        return out
    finally:
        if cur >= 0:
            os.close(cur)


@contextlib.contextmanager
def resolved(
    anchor_fd: int, parts: Sequence[str], *, follow_last: bool = True
) -> Iterator[Resolved]:
    r = resolve(anchor_fd, parts, follow_last=follow_last)
    try:
        yield r
    finally:
        os.close(r.dir_fd)


def _stat_regular(r: Resolved, *, missing_ok: bool = False) -> os.stat_result | None:
    """lstat the target: a regular file, or None if absent and ``missing_ok``; else FsError."""
    if not r.name:
        raise FsError("is a directory")
    try:
        st = os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise FsError("no such file or directory") from None
    except OSError as exc:
        raise os_error(exc) from None
    _require_regular(st)
    return st


def _require_regular(st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise FsError("is a directory")
    if stat.S_ISLNK(st.st_mode):
        raise FsError("a path component changed into a symlink during access")
    raise FsError("not a regular file (FIFOs, sockets and devices are refused)")


def open_read(r: Resolved) -> int:
    """A read descriptor of the regular file ``r`` names (caller closes it)."""
    _stat_regular(r)
    try:
        fd = os.open(r.name, os.O_RDONLY | _FILE, dir_fd=r.dir_fd)
    except OSError as exc:
        raise os_error(exc) from None
    try:
        _require_regular(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(r: Resolved, max_bytes: int) -> bytes:
    """The whole file, refused if it is larger than ``max_bytes``."""
    fd = open_read(r)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FsError(f"file is larger than {max_bytes} bytes")
    return data


def list_dir(anchor_fd: int, r: Resolved, max_entries: int = 10_000) -> list[tuple[str, str]]:
    """Entries of the directory ``r`` names, as ``(name, kind)``; kind is ``dir``, ``file``,
    ``symlink`` or ``other``. Symlinks are reported, never followed. At most ``max_entries`` are
    read (a huge directory costs a bounded time); one more means "there were more"."""
    try:
        if r.name:
            fd = os.open(r.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=r.dir_fd)  # fmt: skip
        else:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=r.dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FsError("not a directory") from None
        raise os_error(exc) from None
    out: list[tuple[str, str]] = []
    try:
        with os.scandir(fd) as it:
            for entry in it:
                if entry.is_symlink():
                    kind = "symlink"
                elif entry.is_dir(follow_symlinks=False):
                    kind = "dir"
                elif entry.is_file(follow_symlinks=False):
                    kind = "file"
                else:
                    kind = "other"
                out.append((entry.name, kind))
                if len(out) > max_entries:
                    break
    except OSError as exc:
        raise os_error(exc) from None
    finally:
        os.close(fd)
    return out


def write_atomic(r: Resolved, data: bytes, *, check: Callable[[], None] | None = None) -> bool:
    """Replace (or create) the regular file ``r`` names with ``data``, atomically: a temporary
    file in the same directory (``O_CREAT|O_EXCL|O_NOFOLLOW`` through the directory fd), written
    and fsynced, then ``renameat`` over the name and the directory fsynced. Readers see the old or
    the new content, never a mix. Returns whether the file existed before."""
    st = _stat_regular(r, missing_ok=True)
    # the permission bits only: set-user-ID, set-group-ID and sticky never survive a rewrite
    # (as the kernel drops them on a write), or the model could write a new set-user-ID program
    mode = stat.S_IMODE(st.st_mode) & 0o777 if st is not None else 0o644
    if check is not None:
        check()
    try:
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=r.dir_fd)
    except OSError as exc:
        raise os_error(exc) from None
    tmp = f".wr-{secrets.token_hex(8)}.tmp"
    try:
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                dir_fd=dfd,
            )  # fmt: skip
        except OSError as exc:
            raise os_error(exc) from None
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            os.fchmod(fd, mode)  # the umask must not narrow an existing file's mode
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise os_error(exc) from None
        os.close(fd)
        try:
            os.rename(tmp, r.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise os_error(exc) from None
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    finally:
        os.close(dfd)
    return st is not None
