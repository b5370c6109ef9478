"""``ponas remote`` against a live test server: a user signs in with a real account, lists
runs, reads tables, starts a search through a real worker, waits for it, builds and
downloads a network; and reads one clear line, with the CLI's exit status, when something is
wrong. No mocks: the commands speak HTTP to pytest-django's ``live_server``."""

from __future__ import annotations

import http.server
import io
import json
import socket
import stat
import subprocess
import sys
import threading

import pytest
from django.conf import settings

from ponas.cli import main
from ponas.export import load_bundle
from ponas.remote import Client, NotSignedIn, Session
from ponas.solve import Infeasible, solve
from tests.web.helpers import make_finished_run, make_run
from tests.web.workers import Workers
from webapp.runs.models import Deployment, SearchRun
from webapp.runs.tables import accuracy_table

pytestmark = pytest.mark.django_db(transaction=True)  # the live server has its own connection

# 8x8 input (the digits are 8x8 scans): the worker tests' whole search, seconds on 2 cores
TINY = {"epochs": 2, "finetune_steps": 3, "suffix_samples": 1, "bn_batches": 1, "eval_batches": 1}
TINY["input_size"] = 8


@pytest.fixture
def config(tmp_path, monkeypatch):
    """Where ``ponas remote`` keeps the session: a file of this test's."""
    path = tmp_path / "home" / "ponas" / "remote.json"
    monkeypatch.setenv("PONAS_REMOTE_CONFIG", str(path))
    monkeypatch.delenv("PONAS_USERNAME", raising=False)
    monkeypatch.delenv("PONAS_PASSWORD", raising=False)
    return path


def ponas(capsys, *args: str) -> tuple[int, str, str]:
    """``ponas ARGS`` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def signed_in(live_server, config, alice, monkeypatch, capsys) -> str:
    """Alice has signed in with her password (from the environment, as a script does)."""
    monkeypatch.setenv("PONAS_USERNAME", "alice")
    monkeypatch.setenv("PONAS_PASSWORD", "alice-password-1")
    status, _, err = ponas(capsys, "remote", "login", live_server.url)
    assert status == 0, err
    return live_server.url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_user_signs_in_and_the_token_is_kept_for_their_eyes_only(
    live_server, config, alice, monkeypatch, capsys
):
    monkeypatch.setattr(sys, "stdin", io.StringIO("alice-password-1\n"))
    status, out, err = ponas(
        capsys, "remote", "login", live_server.url + "/", "--username", "alice", "--password-stdin"
    )
    assert status == 0, err
    assert out.startswith(f"signed in to {live_server.url} as alice (token saved in {config}")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    stored = json.loads(config.read_text())
    assert stored["url"] == live_server.url and stored["username"] == "alice"
    assert [p.name for p in config.parent.iterdir()] == ["remote.json"]  # no temporary left

    # the token is a working API token of hers
    status, out, _ = ponas(capsys, "remote", "runs")
    assert (status, out) == (0, "no runs\n")


def test_user_lists_their_runs_and_only_theirs(signed_in, alice, bob, capsys):
    done = make_finished_run(alice)
    queued = make_run(alice, config={"dataset": "digits-small", "epochs": 2}, name="small one")
    make_finished_run(bob)
    status, out, _ = ponas(capsys, "remote", "runs")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "preset/dataset", "state", "progress", "created", "name"]
    assert [line.split()[:4] for line in lines[1:]] == [
        [str(queued.pk), "digits/digits-small", "queued", "0%"],
        [str(done.pk), "digits", "succeeded", "100%"],
    ]
    assert lines[1].rstrip().endswith("small one")

    status, out, _ = ponas(capsys, "remote", "runs", "--status", "succeeded", "--json")
    assert [r["id"] for r in json.loads(out)] == [done.pk]


def test_a_wrong_password_is_one_line_and_nothing_is_stored(
    live_server, config, alice, monkeypatch, capsys
):
    monkeypatch.setenv("PONAS_PASSWORD", "not-her-password")
    status, out, err = ponas(capsys, "remote", "login", live_server.url, "--username", "alice")
    assert status == 2
    assert err == "ponas: error: Unable to log in with provided credentials.\n"
    assert not config.exists()


def test_a_script_without_a_password_is_told_how_to_give_one(live_server, config, capsys):
    status, _, err = ponas(capsys, "remote", "login", live_server.url, "--username", "alice")
    assert status == 2
    assert err == "ponas: error: no password: give --password-stdin or set PONAS_PASSWORD\n"


def test_a_refused_token_says_to_sign_in_again(live_server, config, alice, capsys):
    Session(live_server.url, "not-a-token").save(config)
    status, out, err = ponas(capsys, "remote", "runs")
    assert (status, out) == (2, "")
    assert err == (
        f"ponas: error: {live_server.url} refused the stored token (Invalid token.); "
        f"run `ponas remote login {live_server.url}` to sign in again\n"
    )


def test_commands_before_signing_in_say_how_to(config, capsys):
    status, _, err = ponas(capsys, "remote", "runs")
    assert status == 2
    assert err == "ponas: error: not signed in to a server: run `ponas remote login URL`\n"


def test_a_bad_timeout_setting_is_named(live_server, config, capsys, monkeypatch):
    monkeypatch.setenv("PONAS_REMOTE_TIMEOUT", "soon")
    Session(live_server.url, "token").save(config)
    status, _, err = ponas(capsys, "remote", "runs")
    assert (status, err) == (
        2,
        "ponas: error: PONAS_REMOTE_TIMEOUT='soon': expected seconds, e.g. 120\n",
    )


def test_an_unreachable_server_is_named(config, capsys, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("PONAS_PASSWORD", "secret")
    status, _, err = ponas(capsys, "remote", "login", url, "--username", "alice")
    assert status == 2
    assert err == f"ponas: error: could not reach {url} (Connection refused)\n"

    Session(url, "token").save(config)
    status, _, err = ponas(capsys, "remote", "runs")
    assert (status, err) == (2, f"ponas: error: could not reach {url} (Connection refused)\n")


class Redirecting(http.server.BaseHTTPRequestHandler):
    """A server in front that sends every request to https:// (as SECURE_SSL_REDIRECT does)."""

    def answer(self) -> None:
        self.send_response(301)
        self.send_header("Location", f"https://ponas.example.test{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = answer

    def log_message(self, *args) -> None:
        pass


def test_a_server_that_redirects_names_the_address_to_sign_in_to(config, capsys, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("PONAS_PASSWORD", "secret")
    try:
        status, _, err = ponas(capsys, "remote", "login", url, "--username", "alice")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 2
    assert err == (
        f"ponas: error: {url} redirects to https://ponas.example.test; sign in there: "
        "ponas remote login https://ponas.example.test\n"
    )
    assert not config.exists()


def test_an_unknown_run_is_named(signed_in, capsys):
    status, out, err = ponas(capsys, "remote", "table", "999999")
    assert (status, out) == (2, "")
    assert err == "ponas: error: run 999999 not found\n"
    status, _, err = ponas(capsys, "remote", "deploy", "999999", "--max-macs", "1M")
    assert (status, err) == (2, "ponas: error: run 999999 not found\n")


def test_table_as_csv_and_json_is_the_servers_table(signed_in, alice, tmp_path, capsys):
    run = make_finished_run(alice)
    table = accuracy_table(run)
    status, out, _ = ponas(capsys, "remote", "table", str(run.pk), "--csv")
    assert (status, out) == (0, table.to_csv())

    path = tmp_path / "out" / "table.json"
    status, out, _ = ponas(capsys, "remote", "table", str(run.pk), "-o", str(path))
    assert (status, out) == (0, f"wrote run {run.pk}'s table to {path}\n")
    assert json.loads(path.read_text()) == table.to_dict()

    # the fetched file is a table `ponas deploy` reads on this machine
    status, out, _ = ponas(capsys, "deploy", "--table", str(path), "--max-macs", "1M", "--json")
    expected = {**solve(table, {"macs": 1e6}).to_dict(), "space": table.space}  # an ARCH.json
    assert (status, json.loads(out)) == (0, expected)


def test_a_table_not_ready_yet_says_so(signed_in, alice, capsys):
    run = make_run(alice)
    status, _, err = ponas(capsys, "remote", "table", str(run.pk), "--csv")
    assert status == 2
    assert err == (
        f"ponas: error: run {run.pk} has no accuracy table yet (status queued); it is ready "
        "once the run has succeeded\n"
    )


def test_a_budget_below_every_network_names_the_flag(signed_in, alice, capsys):
    run = make_finished_run(alice)
    with pytest.raises(Infeasible) as expected:
        solve(accuracy_table(run), {"macs": 1000.0})
    status, _, err = ponas(capsys, "remote", "deploy", str(run.pk), "--max-macs", "1K")
    assert status == 2
    assert err == f"ponas: error: --max-macs: {expected.value}\n"
    status, _, err = ponas(capsys, "remote", "deploy", str(run.pk), "--max-macs", "lots")
    assert status == 2
    assert err.startswith("ponas: error: --max-macs: invalid budget 'lots': expected a positive")
    assert not Deployment.objects.exists()


def test_bad_search_settings_name_the_flag(signed_in, capsys):
    status, _, err = ponas(capsys, "remote", "search", "--preset", "nope")
    assert status == 2
    assert err.startswith('ponas: error: --preset: "nope" is not a preset; allowed: ')
    status, _, err = ponas(capsys, "remote", "search", "--preset", "digits", "--set", "epoch=2")
    assert status == 2
    assert err.startswith("ponas: error: --set: unknown search settings ['epoch']; allowed: ")
    assert not SearchRun.objects.exists()


def test_waiting_on_a_cancelled_run_exits_1(signed_in, alice, capsys):
    run = make_run(alice)
    status, out, _ = ponas(capsys, "remote", "cancel", str(run.pk))
    assert (status, out) == (0, f"run {run.pk} cancelled\n")
    status, out, err = ponas(capsys, "remote", "wait", str(run.pk))
    assert (status, out) == (1, f"run {run.pk} cancelled\n")
    # not a terminal: whole lines, no bar frames
    assert "\r" not in err and f"run {run.pk} cancelled: " in err.splitlines()[-1]


def test_signing_out_revokes_the_token_on_the_server_and_forgets_it(signed_in, config, capsys):
    token = Session.load(config).token
    status, out, _ = ponas(capsys, "remote", "logout")
    assert status == 0
    assert out == (
        f"signed out of {signed_in}: the token is removed from {config}\nthe server revoked it\n"
    )
    assert not config.exists()
    with pytest.raises(NotSignedIn):  # a copy of the token no longer signs anyone in
        Client(signed_in, token).runs()
    status, out, _ = ponas(capsys, "remote", "logout")
    assert (status, out) == (0, f"not signed in (no {config}); nothing to do\n")


@pytest.mark.slow
def test_a_script_searches_through_a_worker_then_downloads_a_network(
    signed_in, tmp_path, capsys, monkeypatch
):
    # the live server's first run imports torch while the worker starts: minutes on a busy CI
    monkeypatch.setenv("PONAS_REMOTE_TIMEOUT", "600")
    pool = Workers(1, tmp_path)
    try:
        sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
        status, out, err = ponas(capsys, "remote", "search", "--preset", "digits", *sets, "--wait")
        assert status == 0, f"{out}\n{err}\n{pool.output()}"
        run = SearchRun.objects.get()
        assert out.splitlines() == [
            f"started run {run.pk} (digits search) in queue gpu",
            f"run {run.pk} succeeded: path {' '.join(run.path)}",
        ]
        assert f"run {run.pk}" in err and "100%" in err  # driven by the run's progress
        assert "\r" not in err  # not a terminal: whole lines, no bar frames
        assert "epoch 2: " in err

        status, out, _ = ponas(capsys, "remote", "runs")
        assert out.splitlines()[1].split()[:4] == [str(run.pk), "digits", "succeeded", "100%"]

        status, out, _ = ponas(capsys, "remote", "table", str(run.pk), "--csv")
        assert (status, out) == (0, accuracy_table(run).to_csv())

        budget = solve(accuracy_table(run), {}).cost["macs"]
        folder = tmp_path / "network"
        status, out, err = ponas(
            capsys,
            "remote",
            "deploy",
            str(run.pk),
            "--max-macs",
            str(budget),
            "--formats",
            "pt",
            "--download",
            str(folder),
        )
        assert status == 0, f"{out}\n{err}\n{pool.output()}"
        deployment = Deployment.objects.get()
        assert out.splitlines()[:2] == [
            f"started deployment {deployment.pk} of run {run.pk}: {' '.join(deployment.choices)}",
            f"deployment {deployment.pk} succeeded",
        ]
        assert f"wrote pt: {folder / 'model.pt'}" in out
        model, _ = load_bundle(folder / "model.pt")
        assert list(model.choices) == deployment.choices
        record = json.loads((folder / "deployment.json").read_text())
        assert record["id"] == deployment.pk and record["status"] == "succeeded"
        assert sorted(p.name for p in folder.iterdir()) == ["deployment.json", "model.pt"]

        # the same as a real process (`ponas` is `python -m ponas.cli`): exit status, output
        done = subprocess.run(
            [sys.executable, "-m", "ponas.cli", "remote", "runs", "--json"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=600,  # it imports torch (the parser of `ponas search` does): slow when busy
        )
        assert (done.returncode, done.stderr) == (0, "")
        assert [(r["id"], r["status"]) for r in json.loads(done.stdout)] == [(run.pk, "succeeded")]
    finally:
        pool.stop()
