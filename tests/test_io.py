"""nas.io: files are replaced whole or left as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.io import write_json_atomic, write_text_atomic


def test_write_text_atomic_replaces_and_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.txt"
    assert write_text_atomic(path, "first") == path
    write_text_atomic(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "record.json"
    write_json_atomic(path, {"stage": "old"})
    real_write = Path.write_text

    def half_then_fail(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real_write(self, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(path, {"stage": "new", "padding": "x" * 1000})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"stage": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_write_json_atomic_options(tmp_path: Path) -> None:
    path = write_json_atomic(
        tmp_path / "x.json", {"b": 1, "a": tmp_path}, sort_keys=True, default=str
    )
    text = path.read_text()
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": str(tmp_path), "b": 1}
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "y.json", {"a": tmp_path})
    assert not (tmp_path / "y.json").exists()
