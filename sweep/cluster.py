"""Ray for the trial runner: an in-process instance bound to loopback, or an existing cluster,
checked before Ray is asked to join it.

In-process, Ray is started with ``address="local"``: always a fresh instance of this process,
never a cluster that Ray remembers from an earlier ``ray start`` (its record outlives a head node
stopped uncleanly) or that ``RAY_ADDRESS`` names. The instance and every process it starts bind
127.0.0.1 only: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before Ray is imported (Ray on
Linux otherwise swaps 127.0.0.1 for the machine's interface address) and the node's address is
passed explicitly.

A cluster is named by ``HOST:PORT``, the address ``ray start --head`` prints. Before
``ray.init`` (which retries for minutes against an address that does not answer) the driver
checks, within :data:`CONNECT_BOUND_S` seconds in all, that the port accepts a connection and
that a Ray head answers there and accepts this machine's token; each failure is a
:class:`ClusterError` of one line saying what to do. A loopback ``HOST`` keeps the driver on
loopback too.

Token authentication (as in Ray 2.60): a head node started while a token exists
(``~/.ray/auth_token``, or ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``) requires it from every
client, and an in-process ``ray.init()`` creates that file when it is missing. Ray's client
sends the token only in ``RAY_AUTH_MODE=token``, which it never turns on for an explicit
address, so a bare ``ray.init(address=...)`` is refused ("Missing authorization header"). When
``RAY_AUTH_MODE`` is unset and this machine has a token, the driver turns token mode on (for a
head started with ``RAY_AUTH_MODE=disabled``, set that on the driver too). ``RAY_AUTH_MODE`` set
by the user is left as it is. The token itself is never read, printed or stored by this module.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from scalewise import checks

RAY_MISSING = "sweeps run on Ray, which is not installed: pip install 'scalewise[sweep]'"
LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 as it is
AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
REACH_TIMEOUT_S = 5.0  # the TCP connection to HOST:PORT
ANSWER_TIMEOUT_S = 15.0  # a Ray head's first reply, a Ray client's start included
CONNECT_BOUND_S = REACH_TIMEOUT_S + ANSWER_TIMEOUT_S
ADDRESS_FORM = "HOST:PORT of a Ray head node (what `ray start --head` prints), e.g. 127.0.0.1:6379"


class ClusterError(ConnectionError):
    """The cluster at an address cannot be used; the message is one line saying why."""


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (an IPv6 host in brackets, ``[::1]:6379``)."""
    host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536) or "/" in host:
        checks.fail("address", address, ADDRESS_FORM)
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def import_ray(*, address: str | None = None) -> Any:
    """The ``ray`` module, its environment prepared for ``address`` (``None``: in-process):
    loopback kept for the in-process instance and loopback addresses, token mode as the module
    docstring says. ``ModuleNotFoundError`` saying how to install Ray when it is missing."""
    loopback = address is None or is_loopback(parse_address(address)[0])
    imported = sys.modules.get("ray") is not None
    if loopback:
        os.environ[LOOPBACK_ENV] = "0"
    if AUTH_MODE_ENV not in os.environ and (address is None or _token_available()):
        # in-process: the mode Ray would pick itself, set explicitly so that it says nothing
        os.environ[AUTH_MODE_ENV] = "token"
    try:
        import ray
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(RAY_MISSING) from error
    _sync_auth_mode()
    if loopback and address is not None and imported and _cluster_addresses_enabled():
        raise ClusterError(f"{address} is a loopback address, but Ray was imported in this "
                           f"process before {LOOPBACK_ENV}=0 was set: set it in the environment")
    return ray


def start(ray: Any, address: str | None, num_cpus: int | None) -> None:
    """Initialize ``ray``: the cluster at ``address`` (once :func:`check_cluster` passed), else a
    fresh in-process instance of ``num_cpus`` CPUs (default: all cores) on 127.0.0.1."""
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK, **quiet)
    else:
        ray.init(address=address, **quiet)


def check_joined(ray: Any, address: str | None) -> None:
    """Raise :class:`ClusterError` when the initialized ``ray`` of this process is joined to
    another cluster than ``address`` (``None``: any will do)."""
    if address is None:
        return
    joined = ray.get_runtime_context().gcs_address
    if _resolved(joined) != _resolved(address):
        raise ClusterError(f"Ray in this process is already joined to {joined}, not {address}: "
                           "run in a fresh process, or without --address")


def _resolved(address: str) -> tuple[str, int]:
    host, port = parse_address(address)
    try:
        return socket.gethostbyname(host), port
    except OSError:
        return host, port


def check_cluster(address: str) -> None:
    """Raise :class:`ClusterError` unless a Ray head node answers at ``address`` and accepts
    this driver, within :data:`CONNECT_BOUND_S` seconds."""
    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as error:
        reason = (f"no answer within {REACH_TIMEOUT_S:g} s" if isinstance(error, TimeoutError)
                  else error.strerror or _first_line(error))
        raise ClusterError(f"no Ray cluster at {address} ({reason}): start a head node there "
                           f"with `ray start --head --port {port}`, or pass the address it "
                           "prints") from None
    answer = _ask_head(address)
    if answer == "ok":
        return
    if answer == "refused":
        raise ClusterError(f"the Ray cluster at {address} refused this machine's "
                           "authentication token (none, or another cluster's): copy the head "
                           f"node's token here, as ~/.ray/auth_token or in {TOKEN_ENV} (`ray "
                           "get-auth-token` on the head prints it)")
    raise ClusterError(f"{address} accepts connections but no Ray head node answered there "
                       f"within {ANSWER_TIMEOUT_S:g} s ({answer}): check the port `ray start "
                       "--head` printed")


# Asks the head for its cluster id with ``GcsClient``, the client every Ray process opens
# first: unlike ``ray.init`` it reports a refused token at once.
_ASK_HEAD = """\
import sys
import ray.exceptions
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).cluster_id
except ray.exceptions.AuthenticationError:
    print("refused")
except Exception as error:
    print(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
else:
    print("ok")
"""


def _ask_head(address: str) -> str:
    """``"ok"`` when a Ray head at ``address`` answers, ``"refused"`` when it refuses this
    machine's token, else why not, within :data:`ANSWER_TIMEOUT_S`. The client runs in a child
    process, ended at the bound: Ray's client retries on its own schedule and writes its
    warnings straight to the standard error, which the child's capture keeps off the console."""
    try:
        done = subprocess.run([sys.executable, "-c", _ASK_HEAD, address], capture_output=True,
                              text=True, timeout=ANSWER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return "no reply"
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else f"the check exited with status {done.returncode}"


def _token_available() -> bool:
    """Whether Ray would find a token here (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH``
    names, else ``~/.ray/auth_token``)."""
    if os.environ.get(TOKEN_ENV):
        return True
    path = os.environ.get(TOKEN_PATH_ENV) or Path.home() / ".ray" / "auth_token"
    return Path(path).is_file()


def _sync_auth_mode() -> None:
    """Make the imported Ray read ``RAY_AUTH_MODE=token`` again (what Ray does itself when it
    turns token mode on) when it was loaded before the variable was set."""
    from ray._raylet import AuthenticationMode, Config, get_authentication_mode

    wants_token = os.environ.get(AUTH_MODE_ENV, "").lower() == "token"
    if wants_token and get_authentication_mode() != AuthenticationMode.TOKEN:
        Config.initialize("")


def _cluster_addresses_enabled() -> bool:
    """Whether the imported Ray replaces loopback addresses by the interface address."""
    from ray._private import ray_constants

    return bool(ray_constants.ENABLE_RAY_CLUSTER)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
