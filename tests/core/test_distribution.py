"""What a distribution of mlvec carries besides code: license, project URLs, changelog.

That the built wheel installs and works without a Rust toolchain is checked by
``scripts/check_wheel.sh`` (run by CI)."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parents[2]


def test_distribution_metadata_names_files_that_exist():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    for name in project["license-files"]:
        assert (ROOT / name).is_file(), name
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert {"Repository", "Changelog"} <= set(project["urls"])
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
