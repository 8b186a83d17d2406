"""Running the app: uvicorn or granian, one process or several read-only ones."""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal

from mlvec.serve.app import CONFIG_ENV
from mlvec.serve.config import ServeConfig, check_bind, is_loopback

TARGET = "mlvec.serve.app:app_from_environment"
Server = Literal["uvicorn", "granian"]


def announce(config: ServeConfig, host: str, port: int, workers: int, server: str) -> str:
    """The start-up line: where, how many processes, and whether keys protect the service."""
    if config.keys.enabled:
        access = f"API keys required ({len(config.keys.read)} read, {len(config.keys.write)} write)"
    else:
        access = "no API key configured: bound to loopback only, anyone on this machine may read and write"
    mode = "read-only" if config.read_only else "read-write"
    return (f"mlvec serve: {config.data_dir} on http://{host}:{port} ({server}, {workers} process(es), {mode}); "
            f"{access}")


def run(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        server: Server = "uvicorn", log_level: str = "info") -> None:
    """Serve until interrupted. Several ``workers`` need ``read_only`` (one process owns the log)."""
    check_bind(host, config.keys)
    for spec in config.encoders:
        spec.check()
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and not config.read_only:
        raise ValueError(f"--workers {workers}: several processes serve only with --read-only (writes go through "
                         "the one process that owns the write-ahead log)")
    if not is_loopback(host) and not config.keys.write and not config.read_only:
        print("mlvec serve: warning: no write key configured; writes need a write key", file=sys.stderr)
    if server not in ("uvicorn", "granian"):
        raise ValueError(f"--server: 'uvicorn' or 'granian', got {server!r}")
    print(announce(config, host, port, workers, server), file=sys.stderr, flush=True)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ[CONFIG_ENV] = config.to_json()
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(TARGET, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                    access_log=False, timeout_graceful_shutdown=30)
    elif server == "granian":
        try:
            from granian import Granian
            from granian.constants import Interfaces
        except ImportError:
            raise ValueError("--server granian: granian is not installed (pip install granian)") from None

        Granian(TARGET, factory=True, address=host, port=port, workers=workers, interface=Interfaces.ASGI,
                log_level=log_level, log_access=False).serve()
