"""The floors' smoke test of the `dask` extra: one image judged through `audit`'s Dask executor on
a real scheduler and worker started from this environment's `dask` command.

    python .ci/dask_smoke.py IMAGE_ARCHIVE
"""

import socket
import subprocess
import sys
import time
from pathlib import Path

from ociboot import pipeline
from ociboot.audit.executor import open_executor
from ociboot.boot.context import Policy


def main(archive: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dask = Path(sys.executable).parent / "dask"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        ),
        subprocess.Popen(
            [dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"], **quiet
        ),
    ]
    try:
        image = "oci-archive:" + str(Path(archive).resolve())
        for _ in range(150):  # the scheduler takes a moment to listen
            try:
                executor = open_executor(f"dask://127.0.0.1:{port}", Policy(), pipeline.Options(), 1)
                break
            except Exception:
                time.sleep(0.2)
        else:
            raise SystemExit(f"dask smoke: no scheduler answered on 127.0.0.1:{port}")
        try:
            [(reference, checked)] = list(executor.checked([image]))
        finally:
            executor.close()
        verdicts = [report.bootable() for report in checked.reports]
        print(f"dask smoke: {reference}: bootable {verdicts}, unreadable {list(checked.unreadable)}")
        if reference != image or verdicts != [True] or checked.unreadable:
            raise SystemExit("dask smoke: the worker did not judge the example bootable")
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1])
