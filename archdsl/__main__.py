"""``python -m archdsl``: the same as the ``archdsl`` command. The current directory is taken off
``sys.path`` first (as ``python -P`` does), so a spec's ``plugins:`` never imports a module just
because it sits in the folder the command runs from; add a folder explicitly with PYTHONPATH."""
import os
import sys

if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.getcwd():
    del sys.path[0]

from archdsl.cli import main  # noqa: E402  (after the path change)

sys.exit(main())
