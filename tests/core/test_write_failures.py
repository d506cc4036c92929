"""Every writer fails with one line naming the path and what to do: no space, read-only, permission
denied, a path under a file (issue 21: 10 raw OSError tracebacks from evaluate, score, view, merge, submit).

The failures are simulated where the process runs as root (permissions do not stop root): writes under a
chosen folder raise the errno a real disk would, with the file name a real one carries (none for ENOSPC
at fsync time, as the kernel reports it); a path under a file is real.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main

ERRNOS = {"ENOSPC": errno.ENOSPC, "EROFS": errno.EROFS, "EACCES": errno.EACCES}
ADVICE = {"ENOSPC": "no space left on the device", "EROFS": "the file system is read-only",
          "EACCES": "permission denied", "ENOTDIR": "a part of the path is a file, not a folder"}


def _under(path, root: Path) -> bool:
    try:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(root)
    except (TypeError, ValueError):
        return False


def failing_disk(monkeypatch, root: Path, kind: str) -> None:
    """Make writes under ``root`` fail as a full (ENOSPC: at fsync), read-only or forbidden disk would."""
    code = ERRNOS[kind]
    root = Path(os.path.abspath(root))

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real_open, real_mkdir, real_replace = builtins.open, os.mkdir, os.replace
    if kind == "ENOSPC":  # files are created (and truncated), then their data cannot be written or synced
        real_fsync = os.fsync

        def fsync(fd):
            if _under(os.readlink(f"/proc/self/fd/{fd}"), root):
                raise OSError(code, os.strerror(code))  # the kernel names no file
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

        def full(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and _under(file, root):
                return DiskFull(handle)
            return handle

        monkeypatch.setattr(builtins, "open", full)
        monkeypatch.setattr(io, "open", full)
        return

    def opener(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and _under(file, root):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _under(path, root) and not os.path.isdir(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if _under(dst, root):
            refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", opener)
    monkeypatch.setattr(io, "open", opener)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "replace", replace)


class DiskFull:
    """A file on a full disk: opening worked (a "w" mode truncated it), writing fails without a file name."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writelines = write

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __iter__(self):
        return iter(self._handle)


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("writers")
    for name, extra in (("run", []), ("s0", ["--shard", "0/2"]), ("s1", ["--shard", "1/2"])):
        result = _invoke(["evaluate", "--model", "oracle", "--masks", "box", "--out", root / name, "--no-progress",
                          "--bootstrap", "0", *extra])
        assert result.exit_code == 0, result.output
    return root


def _command(name: str, runs: Path, target: Path) -> list:
    return {
        "evaluate": ["evaluate", "--model", "oracle", "--out", target / "run", "--no-progress", "--bootstrap", "0"],
        "view": ["view", runs / "run", "--out", target / "view", "--no-progress"],
        "merge": ["merge", runs / "s0", runs / "s1", "--out", target / "merged"],
        "submit": ["submit", runs / "run", "--name", "x", "--root", target / "subs", "--date", "2026-03-01"],
    }[name]


@pytest.mark.parametrize("kind", ["ENOSPC", "EROFS", "EACCES", "ENOTDIR"])
@pytest.mark.parametrize("name", ["evaluate", "view", "merge", "submit"])
def test_a_writer_that_cannot_write_says_so_in_one_line(runs, tmp_path, monkeypatch, name, kind):
    if kind == "ENOTDIR":
        target = tmp_path / "a-file"
        target.write_text("in the way")
    else:
        target = tmp_path / "disk"
        target.mkdir()
        failing_disk(monkeypatch, target, kind)
    result = _invoke(_command(name, runs, target))
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {target}"), result.output
    assert ADVICE[kind] in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("kind", ["ENOSPC", "EROFS", "EACCES"])
def test_score_that_cannot_write_keeps_the_old_results(runs, tmp_path, monkeypatch, kind):
    run = tmp_path / "run"
    shutil.copytree(runs / "run", run)
    before = (run / "results.json").read_bytes()
    failing_disk(monkeypatch, run, kind)
    result = _invoke(["score", run])
    monkeypatch.undo()
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: {run}") and ADVICE[kind] in result.output, result.output
    assert (run / "results.json").read_bytes() == before  # written atomically: never empty or torn
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_while_rescoring_keeps_the_old_results(runs, tmp_path, monkeypatch):
    """results.json is replaced atomically: a disk that fills while it is written leaves the old one."""
    run = tmp_path / "run"
    shutil.copytree(runs / "run", run)
    before = (run / "results.json").read_bytes()
    real_open = builtins.open

    def full(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and "results.json" in os.fsdecode(file):
            return DiskFull(handle)  # created and truncated, then nothing can be written
        return handle

    monkeypatch.setattr(builtins, "open", full)
    monkeypatch.setattr(io, "open", full)
    result = _invoke(["score", run])
    monkeypatch.undo()
    assert result.output.strip() == (f"Error: {run / 'results.json'}: no space left on the device; free some space "
                                     "or choose a folder on another disk"), result.output
    assert (run / "results.json").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["predictions.jsonl", "results.json", "run.json", "run.lock"]


def test_a_full_disk_while_writing_results_leaves_none_and_says_how_to_resume(runs, tmp_path, monkeypatch):
    """Observed: a full disk while writing results left an empty results.json."""
    out = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(fd):
        if ".results.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = _invoke(["evaluate", "--model", "oracle", "--out", out, "--no-progress", "--bootstrap", "0"])
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (f"Error: {out / 'results.json'}: no space left on the device; free some space or "
                                     "choose a folder on another disk. Finished turns are kept: run the same command "
                                     "with --resume once it is fixed")
    assert not (out / "results.json").exists()
    assert (out / "predictions.jsonl").read_text().count("\n") == 199
    resumed = _invoke(["evaluate", "--out", out, "--resume", "--no-progress", "--bootstrap", "0"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "results.json").read_text())["overall"]["ap50"] == 100.0


def test_view_refuses_to_write_through_a_symbolic_link(runs, tmp_path):
    """Observed: `view` wrote through a symlinked index.html and overwrote an outside file."""
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    out = tmp_path / "view"
    out.mkdir()
    (out / "index.html").symlink_to(outside)
    result = _invoke(["view", runs / "run", "--out", out, "--no-progress"])
    assert result.exit_code == 1 and "index.html is a symbolic link; refusing to write through it" in result.output
    assert outside.read_text() == "keep me"
    (out / "index.html").unlink()
    (out / "images").symlink_to(tmp_path, target_is_directory=True)
    result = _invoke(["view", runs / "run", "--out", out, "--no-progress"])
    assert result.exit_code == 1 and "images is a symbolic link" in result.output
    (out / "images").unlink()
    (out / "images").mkdir()
    (out / "images" / "0.jpg").symlink_to(outside)  # a stale copy that is a link: removed, never followed
    assert _invoke(["view", runs / "run", "--out", out, "--no-progress"]).exit_code == 0
    assert outside.read_text() == "keep me" and not (out / "images" / "0.jpg").is_symlink()
