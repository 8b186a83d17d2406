"""The text beside an index: ``<index>.docs.jsonl``, written by ``mlvec index build`` from texts.

Its first line is a header (``{"mlvec_docs": 1, "model": ..., "count": n}``: the encoder that
embedded the documents, so text queries are embedded by the same one), then one line per
document in the order added: ``{"id": ..., "text": ..., "payload": ...}``. ``mlvec index search``
prints the stored text of each hit and returns payloads with ``--out``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlvec.cli._common import CliError, write_atomically

VERSION = 1


def docs_path(index_path: str | Path) -> Path:
    p = Path(index_path)
    return p.with_name(p.name + ".docs.jsonl")


@dataclass
class DocStore:
    model: str | None
    texts: dict[int, str]
    payloads: dict[int, Any]

    def write(self, index_path: str | Path, ids: list[int]) -> Path:
        out = docs_path(index_path)

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps({"mlvec_docs": VERSION, "model": self.model, "count": len(ids)}) + "\n")
                for i in ids:
                    row = {"id": i, "text": self.texts[i]}
                    if i in self.payloads:
                        row["payload"] = self.payloads[i]
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")

        write_atomically(out, write)
        return out

    @classmethod
    def read(cls, index_path: str | Path) -> DocStore | None:
        path = docs_path(index_path)
        if not path.is_file():
            return None
        texts: dict[int, str] = {}
        payloads: dict[int, Any] = {}
        try:
            with open(path, encoding="utf-8") as f:
                header = json.loads(f.readline())
                if header.get("mlvec_docs") != VERSION:
                    raise CliError(f"{path}: not an mlvec document file (version {header.get('mlvec_docs')!r})")
                for line in f:
                    row = json.loads(line)
                    texts[int(row["id"])] = row["text"]
                    if "payload" in row:
                        payloads[int(row["id"])] = row["payload"]
        except (ValueError, KeyError, TypeError) as e:
            raise CliError(f"{path}: unreadable document file ({e})") from None
        if len(texts) != header.get("count"):
            raise CliError(f"{path}: holds {len(texts)} documents, its header says {header.get('count')}")
        return cls(header.get("model"), texts, payloads)
