"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on loopback ports for tests.

:class:`Alertmanager` writes a temporary config (one route to ``webhook_url`` if given,
else to a receiver that sends nowhere), runs the binary as a :class:`ManagedProcess` with
its own storage dir, clustering off, bound to 127.0.0.1 only, waits for ``/-/ready`` and
always stops it (by its PID) on exit.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from extproc.stack.processes import ManagedProcess, free_port, wait_until
from tests.support.tools import require_tool

HOST = "127.0.0.1"


def config(webhook_url: str) -> str:
    """Route every alert to ``webhook_url`` at once (group_wait 0s), resolved ones too."""
    receiver = (
        f"""  - name: team
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""
        if webhook_url
        else "  - name: team\n"
    )
    return f"""route:
  receiver: team
  group_by: [alertname, rollout]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
{receiver}"""


class Alertmanager:
    def __init__(self, root: Path, webhook_url: str = "") -> None:
        binary = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / "alertmanager.yml"
        config_path.write_text(config(webhook_url), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        argv = [binary, f"--config.file={config_path}", f"--storage.path={root / 'data'}"]
        argv += [f"--web.listen-address={HOST}:{self.port}", "--cluster.listen-address="]
        argv += ["--log.level=warn"]
        self.process = ManagedProcess("alertmanager", argv, root / "alertmanager.log")

    def __enter__(self) -> Alertmanager:
        self.process.start()
        try:
            wait_until(self._ready, "Alertmanager to be ready", 30, self.process)
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, silenced and inhibited alike)."""
        query = "&".join(f"filter={k}%3D%22{v}%22" for k, v in filters.items())
        url = f"{self.url}/api/v2/alerts" + (f"?{query}" if query else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            found: list[dict[str, Any]] = json.loads(response.read())
            return found
