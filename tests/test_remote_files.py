"""Files that `ponas remote` writes on the user's machine: where and with which mode."""

import os
import stat
from pathlib import Path

import pytest

from ponas import remote
from ponas.cli.remote import download_destination
from ponas.remote import RemoteError, Session


def test_token_file_is_created_readable_by_its_owner_only(tmp_path, monkeypatch):
    # Only the mode the file is created with counts: a chmod afterwards leaves a window.
    monkeypatch.setattr(remote.os, "chmod", lambda *a, **k: None)
    old = os.umask(0o022)
    try:
        path = Session(url="http://x", token="secret").save(tmp_path / "remote.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_server_cannot_choose_where_a_download_is_written(tmp_path):
    with pytest.raises(RemoteError) as exc:
        download_destination(tmp_path, "/../../escaped.sh")
    assert str(exc.value) == (
        "the server offered an unknown format '/../../escaped.sh'; "
        "known: onnx, pt, pt2, torchscript"
    )
    assert download_destination(tmp_path, "onnx") == tmp_path / "model.onnx"


def test_download_into_a_folder_whose_file_is_a_link_outside_is_refused(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "model.pt").symlink_to(tmp_path / "elsewhere.pt")
    with pytest.raises(RemoteError, match="is not inside --download"):
        download_destination(Path(folder), "pt")
