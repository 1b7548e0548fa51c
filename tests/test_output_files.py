"""Where outputs land (hrnn._files: model files and every command's -o): a link's target is
replaced and the link kept, a FIFO or a device is written in place, and a path that cannot be
written fails before the long work, naming the path."""
from __future__ import annotations

import os
import stat
import sys
import threading

import pytest

import hrnn
from conftest import planted_log
from hrnn import cli
from hrnn._files import atomic_file, check_output_path

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="links, FIFOs and devices as on POSIX")


@pytest.fixture(scope="module")
def model():
    users, items, ts = planted_log(n_users=40)
    return hrnn.HRNN(hidden_dimension=32, n_sample=16, batch_size=8, bptt=4, epochs=1, random_state=0,
                     num_threads=1, show_progress=False).fit((users, items, ts))


@posix_only
def test_a_link_keeps_pointing_at_the_new_file(model, tmp_path):
    """A deploy link current.hrnn -> v1.hrnn: saving to the link rewrites v1.hrnn; the link stays."""
    target, link = tmp_path / "v1.hrnn", tmp_path / "current.hrnn"
    target.write_bytes(b"old")
    os.symlink(target.name, link)
    model.save(link)
    assert os.path.islink(link) and os.readlink(link) == target.name
    assert hrnn.load(target).get_params() == model.get_params()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.hrnn", "v1.hrnn"]  # no temporary left


@posix_only
def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []

    def read():
        with open(fifo) as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)  # (blocked for good if nothing is written)
    reader.start()
    with atomic_file(fifo, "w") as f:
        f.write("line\n")
    reader.join(timeout=30)
    assert got == ["line\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


@posix_only
def test_a_device_is_written_in_place_not_replaced(model, tmp_path):
    """A null device of the test's own (never /dev/null: a regression would replace it)."""
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a device node needs root")
    model.save(null)
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_an_empty_path_is_refused():
    with pytest.raises(ValueError, match="output path is empty"):
        check_output_path("")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc, where no file can be created")
def test_a_folder_without_room_for_a_file_fails_before_training(tmp_path, capsys):
    with pytest.raises(OSError, match="cannot write /proc/model.hrnn: cannot create a file in /proc"):
        check_output_path("/proc/model.hrnn")
    data = tmp_path / "log.csv"
    data.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(f"u{k % 30},i{k % 7},{k}\n" for k in range(1200)))
    assert cli.main(["train", str(data), "-o", "/proc/model.hrnn", "--epochs", "1"]) != 0
    err = capsys.readouterr().err
    assert "cannot write /proc/model.hrnn" in err and "epoch" not in err
