"""The Detectron2 compatibility module: the only code that reaches past Detectron2's public API,
checked on the installed build and on a stand-in with the other build's layout (0.6: iterator made
in SimpleTrainer's constructor, no create_local_process_group; master: a lazy iterator and
comm.create_local_process_group)."""

import ast
import pathlib
import socket

import torch
import torch.distributed as dist
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from torch import nn

from iou_aware.engine.launch import _free_port
from iou_aware.utils import detectron2_compat as compat

# Private names of Detectron2 that only the compat module may touch.
DETECTRON2_PRIVATE = {
    "_trainer", "_data_loader_iter", "_data_loader_iter_obj", "_last_eval_results", "_LOCAL_PROCESS_GROUP",
    "_transpose_dense_predictions", "_ema_update", "_decode_multi_level_predictions", "_decode_per_level_predictions",
}  # fmt: skip


class _Holder:
    """A DefaultTrainer's shape: the step runner under ``_trainer``."""

    def __init__(self, runner):
        self._trainer = runner


def _runner(loader):
    model = nn.Linear(1, 1)
    return SimpleTrainer(model, loader, torch.optim.SGD(model.parameters(), lr=0.1))


def test_the_next_batches_come_from_the_replacement_loader():
    runner = _runner([["old"]] * 3)
    compat.replace_train_loader(_Holder(runner), [["new"]] * 3)
    assert runner.data_loader[0] == ["new"]
    assert next(runner._data_loader_iter) == ["new"]


def test_on_master_the_public_reset_data_loader_is_used():
    class MasterRunner:  # master's SimpleTrainer: a lazy iterator and reset_data_loader(builder)
        data_loader, _data_loader_iter_obj = [["old"]], iter([["old"]])

        def reset_data_loader(self, builder):
            self.data_loader, self._data_loader_iter_obj = builder(), None

    runner = MasterRunner()
    compat.replace_train_loader(_Holder(runner), [["new"]])
    assert runner._data_loader_iter_obj is None and runner.data_loader == [["new"]]


def test_last_eval_results_are_empty_until_an_evaluation_ran():
    holder = _Holder(None)
    assert compat.last_eval_results(holder) == {}
    holder._last_eval_results = {"bbox": {"AP": 1.0}}
    assert compat.last_eval_results(holder) == {"bbox": {"AP": 1.0}}


def test_the_local_process_group_is_what_comm_reads(monkeypatch):
    if hasattr(comm, "create_local_process_group"):  # master: Detectron2 makes it
        calls = []
        monkeypatch.setattr(comm, "create_local_process_group", calls.append)
        compat.set_local_process_group(2, 0)
        assert calls == [2]
        monkeypatch.delattr(comm, "create_local_process_group")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", world_size=1, rank=0)
    try:
        monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
        compat.set_local_process_group(1, 0)
        assert comm.get_local_rank() == 0 and comm.get_local_size() == 1
    finally:
        dist.destroy_process_group()


def test_the_free_port_can_be_bound():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", _free_port()))


def test_only_the_compat_module_uses_detectron2_private_names(repo_root):
    root = pathlib.Path(repo_root)
    files = [root / "train_net.py"]
    for folder in ("projects/iou_aware", "tools", "dev", "demo"):
        files += list((root / folder).rglob("*.py"))
    found = []
    for path in files:
        if path.name == "detectron2_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("detectron2"):
                found += [
                    f"{path.name}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")
                ]
            elif isinstance(node, ast.Attribute) and node.attr in DETECTRON2_PRIVATE:
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert found == []
