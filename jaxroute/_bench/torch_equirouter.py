"""A PyTorch EquiRouter of docs/method.md §3, written for the benchmark only (needs torch).

Score network (trunk, FiLM, the literal ``[z_m, ẽ_m, z_m ⊙ ẽ_m, |z_m − ẽ_m|]`` head),
the MSE + 50 · pairwise-logistic loss over all valid pairs of a batch, and the cost
network (linear bottleneck, two ReLU layers, MSE on raw USD), trained as the reference
does: cost net first, then the score net, Adam 1e-4, batch 128, reshuffled every epoch,
last partial batch kept. Straightforward eager PyTorch, as a researcher would write it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def build(torch, feature_dim: int, num_models: int):
    """``(score_net, cost_net)`` as ``torch.nn.Module`` s."""
    nn = torch.nn

    def xavier(layer):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    class ScoreNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers, d = [], feature_dim
            for w in (1024, 512, 512):
                layers += [xavier(nn.Linear(d, w)), nn.GELU(), nn.LayerNorm(w, eps=1e-5)]
                d = w
            self.trunk = nn.Sequential(*layers)
            self.embedding = nn.Parameter(0.02 * torch.randn(num_models, 128))
            self.film = xavier(nn.Linear(128, 1024))
            self.model_proj = xavier(nn.Linear(128, 512))
            self.head = nn.Sequential(
                xavier(nn.Linear(2048, 512)),
                nn.GELU(),
                nn.LayerNorm(512, eps=1e-5),
                xavier(nn.Linear(512, 1)),
            )

        def forward(self, x):
            z = self.trunk(x)  # [B, 512]
            gamma, beta = self.film(self.embedding).chunk(2, dim=-1)  # [M, 512] each
            e_t = self.model_proj(self.embedding)  # [M, 512]
            z_m = z[:, None, :] * gamma[None] + beta[None]  # [B, M, 512]
            e_b = e_t[None].expand_as(z_m)
            feats = torch.cat([z_m, e_b, z_m * e_b, (z_m - e_b).abs()], dim=-1)
            return self.head(feats)[..., 0]  # [B, M]

    class CostNet(nn.Module):
        def __init__(self):
            super().__init__()
            d = feature_dim
            dims = [(d, max(d // 4, 1)), (max(d // 4, 1), d), (d, 256), (256, 128)]
            self.lin = nn.ModuleList([nn.Linear(a, b) for a, b in dims])
            self.out = nn.Linear(128, num_models)
            for layer in [*self.lin, self.out]:
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)

        def forward(self, x):
            h = self.lin[1](self.lin[0](x))
            h = torch.relu(self.lin[2](h))
            h = torch.relu(self.lin[3](h))
            return self.out(h)

    return ScoreNet(), CostNet()


def equirouter_loss(torch, s, y, rank_weight: float = 50.0):
    """MSE + ``rank_weight`` · mean over pairs with ``y_i > y_j`` of softplus(−(s_i − s_j))."""
    mse = torch.mean((s - y) ** 2)
    pairs = y[:, :, None] > y[:, None, :]  # [B, M, M]
    diff = s[:, :, None] - s[:, None, :]
    n = pairs.sum()
    rank = torch.nn.functional.softplus(-diff)[pairs].sum() / n.clamp(min=1)
    return mse + rank_weight * rank


def train(
    torch,
    x: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-4,
    seed: int = 42,
) -> dict[str, Any]:
    """Trains the cost net, then the score net; returns the last epoch's mean losses."""
    torch.manual_seed(seed)
    score_net, cost_net = build(torch, x.shape[1], quality.shape[1])
    xt, yt, ct = (torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (x, quality, cost))
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, net, target, loss_fn in (
        ("cost_loss", cost_net, ct, lambda p, t: torch.mean((p - t) ** 2)),
        ("score_loss", score_net, yt, lambda p, t: equirouter_loss(torch, p, t)),
    ):
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            total, count = 0.0, 0
            for start in range(0, len(xt), batch_size):
                idx = perm[start : start + batch_size]
                loss = loss_fn(net(xt[idx]), target[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                count += len(idx)
            out[name] = total / count
    return out
