"""The server secret in ``<data_dir>/server-secret``: created once, owner-only, the
same for every process that reads it."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from mailyard.daemon.secret import SECRET_NAME, ServerSecretError, derive_key, load_server_secret


def test_created_private_and_stable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = load_server_secret(data)
    path = data / SECRET_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) == 32
    assert load_server_secret(data) == first
    assert sorted(os.listdir(data)) == [SECRET_NAME]  # no temporary file left behind


def _child_reads(data: str, start: multiprocessing.synchronize.Barrier,
                 out: multiprocessing.Queue[bytes]) -> None:
    start.wait(10)
    out.put(load_server_secret(Path(data)))


def test_processes_starting_together_agree(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for attempt in range(5):
        data = tmp_path / f"d{attempt}"
        start = ctx.Barrier(4)
        out = ctx.Queue()
        children = [ctx.Process(target=_child_reads, args=(str(data), start, out))
                    for _ in range(4)]
        for child in children:
            child.start()
        secrets = {out.get(timeout=30) for _ in children}
        for child in children:
            child.join(timeout=30)
        assert len(secrets) == 1, attempt
        assert secrets == {load_server_secret(data)}


@pytest.mark.parametrize("content", ["", "not hex\n", "ab" * 16 + "\n"])
def test_damaged_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    (tmp_path / SECRET_NAME).write_text(content)
    with pytest.raises(ServerSecretError, match="expected 64 hex digits"):
        load_server_secret(tmp_path)


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ServerSecretError, match="server secret"):
        load_server_secret(blocker)


def test_derived_keys_differ_by_purpose() -> None:
    secret = bytes(range(32))
    assert derive_key(secret, "scram decoy") == derive_key(secret, "scram decoy")
    assert derive_key(secret, "scram decoy") != derive_key(secret, "other")
    assert derive_key(secret, "scram decoy") != derive_key(bytes(32), "scram decoy")
