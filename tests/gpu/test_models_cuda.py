"""The sentiment model on CUDA: bf16 autocast agrees with CPU fp32; training steps run."""
import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TEXTS = ["$AAPL soars on record quarter", "profit warning: shares plunge", "", "x" * 20_000,
         "company files quarterly report", "股票大涨 🚀"]


def test_cuda_predictions_match_cpu():
    from models.sentiment import SentimentModel

    cpu = SentimentModel.untrained_for_tests(device="cpu", seed=0)
    gpu = SentimentModel.untrained_for_tests(device="cuda", seed=0)
    assert gpu.device.type == "cuda"
    p_cpu = cpu.forward(cpu.encode(TEXTS))
    p_gpu = gpu.forward(gpu.encode(TEXTS))
    assert p_gpu.dtype == np.float32
    np.testing.assert_allclose(p_gpu, p_cpu, atol=3e-2)  # bf16 autocast
    batched = gpu.forward(gpu.encode(TEXTS))
    single = np.concatenate([gpu.forward(gpu.encode([t])) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=3e-2)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_cuda_training_steps(method, tmp_path):
    from models.finetune.datasets import Example
    from models.finetune.train import TrainConfig, train
    from models.sentiment import SentimentModel
    from models.text import LABELS

    exs = [Example(f"stock {w} item {i}", LABELS[i % 3])
           for i, w in enumerate(["falls", "holds", "rises"] * 14)]
    cfg = TrainConfig(method=method, max_steps=3, batch_size=8, device="cuda", progress=False)
    res = train(cfg, exs[:33], exs[33:], tmp_path / method)
    sm = SentimentModel.from_checkpoint(res.path, device="cuda")
    assert len(sm.predict_batch(TEXTS)) == len(TEXTS)
