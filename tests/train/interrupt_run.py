"""``python interrupt_run.py SIGNAL N ARGS...``: run ``archdsl train ARGS`` and send this process SIGNAL
(SIGTERM, SIGKILL) as optimizer step N (1-based, counted over the run) starts. A test helper;
:func:`signal_at_step` does the same in-process."""
import os
import signal
import sys

from archdsl.cli import main
from archdsl.train import loop


def signal_at_step(signum: int, at: int):
    """Patch the trainer so that the process receives ``signum`` as step ``at`` starts; -> an undo."""
    original = loop.Trainer._step
    calls = [0]

    def step(self, batches):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signum)
        return original(self, batches)

    loop.Trainer._step = step
    return lambda: setattr(loop.Trainer, "_step", original)


if __name__ == "__main__":
    signal_at_step(getattr(signal, sys.argv[1]), int(sys.argv[2]))
    sys.exit(main(["train"] + sys.argv[3:]))
