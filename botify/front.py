"""`server.front: nginx`: nginx takes the clients and hands the WSGI server only whole requests.

nginx reads each request's headers and body itself, with timeouts (`server.header_timeout`,
`server.body_timeout`) and the body limit, and passes complete requests to the WSGI server over
a private Unix socket. A slow or stalled client then holds an nginx connection, not one of the
service's request threads, so one thread per worker suffices, and one thread is what keeps the
tail short under concurrent clients (docs/botify.md, "Slow clients"). The refusals nginx makes
itself carry a JSON error body, as the app's own do.

nginx runs as a child of `botify serve`, in the foreground, with a config written to a private
temporary directory; it is told to stop when the service stops and (on Linux) when the process
that started it dies, so a killed service does not leave it holding the port.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from botify.config import ServiceConfig

NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
START_TIMEOUT = 10.0  # seconds for nginx to listen
REFUSED = "/.botify-refused/"  # where nginx's own refusals are redirected to get their JSON body
STOP_TIMEOUT = 5.0  # seconds nginx gets to finish its requests at a stop, then it is killed

# Status -> message of the refusals nginx makes before the app sees a request. 494 is nginx's
# code for headers beyond its buffers, sent as 400; 408 is a body or headers not sent in time.
REFUSALS = {
    400: "bad request: the HTTP request could not be parsed",
    408: "request timed out: the client did not send its headers or body in time",
    413: "body too large: more than the service accepts (limits.max_batch_body)",
    414: "URL too long",
    494: "request headers too large",
    502: "the service is not answering (starting, stopping or restarting a worker)",
    504: "the service did not answer in time",
}


class FrontError(RuntimeError):
    """nginx is missing, or did not start (its own message says why)."""


def find_nginx() -> str:
    """The nginx executable, or FrontError saying how to install it."""
    found = shutil.which("nginx") or next((path for path in NGINX_PATHS if Path(path).is_file()), None)
    if found is None:
        raise FrontError("server.front: nginx needs nginx installed (Debian: apt-get install nginx; ./scripts/setup.sh installs it)")
    return found


def _json_body(status: int) -> str:
    """An nginx `return` string: the JSON error body, quoted for nginx's config."""
    text = json.dumps({"error": REFUSALS[status]}) + "\n"
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_config(config: ServiceConfig, directory: Path, upstream: Path) -> str:
    """nginx's config: listen where the service would, pass whole requests to `upstream`."""
    server = config.server
    host = f"[{server.host}]" if ":" in server.host else server.host
    largest = max(config.limits.max_body, config.limits.max_batch_body)
    # URIs, not named locations: nginx cannot redirect a request whose request line it could not parse to a named one.
    errors = "\n".join(f"        error_page {status} {REFUSED}{status};" for status in REFUSALS)
    refusals = "\n".join(
        f"        location = {REFUSED}{status} {{ internal; default_type application/json; return {400 if status == 494 else status} {_json_body(status)}; }}"
        for status in REFUSALS
    )
    # As root, nginx's workers would run as `nobody`, who cannot enter the private directory.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {name}_temp_path {directory / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# Written by `botify serve` (botify/front.py) for this run only.
{user}daemon off;
master_process on;
worker_processes {server.workers};
pid {directory / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
{temp}
    client_header_timeout {round(server.header_timeout * 1000)}ms;
    client_body_timeout {round(server.body_timeout * 1000)}ms;
    client_max_body_size {largest};
    client_body_buffer_size {largest};
    upstream botify {{ server unix:{upstream}; keepalive {4 * server.workers * server.threads}; }}
    server {{
        listen {host}:{server.port};
{errors}
        location / {{
            proxy_pass http://botify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering on;
            proxy_read_timeout 60s;
        }}
{refusals}
    }}
}}
"""


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the parent dies (a kill -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class NginxFront:
    """A running nginx in front of the WSGI server's Unix socket `upstream`."""

    config: ServiceConfig
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="botify-front-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def upstream(self) -> Path:
        """The Unix socket the WSGI server listens on (in a directory only this user can enter)."""
        return self.directory / "wsgi.sock"

    def start(self) -> None:
        """Write the config, start nginx and wait until it listens; FrontError with nginx's message if it fails."""
        nginx = find_nginx()
        conf = self.directory / "nginx.conf"
        conf.write_text(render_config(self.config, self.directory, self.upstream))
        self.process = subprocess.Popen(
            [nginx, "-c", str(conf), "-p", str(self.directory), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                raise FrontError(f"nginx exited at start with status {self.process.returncode} (its own message is above)")
            try:
                socket.create_connection((self.config.server.host, self.config.server.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise FrontError(f"nginx did not listen on {self.config.server.host}:{self.config.server.port} within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """Stop nginx gracefully (SIGQUIT: finish the requests in flight), then kill it if it lingers."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
