"""Conventions every command shares."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli import cli, jsonable
from s2pipe import __version__
from s2pipe.errors import OutputExistsError, S2PipeError
from s2pipe.outputs import atomic_output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_outputs_show_an_output_metavar_in_help():
    """Issue 22: ``-o, --output PRODUCT`` (the input type's name) in predict and mosaic."""
    for command in ("predict", "mosaic"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "-o, --output PATH" in result.output, result.output
        assert "--output PRODUCT" not in result.output


def test_unknown_command_is_usage_error():
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def test_error_message_is_one_line():
    assert str(S2PipeError("first line\n  second   line")) == "first line second line"


def test_atomic_output_file_success_and_refusal(tmp_path):
    target = tmp_path / "sub" / "out.tif"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".tif"
        tmp.write_text("done")
    assert target.read_text() == "done"
    try:
        with atomic_output(target):
            raise AssertionError("should not get here")
    except OutputExistsError as exc:
        assert "--overwrite" in str(exc)
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_text("again")
    assert target.read_text() == "again"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.tif"]


def test_atomic_output_failure_leaves_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "tiles"
    try:
        with atomic_output(target, directory=True) as tmp:
            (tmp / "half.tif").write_text("x")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not (tmp_path / "new").exists()


def test_atomic_output_directory_overwrite(tmp_path):
    target = tmp_path / "tiles"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_output(target, overwrite=True, directory=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["tiles"]


def test_jsonable_handles_paths_and_numpy(tmp_path):
    import numpy as np

    out = jsonable({"p": tmp_path, "n": np.int64(3), "a": np.arange(2)})
    assert json.loads(json.dumps(out)) == {"p": str(tmp_path), "n": 3, "a": [0, 1]}


def test_unwritable_output_location_is_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli, ["synth", str(blocker / "demo"), "--size", "256"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"Error: cannot write {blocker / 'demo'}")
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_atomic_output_unwritable_parent_raises_output_error(tmp_path):
    from s2pipe.errors import OutputError

    blocker = tmp_path / "f"
    blocker.write_text("x")
    try:
        with atomic_output(blocker / "sub" / "out.tif"):
            raise AssertionError("should not get here")
    except OutputError as exc:
        assert "cannot write" in str(exc)
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
