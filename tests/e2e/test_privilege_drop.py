"""Started as root, ``mailyard serve`` gives up root before it runs any worker or the
dispatcher; everything it writes under ``data_dir`` is private (0600/0700)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import smtplib
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from mailyard.tls import ensure_certificate
from tests.support.certs import unverified_tls
from tests.support.mailyard_server import MailyardServer, free_port

pytestmark = pytest.mark.e2e

TEST_USER = "mailyard-test"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _test_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", TEST_USER], check=True)
        return pwd.getpwnam(TEST_USER)


@pytest.fixture
def public_root():
    """A directory the unprivileged user can reach (pytest's own are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="mailyard-priv-", dir="/tmp"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _reachable_launcher(user: pwd.struct_passwd, scratch: Path) -> list[str]:
    """A launcher under which ``user`` can run this interpreter.  Where it lives under a
    directory closed to other users (a Python installed in /root), the server runs in a
    private mount namespace in which that directory shows only the interpreter's tree."""
    # The probe drops privileges the way the server does, then starts the interpreter
    # again, as the server starts its workers (setpriv is not a faithful stand-in: its
    # exec of a path under /root succeeded where the server's failed).
    probe = [sys.executable, "-c",
             "import os, subprocess, sys; os.setgroups([]); "
             f"os.setresgid({user.pw_gid}, {user.pw_gid}, {user.pw_gid}); "
             f"os.setresuid({user.pw_uid}, {user.pw_uid}, {user.pw_uid}); "
             "subprocess.run([sys.executable, '-c', 'import uvloop, mailyard'], check=True)"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return []
    prefix = Path(sys.base_prefix).resolve()
    closed = next((p for p in reversed(prefix.parents) if not p.stat().st_mode & 0o001), None)
    if closed is None or shutil.which("unshare") is None:
        pytest.skip(f"{sys.executable} is not usable by {user.pw_name}")
    shown = prefix.relative_to(closed).parts[0]
    stand_in = scratch / "stand-in"
    (stand_in / shown).mkdir(parents=True)
    os.chmod(stand_in, 0o711)
    script = (f'mount --bind "{closed / shown}" "{stand_in / shown}" && '
              f'mount --rbind "{stand_in}" "{closed}" && exec "$@"')
    launcher = ["unshare", "-m", "--", "sh", "-c", script, "sh"]
    if subprocess.run([*launcher, *probe], capture_output=True).returncode:
        pytest.skip(f"{sys.executable} is not usable by {user.pw_name} here")
    return launcher


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.split()
    return out


def _workers(supervisor_pid: int, module: str = "mailyard.daemon.worker") -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid), "-f", module],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _tree(top: Path):  # type: ignore[no-untyped-def]
    yield top, os.lstat(top)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            yield path, os.lstat(path)


@needs_root
def test_serve_as_root_runs_as_the_configured_user(public_root):
    user = _test_user()
    # A certificate whose key only root can read: the workers still serve TLS with it.
    secret = public_root / "secret"
    secret.mkdir(mode=0o700)
    cert, key = ensure_certificate(secret, "mx.example.test")
    https = free_port()
    srv = MailyardServer(public_root / "srv", workers=2, http=True, overrides={
        "user": TEST_USER, "allow_root": False, "tls": {"cert": cert, "key": key},
        "listen": {"https": [f"127.0.0.1:{https}"]}})
    os.chmod(srv.root, 0o711)
    srv.launcher = _reachable_launcher(user, public_root)
    # Run as root before the first start: the server gives data_dir to its user.
    srv.add_user("alice@example.test", "alice-secret")
    key = srv.api_key("k", "contacts")
    with srv:
        pids = [srv.proc.pid, *_workers(srv.proc.pid)]
        assert len(pids) == 3
        http_workers = _workers(srv.proc.pid, "mailyard.daemon.http_worker")
        assert len(http_workers) == 1
        for pid in pids + http_workers:
            st = _status(pid)
            assert st["Uid"] == [str(user.pw_uid)] * 4, (pid, st["Uid"])
            assert st["Gid"] == [str(user.pw_gid)] * 4, (pid, st["Gid"])
            assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0
            assert "0" not in st.get("Groups", [])
        # Run as root while the server runs: the CLI's files belong to the server's user.
        srv.add_user("bob@example.test", "bob-secret")
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
            s.sendmail("x@remote.test", ["alice@example.test"], "Subject: 25\r\n\r\nhi\r\n")
        with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], timeout=10,
                              context=unverified_tls()) as s:
            s.login("bob@example.test", "bob-secret")
            s.sendmail("bob@example.test", ["alice@example.test"], "Subject: 465\r\n\r\nhi\r\n")
        assert len(srv.wait_for_messages("alice@example.test", 2)) == 2
        assert srv.wait_queue_empty()
        # The HTTP worker serves TLS with the root-only key and writes bulk.db as the user.
        resp = httpx.post(f"https://127.0.0.1:{https}/api/v1/lists", verify=False,
                          json={"name": "news"},
                          headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 201, resp.text
    for path, st in _tree(srv.data_dir):
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), path
    log = srv.root / "mailyard.log"
    assert log.stat().st_uid == user.pw_uid
    assert "mailyard started" in log.read_text()


@needs_root
def test_an_interpreter_closed_to_the_user_is_named_before_any_worker_starts(public_root):
    """The server checks, once it is the mail user, that it can run the interpreter its
    workers are started with; a Python under a directory closed to that user (root's
    home) is one line naming it, not a worker failing to start."""
    from mailyard.daemon.privileges import Identity, PrivilegeError, check_runnable

    user = _test_user()
    closed = public_root / "closed"
    closed.mkdir(mode=0o700)
    python = closed / "python3"
    python.symlink_to(sys.executable)
    reachable = public_root / "open.txt"
    reachable.write_text("")
    os.chmod(reachable, 0o644)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops privileges as the server does and reports back
        code = 1
        try:
            os.setgroups([])
            os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
            os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
            identity = Identity(user.pw_uid, user.pw_gid, user.pw_name)
            check_runnable(identity, [(str(reachable), os.R_OK)])
            try:
                check_runnable(identity, [(str(python), os.X_OK)])
            except PrivilegeError as exc:
                os.write(write_end, str(exc).encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        message = answer.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    assert message.startswith(f"user '{TEST_USER}' cannot run {python}:"), message
    assert "/root?" in message


def _serve(srv: MailyardServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailyard.cli.main", "--config",
                           str(srv.config_path), "serve"], capture_output=True, text=True,
                          timeout=30)


@needs_root
def test_root_without_allow_root_refuses_to_start(tmp_path):
    srv = MailyardServer(tmp_path, overrides={"user": "root", "allow_root": False})
    res = _serve(srv)
    assert res.returncode == 2
    assert res.stderr.startswith("mailyard: refusing to run as root:")
    assert "allow_root = true" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not srv.data_dir.exists()  # refused before creating anything


@needs_root
def test_missing_user_is_refused_with_how_to_create_it(tmp_path):
    srv = MailyardServer(tmp_path, overrides={"user": "mailyard-no-such-user",
                                              "allow_root": False})
    res = _serve(srv)
    assert res.returncode == 2
    assert "user 'mailyard-no-such-user' does not exist" in res.stderr
    assert "useradd --system" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_unusable_data_dir_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "a-file").write_text("")
    srv = MailyardServer(tmp_path, overrides={"data_dir": str(tmp_path / "a-file" / "data")})
    res = _serve(srv)
    assert res.returncode == 2
    assert res.stderr.startswith("mailyard: ") and "Not a directory" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_data_dir_files_are_private_despite_a_loose_umask(tmp_path):
    srv = MailyardServer(tmp_path)
    srv.data_dir.mkdir(mode=0o755)  # an existing, too open data_dir is repaired
    os.chmod(srv.data_dir, 0o755)
    old = os.umask(0o022)
    try:
        srv.add_user("alice@example.test", "alice-secret")
        with srv:
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
                s.sendmail("x@remote.test", ["alice@example.test"], "Subject: t\r\n\r\nhi\r\n")
            assert srv.wait_for_messages("alice@example.test", 1)
            assert srv.wait_queue_empty()
            # The metric files of the running processes, and the index's WAL files.
            deadline = time.monotonic() + 10
            while len(list((srv.data_dir / "run" / "metrics").glob("*.json"))) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            seen = {p.relative_to(srv.data_dir).as_posix(): st for p, st in _tree(srv.data_dir)}
    finally:
        os.umask(old)
    assert {"queue/index.db-wal", "directory.db", "tls/selfsigned.key", "maildrop",
            "pickup/taken"} <= set(seen)
    # The deliberate exceptions, for the maildrop (queue/pickup.py): local users may
    # pass through data_dir (search bit, never read or write) to drop files into
    # maildrop/ (write and search, sticky, never list).  Nothing else is open to them.
    exceptions = {".": 0o711, "maildrop": 0o1733}
    for name, st in seen.items():
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        assert stat.S_IMODE(st.st_mode) == exceptions.get(name, want), (name, oct(st.st_mode))
    assert not (tmp_path / "mailyard.log").stat().st_mode & 0o007


def test_metric_files_of_gone_processes_are_removed(tmp_path):
    srv = MailyardServer(tmp_path, workers=1)
    metrics = srv.data_dir / "run" / "metrics"
    metrics.mkdir(parents=True)
    stale = {"kinds": {"queue_recipients": "gauge"}, "values": [["queue_recipients", [], 1000]]}
    (metrics / "999999999.json").write_text(json.dumps(stale))
    with srv:
        assert not (metrics / "999999999.json").exists()
        [worker] = _workers(srv.proc.pid)
        # As if the worker had dumped a counter and a gauge, then died.  Declared
        # metrics (mailyard.metrics drops other names), that only workers set.
        gauge_row = ["queue_recipients", [["state", "test-gone"]], 3]
        (metrics / f"{worker}.json").write_text(json.dumps({
            "kinds": {"messages_accepted_total": "counter", "queue_recipients": "gauge"},
            "values": [["messages_accepted_total", [], 7], gauge_row]}))
        os.kill(worker, 9)
        deadline = time.monotonic() + 15
        while (metrics / f"{worker}.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # The supervisor carries the counter on; the gauge is gone.
        own = metrics / f"{srv.proc.pid}.json"
        while True:
            text = own.read_text() if own.exists() else ""
            if "messages_accepted_total" in text:
                break
            assert time.monotonic() < deadline + 10
            time.sleep(0.2)
        assert "test-gone" not in text
        assert ["messages_accepted_total", [], 7] in json.loads(text)["values"]
