"""Package-level behaviour: import without torch, version, errors, threads."""

import subprocess
import sys

import pytest

import mlvec


def test_version_matches_metadata():
    from importlib.metadata import version

    assert mlvec.__version__ == version("mlvec")


def test_import_does_not_import_torch():
    code = "import sys, mlvec; mlvec.cpu_features(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_error_hierarchy():
    assert issubclass(mlvec.MlvecError, Exception)
    assert issubclass(mlvec.FormatError, mlvec.MlvecError)


def test_thread_count_round_trip():
    before = mlvec.get_num_threads()
    try:
        mlvec.set_num_threads(1)
        assert mlvec.get_num_threads() == 1
    finally:
        mlvec.set_num_threads(before)
    assert mlvec.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -3])
def test_thread_count_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="num_threads"):
        mlvec.set_num_threads(bad)


def test_cpu_features_is_a_list_of_names():
    feats = mlvec.cpu_features()
    assert isinstance(feats, list) and all(isinstance(f, str) for f in feats)


def test_cuda_status_explains_itself():
    ok, why = mlvec.cuda_available()
    assert isinstance(ok, bool)
    assert ok or why


def test_unknown_attribute():
    with pytest.raises(AttributeError):
        mlvec.definitely_not_here  # noqa: B018
