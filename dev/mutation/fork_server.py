#!/usr/bin/env python
"""A fork server that makes mutmut's per-mutant test runs cheap.

Importing torch, torchvision and Detectron2 costs several seconds per pytest process, far more than
the specification tests of a mutant. ``serve`` imports them once, then forks one child per request;
the child imports ``iou_aware`` (the mutated sources: the parent never imports it, and the child
reads no cached bytecode) and runs pytest with the request's arguments. ``run`` is the client that
mutmut calls as its test command (standard library only, so it starts in milliseconds); its exit
status is pytest's.

    python dev/mutation/fork_server.py serve --socket /tmp/s &
    python dev/mutation/fork_server.py run --socket /tmp/s -- -x -q tests/test_postprocessing.py  # pytest after --
"""

import argparse
import json
import os
import socket
import sys
import tempfile

# Imported by the server before it forks: everything heavy the tests need except iou_aware.
PRELOADED = (
    "torch", "torchvision", "numpy", "scipy.stats", "cv2", "pycocotools.coco", "fvcore.nn", "matplotlib.pyplot",
    "detectron2.config", "detectron2.data", "detectron2.engine", "detectron2.evaluation", "detectron2.modeling",
    "detectron2.structures", "detectron2.checkpoint", "pytest",
)  # fmt: skip


def serve(socket_path: str) -> None:
    import importlib

    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in PRELOADED:
        importlib.import_module(name)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if os.path.exists(socket_path):
        os.remove(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(1)
    print(f"[fork_server] ready on {socket_path}", flush=True)
    while True:
        connection, _ = server.accept()
        with connection:
            request = json.loads(_receive(connection))
            if request.get("stop"):
                break
            connection.sendall(str(_run_child(request["cwd"], request["args"])).encode())
    server.close()
    os.remove(socket_path)


def _run_child(cwd, pytest_args) -> int:
    pid = os.fork()
    if pid == 0:  # the child: fresh iou_aware from the (mutated) sources, then pytest
        try:
            os.chdir(cwd)
            sys.dont_write_bytecode = True
            sys.pycache_prefix = tempfile.mkdtemp(prefix="mutation_pycache_")  # no stale .pyc of another mutant
            import pytest

            code = pytest.main(list(pytest_args))
        except BaseException:  # noqa: BLE001  (any crash of the child counts as a failing test run)
            code = 3
        os._exit(int(code))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 4


def run(socket_path: str, pytest_args) -> int:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(socket_path)
    client.sendall(json.dumps({"cwd": os.getcwd(), "args": pytest_args}).encode() + b"\n")
    client.shutdown(socket.SHUT_WR)
    code = int(_receive(client))
    client.close()
    return code


def stop(socket_path: str) -> None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(socket_path)
    client.sendall(b'{"stop": true}\n')
    client.close()


def _receive(connection) -> str:
    chunks = []
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks).decode().strip()


def main():
    argv = sys.argv[1:]
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("serve", "run", "stop"))
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.socket)
    elif args.command == "stop":
        stop(args.socket)
    else:
        sys.exit(run(args.socket, pytest_args))


if __name__ == "__main__":
    main()
