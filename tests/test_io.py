"""jaxroute._io: a failed write leaves the previous file whole and no temporary behind."""

import errno
import json
import os

import pytest
from matplotlib.figure import Figure

from jaxroute import _io


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    _io.atomic_write_json(path, {"a": 1})
    monkeypatch.setattr(_io.os, "fsync", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        _io.atomic_write_json(path, {"a": 2, "b": list(range(1000))})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_write_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    monkeypatch.setattr(_io.os, "fsync", _disk_full)
    with pytest.raises(OSError) as e:
        _io.atomic_write_text(path, "{}")
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == f"[Errno 28] No space left on device: '{path}'"
    assert list(tmp_path.iterdir()) == []


def test_a_failing_serialiser_writes_nothing(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(ValueError):
        _io.atomic_write_json(path, {"a": float("nan")}, allow_nan=False)
    assert list(tmp_path.iterdir()) == []


def test_atomic_savefig_writes_a_png_and_keeps_the_old_one_on_failure(tmp_path, monkeypatch):
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    path = tmp_path / "f.png"
    _io.atomic_savefig(path, fig, dpi=50)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    monkeypatch.setattr(_io.os, "fsync", _disk_full)
    with pytest.raises(OSError):
        _io.atomic_savefig(path, fig, dpi=80)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
