"""scripts/cs336_adapters.py, the drop-in tests/adapters.py for CS336's suite, exercised as that suite
does (torch tensors in and out, a torch Optimizer, checkpoints of a torch model). Skips without torch."""
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

GLUE = Path(__file__).resolve().parents[1] / "scripts" / "cs336_adapters.py"


@pytest.fixture(scope="module")
def adapters():
    spec = importlib.util.spec_from_file_location("cs336_adapters", GLUE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7, bias=False), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def _train(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 5, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def test_ops_return_torch_tensors(adapters):
    x = torch.randn(2, 4, 6, dtype=torch.float32)
    w = torch.randn(6)
    got = adapters.run_rmsnorm(6, 1e-5, w, x)
    assert isinstance(got, torch.Tensor)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(adapters.run_softmax(x, dim=1), torch.softmax(x, 1), atol=1e-6, rtol=1e-5)
    logits, targets = torch.randn(5, 11), torch.randint(0, 11, (5,))
    torch.testing.assert_close(adapters.run_cross_entropy(logits, targets),
                               torch.nn.functional.cross_entropy(logits, targets), atol=1e-6, rtol=1e-5)


def test_adamw_glue_matches_torch(adapters):
    ours, theirs = _net(0), _net(0)
    _train(ours, adapters.get_adamw_cls()(ours.parameters(), lr=1e-2, weight_decay=0.1,
                                          betas=(0.9, 0.95), eps=1e-8), 200)
    _train(theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1,
                                     betas=(0.9, 0.95), eps=1e-8), 200)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_gradient_clipping_matches_torch(adapters):
    for max_norm in (1e-2, 1e4):
        a, b = _net(1), _net(1)
        x = torch.randn(4, 5)
        for m in (a, b):
            m(x).sum().backward()
        adapters.run_gradient_clipping(a.parameters(), max_norm)
        torch.nn.utils.clip_grad_norm_(b.parameters(), max_norm)
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("to_file_object", [False, True])
def test_checkpoint_round_trip_resumes_exactly(adapters, tmp_path, to_file_object):
    AdamW = adapters.get_adamw_cls()
    model = _net(2)
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    _train(model, opt, 10)
    out = io.BytesIO() if to_file_object else tmp_path / "ckpt.bin"
    adapters.run_save_checkpoint(model, opt, 10, out)
    if to_file_object:
        out.seek(0)

    fresh = _net(3)
    fresh_opt = AdamW(fresh.parameters(), lr=1e-2, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    assert adapters.run_load_checkpoint(out, fresh, fresh_opt) == 10
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    s0, s1 = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert s0.keys() == s1.keys()
    for i in s0:
        assert s0[i]["step"] == s1[i]["step"]
        assert torch.equal(s0[i]["exp_avg"], s1[i]["exp_avg"]) and torch.equal(s0[i]["exp_avg_sq"], s1[i]["exp_avg_sq"])
    _train(model, opt, 5, seed=9)
    _train(fresh, fresh_opt, 5, seed=9)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_get_batch(adapters):
    data = np.arange(100)
    x, y = adapters.run_get_batch(data, 4, 7, "cpu")
    assert x.shape == y.shape == (4, 7) and x.dtype == torch.long
    torch.testing.assert_close(y, x + 1)
    with pytest.raises((RuntimeError, AssertionError)):
        adapters.run_get_batch(data, 4, 7, "cuda:99")
