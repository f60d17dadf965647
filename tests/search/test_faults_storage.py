"""Storage and input faults of `archdsl search`: each is one located line and exit 2, no trial is lost.

Run in this process through `archdsl.cli.main` (no interpreter start-up); budgets are 0 or tiny.
"""
from __future__ import annotations

import errno
import multiprocessing
import os
import socket
import threading
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from archdsl.cli import main
from archdsl.search import study as st
from archdsl.search.runner import run_search

HERE = Path(__file__).parent
SPACE = HERE / "tiny_space.yaml"


def _search(capsys, *args: str) -> tuple[int, str]:
    """Exit code and the one error line (``""`` on success); no traceback, never two error lines."""
    rc = main(["search", "--space", str(SPACE), "--no-progress", "--device", "cpu", *args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(errors) == (rc != 0), err
    return rc, errors[0] if errors else ""


def _study_with_trials(out: Path, n: int = 2) -> optuna.Study:
    """A real study.db holding ``n`` finished trials (made without training)."""
    study = optuna.create_study(storage=st.local_storage_url(out), study_name="tiny_space",
                                directions=["maximize", "maximize"])
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(values=[0.5, 100.0 + i], user_attrs={"arch": f"a{i}"}))
    return study


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path / "f"))
    assert (rc, line) == (2, f"archdsl search: error: {tmp_path / 'f'}: --out exists and is not a folder; "
                             f"pick another --out")


@pytest.mark.parametrize("content", [b"junk " * 20, "truncated"])
def test_junk_or_truncated_study_db_is_left_untouched(tmp_path, capsys, content):
    db = tmp_path / "study.db"
    if content == "truncated":
        _study_with_trials(tmp_path, 40)
        db.write_bytes(db.read_bytes()[:len(db.read_bytes()) // 3])
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    rc, line = _search(capsys, "--budget", "1", "--out", str(tmp_path))
    reason = "file is not a database" if content != "truncated" else "database disk image is malformed"
    assert (rc, line) == (2, f"archdsl search: error: {db}: cannot open the study storage: {reason} (it was "
                             f"left untouched: move it away (or pick another --out / --storage) to start a new "
                             f"study)")
    assert db.read_bytes() == before


def test_unknown_storage_scheme(tmp_path, capsys):
    rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path), "--storage", "foo://")
    assert (rc, line) == (2, "archdsl search: error: foo://: cannot open the study storage: Can't load plugin: "
                             "sqlalchemy.dialects:foo (expected sqlite:///FILE, postgresql://..., mysql://... "
                             "or journal:FILE)")


def test_unreachable_postgres_fails_within_the_connect_timeout(tmp_path, capsys, monkeypatch):
    import time

    pytest.importorskip("psycopg2")
    monkeypatch.setattr(st, "CONNECT_TIMEOUT_S", 2)
    with socket.socket() as server:                    # accepts TCP connections, never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        t0 = time.monotonic()
        rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path), "--storage",
                           f"postgresql://user:secret@127.0.0.1:{port}/db")
        seconds = time.monotonic() - t0
    assert rc == 2 and line.startswith(f"archdsl search: error: postgresql://user:***@127.0.0.1:{port}/db: "
                                       f"cannot open the study storage: "), line
    assert "secret" not in line and seconds < 20
    rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path), "--storage",
                       f"postgresql://user@127.0.0.1:{port}/db")          # nobody listens now
    assert rc == 2 and "Connection refused" in line, line


def test_read_only_storage(tmp_path, capsys):
    _study_with_trials(tmp_path)
    db = tmp_path / "study.db"
    if os.geteuid() != 0:                  # a read-only --out
        db.chmod(0o444)
        tmp_path.chmod(0o555)
        args = ["--out", str(tmp_path)]
    else:                                  # root writes anyway: open the same file read-only
        args = ["--out", str(tmp_path), "--storage", f"sqlite:///file:{db}?mode=ro&uri=true"]
    try:
        rc, line = _search(capsys, "--budget", "3", *args)
    finally:
        tmp_path.chmod(0o755)
    assert rc == 2 and ("attempt to write a readonly database" in line or "Permission denied" in line), line
    assert line.endswith("make it writable or pick another --out / --storage)")
    study = optuna.load_study(study_name="tiny_space", storage=st.local_storage_url(tmp_path))
    assert [t.values for t in study.trials] == [[0.5, 100.0], [0.5, 101.0]]


def test_timeout_nan(tmp_path, capsys):
    rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path), "--timeout", "nan")
    assert (rc, line) == (2, "archdsl search: error: --timeout must be a number of seconds >= 0, got nan")


_MAKE_STORAGE = st.make_storage


def _full_storage(url):
    """make_storage, with SQLite's page limit set to the packed database's size: a real "database or
    disk is full" (SQLITE_FULL) as soon as a write needs one more page."""
    storage = _MAKE_STORAGE(url)
    engine = storage.engine

    @sqlalchemy.event.listens_for(engine, "connect")
    def _limit(conn, record):
        conn.execute("VACUUM")
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")

    engine.dispose()
    return storage


def test_disk_full_mid_search_exits_2_and_the_rerun_completes_the_budget(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(st, "make_storage", _full_storage)
    rc, line = _search(capsys, "--budget", "6", "--out", str(tmp_path))
    assert rc == 2 and line == (f"archdsl search: error: {tmp_path / 'study.db'}: cannot write the study: "
                                f"database or disk is full (finished trials are kept; free some space and run "
                                f"the same command again to resume)"), line
    monkeypatch.undo()
    study = optuna.load_study(study_name="tiny_space", storage=st.local_storage_url(tmp_path))
    done = {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}
    assert done and len(done) < 6 and len(study.get_trials(states=(TrialState.RUNNING,))) == 1
    run_search(space=str(SPACE), budget=6, out_dir=str(tmp_path), progress=False, log=lambda s: None)
    study = optuna.load_study(study_name="tiny_space", storage=st.local_storage_url(tmp_path))
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 6 == st.budget_count(study)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert {n: study.trials[n].values for n in done} == done          # no finished trial lost


def test_disk_full_while_writing_the_results(tmp_path, capsys, monkeypatch):
    from archdsl.search import results

    _study_with_trials(tmp_path)

    def no_space(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(results, "write_atomic", no_space)
    rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path))
    assert (rc, line) == (2, f"archdsl search: error: {tmp_path}: cannot write the results: No space left on "
                             f"device (finished trials are kept; free some space and run the same command "
                             f"again to resume)")


def test_resume_with_other_data_or_recipe_is_refused(tmp_path, capsys):
    assert _search(capsys, "--budget", "0", "--out", str(tmp_path)) == (0, "")
    rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path), "--epochs", "2")
    assert (rc, line) == (2, f"archdsl search: error: study 'tiny_space' in {tmp_path / 'study.db'} was run with "
                             f"recipe.epochs 1 (this run: 2): resuming would mix both in one Pareto front; pass "
                             f"--study NEW_NAME (or another --out) to start a new study, or rerun with the "
                             f"study's settings")
    folder = tmp_path / "imgs"
    _image_tree(folder)
    rc, line = _search(capsys, "--budget", "0", "--out", str(tmp_path), "--data", f"imagefolder:{folder}")
    assert rc == 2 and line.startswith(f"archdsl search: error: study 'tiny_space' in {tmp_path / 'study.db'} "
                                       f"was run with data default (sklearn digits): 1437 train / 360 val "
                                       f"images, 10 classes, 3x16x16 (8x8 -> 16x16 bilinear, grey repeated to 3 "
                                       f"channels, normalised by the training split's mean/std) (this run: "
                                       f"imagefolder:{folder}: "), line
    rc, _ = _search(capsys, "--budget", "0", "--out", str(tmp_path), "--study", "other", "--epochs", "2")
    assert rc == 0


def _image_tree(root: Path, n: int = 4) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_a_corrupt_image_is_refused_before_the_first_trial(tmp_path, capsys):
    folder = tmp_path / "imgs"
    _image_tree(folder)
    (folder / "cat" / "notes.jpg").write_text("this is text, not a JPEG\n")
    png = (folder / "dog" / "0.png").read_bytes()
    (folder / "dog" / "cut.png").write_bytes(png[:len(png) // 2])
    out = tmp_path / "out"
    rc, line = _search(capsys, "--budget", "2", "--out", str(out), "--data", f"imagefolder:{folder}")
    assert rc == 2 and line.startswith(f"archdsl search: error: {folder / 'cat' / 'notes.jpg'}: not a readable "
                                       f"image (cannot identify image file"), line
    assert line.endswith("(1 more bad file(s) in the folder); remove it, or pass --skip-bad-images to leave "
                         "bad files out")
    assert not out.exists()                                      # refused before any trial

    rc = main(["search", "--space", str(SPACE), "--no-progress", "--budget", "0", "--out", str(out),
               "--data", f"imagefolder:{folder}", "--skip-bad-images"])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"warning: {folder / 'cat' / 'notes.jpg'}: not a readable image (cannot identify image file" in err
    assert f"warning: {folder / 'dog' / 'cut.png'}: not a readable image (" in err
    assert f"data imagefolder:{folder}: 6 train / 2 val images, 2 classes" in err


def test_skip_bad_images_leaves_exactly_the_bad_files_out(tmp_path):
    from archdsl.data import DataError, load_data

    _image_tree(tmp_path)
    (tmp_path / "dog" / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(DataError, match=r"dog/x\.jpg: not a readable image"):
        load_data(f"imagefolder:{tmp_path}", image_size=8)
    b = load_data(f"imagefolder:{tmp_path}", image_size=8, skip_bad_images=True)
    assert [Path(p).name for p, _ in b.skipped] == ["x.jpg"]
    assert len(b.train) + len(b.val) == 8


def _make_storage_at(url, barrier, queue):
    barrier.wait()
    try:
        st.make_storage(url)
        queue.put("ok")
    except BaseException as e:   # noqa: BLE001 -- reported to the test
        queue.put(f"{type(e).__name__}: {e}")


def test_workers_creating_one_sqlite_storage_together(tmp_path):
    """Six processes create the same new study.db at the same moment (without the lock: IntegrityError
    on alembic_version, or 'table already exists', in most rounds)."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        url = st.local_storage_url(tmp_path / f"r{round_}")
        (tmp_path / f"r{round_}").mkdir()
        barrier, queue = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_make_storage_at, args=(url, barrier, queue)) for _ in range(6)]
        for p in procs:
            p.start()
        got = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
        assert got == ["ok"] * 6


def test_workers_get_distinct_numbers_and_sampler_seeds(tmp_path):
    from archdsl.search.runner import _sampler_seed

    storage = st.make_storage(st.local_storage_url(tmp_path))
    study = optuna.create_study(storage=storage, study_name="s")
    url = st.local_storage_url(tmp_path)
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(st.claim_worker_number(study, storage, url)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [0, 1, 2, 3]
    assert _sampler_seed(7, 0) == 7 and len({_sampler_seed(7, n) for n in got}) == 4


@pytest.mark.parametrize("event", ["begin", "commit"])
def test_ctrl_c_inside_a_database_call_is_raised_after_it_and_leaves_no_lock(tmp_path, event):
    """A SIGINT delivered while SQLAlchemy is inside a write (here: from its own begin/commit
    event) is held until the storage call returns: the write is whole, and the next writer (another
    connection, 1 s busy timeout) is not blocked by a connection the interrupt left holding SQLite's
    write lock. (The unguarded storage left that lock held, and the `tell` of the interrupted trial
    waited the 120 s busy timeout: the CI hang of test_a_burst_of_ctrl_c_then_rerun.)"""
    import signal

    url = st.local_storage_url(tmp_path)
    storage = st.make_storage(url)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    fired: list[str] = []

    def interrupt(*_):
        if not fired:
            fired.append(event)
            os.kill(os.getpid(), signal.SIGINT)

    sqlalchemy.event.listen(storage.engine, event, interrupt)
    with pytest.raises(KeyboardInterrupt):
        storage.set_trial_user_attr(trial._trial_id, "x", 1)
    assert fired == [event]
    other = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 1}})
    other.set_trial_user_attr(trial._trial_id, "y", 2)                     # not "database is locked"
    assert other.get_trial_user_attrs(trial._trial_id) == {"x": 1, "y": 2}
