"""Joining Ray: a local instance, or a cluster at an address checked before Ray waits."""

from __future__ import annotations

import logging
import socket
from typing import Any

from ..errors import ParameterError

RAY_EXTRA = "pip install 'musemo[ray]'"
REACH_SECONDS = 3.0  # an address that does not answer in this time is refused


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (ray.data from here on)
    except ImportError as exc:
        raise ParameterError(f"work on Ray needs Ray Data: {RAY_EXTRA}") from exc
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """The host and port of ``host:port`` or ``ray://host:port``."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ParameterError(
            f"Ray address {address!r}: give HOST:PORT (the head's, e.g. 10.0.0.5:6379)"
        )
    return host.strip("[]"), int(port)


# what a gRPC server (Ray's head) answers the start of an HTTP/2 connection with: its
# SETTINGS frame (9-byte header, type 4)
_HTTP2_START = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4


def check_reachable(address: str, timeout: float = REACH_SECONDS) -> None:
    """Refuse, within ``timeout`` seconds, an address where no gRPC server (a Ray head)
    answers: nothing listening, nothing answering, or something that is not one."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_HTTP2_START)
            header = s.recv(9)
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
    else:
        if len(header) == 9 and header[3] == _SETTINGS:
            reason = _not_a_head(address, timeout)
            if reason is None:
                return
        else:
            reason = "what answers there is not a Ray head (no gRPC)"
    raise ParameterError(
        f"cannot reach a Ray cluster at {address}: {reason} (is its head running? "
        "`ray start --head` prints the address to give)"
    )


# gRPC codes of a server that is not Ray's head: UNIMPLEMENTED (an HTTP/2 server or proxy
# without Ray's services), UNAVAILABLE, DEADLINE_EXCEEDED
_NOT_A_HEAD = {12, 14, 4}


def _not_a_head(address: str, timeout: float) -> str | None:
    """Why the gRPC server at ``address`` is not a Ray head, asked through Ray's own GCS
    client; None when it is one, or when this Ray cannot be asked (ray.init decides)."""
    ray = _ray()
    try:
        from ray._raylet import GcsClient

        GcsClient(address=address).internal_kv_get(b"musemo", None, timeout=timeout)
    except ray.exceptions.RpcError as exc:
        if getattr(exc, "rpc_code", None) in _NOT_A_HEAD:
            return f"the server there is not a Ray head ({exc})"
    except Exception:  # noqa: BLE001, S110 (another Ray version: ray.init decides)
        pass
    return None


def connect(address: str | None = None, **init: Any):
    """Ray, started or joined: a running instance as it is, else a new local one
    (``address`` None; ``init`` goes to ``ray.init``, e.g. ``num_cpus``) or the cluster
    at ``address`` (``HOST:PORT``, ``ray://HOST:PORT``, or ``auto`` for the one this
    machine belongs to). Returns the ``ray`` module."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local"):
        check_reachable(address)
    init = {"include_dashboard": False, "log_to_driver": False,
            "logging_level": logging.WARNING, **init}  # fmt: skip
    try:
        ray.init(address=address, **init)
    except ConnectionError as exc:
        raise ParameterError(f"cannot join the Ray cluster at {address}: {exc}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # musemo's bar instead
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # failures still raise
    return ray
