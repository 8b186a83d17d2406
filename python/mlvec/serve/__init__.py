"""``mlvec serve``: an HTTP retrieval service over mlvec indexes (optional extra ``mlvec[serve]``).

Collections of points (id, vector, optional JSON payload) live under a data folder, each with
its own index (any :func:`mlvec.index.index_factory` description), write-ahead log and
snapshots. Every acknowledged write is fsynced to the log first; snapshots are taken in the
background and the log is cut behind them; a restart loads the last snapshot and replays the
log. Searches (by vector or by text, encoded server-side) run in threads with the GIL released,
and concurrent small searches are combined into one native call.

    >>> from mlvec.serve import ServeConfig, create_app
    >>> app = create_app(ServeConfig(data_dir="./data"))      # any ASGI server runs it

or from the shell: ``mlvec serve --data ./data`` (``docs/serve.md`` has the API with curl
examples), and :class:`Client` from Python.
"""

from mlvec.serve.app import create_app
from mlvec.serve.catalog import import_index
from mlvec.serve.client import Client, ServiceError
from mlvec.serve.config import ApiKeys, EncoderSpec, Limits, ServeConfig
from mlvec.serve.server import run

__all__ = ["create_app", "run", "import_index", "ServeConfig", "Limits", "ApiKeys", "EncoderSpec", "Client", "ServiceError"]
