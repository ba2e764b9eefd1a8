import pytest
import torch

from lcz_model.gradnorm import GradNorm

from .conftest import make_batch, tiny_model


class Toy(torch.nn.Module):
    """Shared layer + two regression heads; task "b" has a 10x larger target scale."""

    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Linear(4, 8)
        self.a = torch.nn.Linear(8, 1)
        self.b = torch.nn.Linear(8, 1)

    def losses(self, x, ya, yb):
        h = torch.tanh(self.shared(x))
        return {"a": ((self.a(h).squeeze(1) - ya) ** 2).mean(),
                "b": ((self.b(h).squeeze(1) - yb) ** 2).mean()}


def _toy_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    return x, x[:, 0] - x[:, 1], 10 * (x[:, 2] * x[:, 3])


def test_weights_move_and_sum_to_n_tasks():
    model = Toy()
    x, ya, yb = _toy_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gn = GradNorm(["a", "b"], model.shared.parameters(), alpha=1.5)
    assert gn.weights == {"a": 1.0, "b": 1.0}
    for _ in range(30):
        opt.zero_grad()
        gn.backward(model.losses(x, ya, yb))
        opt.step()
        assert sum(gn.weights.values()) == pytest.approx(2.0, abs=1e-5)
    w = gn.weights
    assert abs(w["a"] - 1.0) > 0.05 and min(w.values()) > 0
    # the gradient norms were measured for both tasks; the first losses were recorded
    assert (gn.last_grad_norms > 0).all() and torch.isfinite(gn.initial_losses).all()


def test_weighted_backward_uses_current_weights():
    model = Toy()
    x, ya, yb = _toy_data()
    gn = GradNorm(["a", "b"], model.shared.parameters())
    with torch.no_grad():
        gn.w.copy_(torch.tensor([0.5, 1.5]))
    losses = model.losses(x, ya, yb)
    ref = torch.autograd.grad(0.5 * losses["a"] + 1.5 * losses["b"], model.a.weight,
                              retain_graph=True)[0]
    gn.backward(losses)
    assert torch.allclose(model.a.weight.grad, ref, atol=1e-6)


def test_single_task_is_plain_backward():
    model = Toy()
    x, ya, yb = _toy_data()
    gn = GradNorm(["a"], model.shared.parameters())
    loss = model.losses(x, ya, yb)["a"]
    ref = torch.autograd.grad(loss, model.shared.weight, retain_graph=True)[0]
    gn.backward({"a": loss})
    assert torch.allclose(model.shared.weight.grad, ref)
    assert gn.weights == {"a": 1.0}


def test_zero_loss_task_gets_no_weight_gradient():
    model = Toy()
    x, ya, yb = _toy_data()
    gn = GradNorm(["a", "b", "c"], model.shared.parameters())
    for _ in range(3):
        model.zero_grad()
        losses = model.losses(x, ya, yb)
        losses["c"] = model.a.bias.sum() * 0.0      # e.g. no pure blocks in this batch
        gn.backward(losses)
    assert torch.isnan(gn.initial_losses[2]) and gn.last_grad_norms[2] == 0
    assert sum(gn.weights.values()) == pytest.approx(3.0, abs=1e-5)
    with pytest.raises(KeyError):
        gn.backward({"a": losses["a"]})


def test_state_dict_roundtrip():
    model = Toy()
    x, ya, yb = _toy_data()
    gn = GradNorm(["a", "b"], model.shared.parameters())
    for _ in range(3):
        model.zero_grad()
        gn.backward(model.losses(x, ya, yb))
    gn2 = GradNorm(["a", "b"], model.shared.parameters())
    gn2.load_state_dict(gn.state_dict())
    assert gn2.weights == gn.weights and gn2.steps == 3
    with pytest.raises(ValueError):
        GradNorm(["a", "c"], model.shared.parameters()).load_state_dict(gn.state_dict())


def test_with_msunet_full():
    m = tiny_model("full", drop_path=0.0)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    gn = GradNorm(m.tasks, m.shared_layer().parameters())
    b = make_batch(b=2, p=2)
    for _ in range(3):
        opt.zero_grad()
        gn.backward(m.losses(b))
        opt.step()
    w = gn.weights
    assert set(w) == {"global", "pure", "local"}
    assert sum(w.values()) == pytest.approx(3.0, abs=1e-5)
    assert any(abs(v - 1.0) > 1e-3 for v in w.values())
