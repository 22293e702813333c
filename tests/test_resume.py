"""A run SIGKILLed after a checkpoint and restarted with --resume reaches the weights of an
uninterrupted run; checkpoints are written atomically."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from detectron2.engine import default_argument_parser

import train_net
from iou_aware.engine.resume import AtomicDetectionCheckpointer, RandomState, ResumableTrainingSampler


def _opts(output_dir):
    return [
        "DATASETS.TRAIN", "('shapes_tiny_train',)",
        "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "8",
        "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.STEPS", "(3, 6)",  # the learning rate changes both before and after the kill
        "SOLVER.CHECKPOINT_PERIOD", "4",
        "DATALOADER.NUM_WORKERS", "0",
        "SEED", "7",
        "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip


def _final_weights(output_dir):
    return torch.load(output_dir / "model_final.pth", map_location="cpu", weights_only=True)["model"]


@pytest.mark.parametrize("config", ["Shapes/retinanet_slim_R_FPN.yaml", "Shapes/lsnet_slim_R_FPN.yaml"])
def test_sigkill_after_a_checkpoint_then_resume_gives_the_uninterrupted_weights(repo_root, tmp_path, config):
    config_file = f"{repo_root}/configs/{config}"
    uninterrupted = tmp_path / "uninterrupted"
    train_net.main(default_argument_parser().parse_args(["--config-file", config_file, *_opts(uninterrupted)]))

    killed = tmp_path / "killed"
    helper = os.path.join(repo_root, "tests", "helpers", "train_then_sigkill.py")
    env = dict(os.environ, KILL_AFTER_ITER="3", OMP_NUM_THREADS=str(torch.get_num_threads()))
    process = subprocess.run([sys.executable, helper, "--config-file", config_file, *_opts(killed)], env=env)
    assert process.returncode == -signal.SIGKILL
    assert (killed / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (killed / "model_final.pth").exists()
    assert not list(killed.glob("*.tmp"))

    train_net.main(default_argument_parser().parse_args(["--config-file", config_file, "--resume", *_opts(killed)]))
    expected, resumed = _final_weights(uninterrupted), _final_weights(killed)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_resumable_sampler_continues_the_stream_of_its_seed():
    full = ResumableTrainingSampler(10, seed=3)
    stream = iter(full)
    first = [next(stream) for _ in range(25)]
    resumed = iter(ResumableTrainingSampler(10, seed=3, start=12))
    assert [next(resumed) for _ in range(13)] == first[12:]


def test_random_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    state = RandomState()
    torch.save(state.state_dict(), tmp_path / "rng.pth")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    state.load_state_dict(torch.load(tmp_path / "rng.pth", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_a_failed_save_leaves_the_previous_checkpoint_and_tag(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    checkpointer = AtomicDetectionCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000002")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (tmp_path / "model_0000002.pth").exists()
    assert torch.load(tmp_path / "model_0000001.pth", weights_only=True)["model"].keys() == model.state_dict().keys()
