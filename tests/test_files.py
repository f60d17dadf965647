"""archdsl.files.write_atomic: the one way archdsl writes a file (results, checkpoints, weights, exports)."""
from __future__ import annotations

import os
import stat

import pytest

from archdsl.files import write_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("content,expected", [
    ("a,b\n1,é\n", "a,b\n1,é\n".encode()),
    (b"\x00\x01", b"\x00\x01"),
    (lambda tmp: open(tmp, "wb").write(b"from a writer"), b"from a writer"),
])
def test_writes_text_bytes_or_through_a_writer_with_a_plain_files_mode(tmp_path, content, expected):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new" / "f.csv", content)            # the folder is created
    finally:
        os.umask(old)
    assert (tmp_path / "new" / "f.csv").read_bytes() == expected
    assert _mode(tmp_path / "new" / "f.csv") == 0o640                  # 0666 less the umask, not mkstemp's 0600
    assert os.listdir(tmp_path / "new") == ["f.csv"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "trials.csv"
    target.write_text("old")

    def writer(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise error

    with pytest.raises(type(error)):
        write_atomic(target, writer)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["trials.csv"]


def test_the_writer_sees_the_suffix_it_asked_for(tmp_path):
    seen = []
    write_atomic(tmp_path / "m.onnx", lambda tmp: (seen.append(tmp), open(tmp, "wb").close()), suffix=".onnx")
    assert seen[0].endswith(".onnx") and os.path.dirname(seen[0]) == str(tmp_path)
