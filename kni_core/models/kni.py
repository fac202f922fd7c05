"""KNI / NI: every neighbour of the user interacts with every neighbour of the item.

Faithful to the original TensorFlow code (Atomu2014/KNI, ``models.py``/``layers.py``):

* one embedding table, Glorot-uniform over the whole table, row 0 a fixed zero (padding);
* neighbours are drawn from a fixed-degree adjacency table; one draw shuffles the table's
  columns and keeps the first ``n`` - the same columns for every row of a batch, as the
  original's ``tf.random_shuffle`` of the transposed rows (``repeats`` independent draws
  when several sampled passes are batched for evaluation);
* GCN layers, outermost hop first: dropout on the inputs, mean(self, neighbours), a weight
  on every layer but the first, a bias, the activation (none on the innermost layer);
* the interaction uses ``Nu``/``Nv`` as they stand *before* the innermost layer. The
  original still builds that innermost layer and discards its output; we do not build it
  (its weights would only ever see the L2 gradient and never touch a prediction).

Speed: the adjacency table and all sampling live on the model's device, and training
gathers the rows a batch touches as leaves (one per side, ``embed``), so training can hand
exact row gradients to a fused optimizer instead of densifying a table-sized gradient.
Nothing in a forward pass reads a value back to the host on CUDA (no ``.item()``, no
data-dependent shapes), so the GPU never waits for Python between kernels.

Training: the loss is the original's, mean BCE + ``l2 * sum(x^2) / 2`` over the whole
embedding table, the aggregator weights and the ``ni:2`` attention weights. Its gradient is
exact on the fast path too: the L2 part is Adam's coupled ``weight_decay`` (the same gradient,
``l2 * x``, for every row of the table at every step) and the data part reaches the optimizer
as the gradient of the few rows a batch touched (:class:`RowSparseAdam`), never as a
densified table-sized autograd result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..schema import setting
from .base import F, ModelSettings, Module, Recommender, model_name, nn, no_grad, tf_adam_eps, torch

if TYPE_CHECKING:
    from torch import Tensor

# Bounds that keep a run inside what a machine can hold. The paper's settings are far inside
# them (max_degree <= 1024, hidden 128, hops of at most 32, temperature 1 to 100); beyond them a
# run ends in an allocator error or, for the temperature, in float32 overflow (NaN scores).
MAX_DEGREE = 16_384          # the adjacency table is n_entity x max_degree int32
MAX_HIDDEN = 8_192           # the embedding table is n_entity x hidden float32
MAX_HOP_SAMPLE = 4_096       # neighbours sampled per node per hop
MIN_TEMPERATURE = 1e-4       # logits / temperature must stay finite in float32
MAX_TEMPERATURE = 1e6


@dataclass
class ModelConfig(ModelSettings):
    """KNI / NI (``kni_core.models.kni``). Named before the baselines existed (the name shows in
    messages); also :data:`KNIConfig`."""

    name: str = model_name("kni")
    attention: int = setting(1, "1 = ni:1 (softmax of the interaction logits), 2 = ni:2 (additive attention)",
                             choices=(1, 2))
    kg: bool = setting(True, "use the knowledge graph (false = NI: user-item edges only)")
    hop_n_sample: list = setting([1, 4], "nodes sampled per hop, the first is the centre node and must be 1")
    max_degree: int = setting(1024, "width of the fixed-degree adjacency table", lo=1, hi=MAX_DEGREE)
    hidden: int = setting(128, "embedding size", lo=1, hi=MAX_HIDDEN)
    dropout: float = setting(0.5, "dropout rate", lo=0.0, hi=0.999)
    temperature: float = setting(10.0, "softmax temperature of the attention", lo=MIN_TEMPERATURE,
                                 hi=MAX_TEMPERATURE)
    activation: str = setting("relu", "activation of the aggregation layers",
                              choices=("relu", "tanh", "selu", "identity"))

    def graph_needs(self) -> dict:
        return {"kg": self.kg, "reach_hops": len(self.hop_n_sample), "max_degree": self.max_degree}

    def problems(self, checked: set[str]) -> list[ConfigError]:
        if "hop_n_sample" not in checked:
            return []
        hops = self.hop_n_sample
        if not hops or hops[0] != 1 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in hops):
            return [ConfigError(f"model.hop_n_sample: expected a list of positive integers starting with 1 "
                                f"(the centre node), e.g. [1, 4]; got {hops}")]
        if len(hops) < 2:
            return [ConfigError("model.hop_n_sample: at least one hop is needed, e.g. [1, 4]")]
        if max(hops) > MAX_HOP_SAMPLE:
            return [ConfigError(f"model.hop_n_sample: expected at most {MAX_HOP_SAMPLE} neighbours per hop; "
                                f"got {hops}")]
        return []


KNIConfig = ModelConfig


def activation_fn(name: str):
    """The aggregation layers' activation ``model.activation``."""
    return {"relu": torch.relu, "tanh": torch.tanh, "selu": F.selu, "identity": _identity}[name]


def _identity(x: Tensor) -> Tensor:
    return x


def glorot_(tensor: Tensor) -> Tensor:
    """TF-style Glorot uniform over the last two dims (the original's ``glorot``)."""
    bound = math.sqrt(6.0 / (tensor.shape[-2] + tensor.shape[-1]))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout. On CPU, 16 random bits per element are cut from 64-bit draws:
    ~5x faster than ``F.dropout``'s per-element Bernoulli draws, with the keep probability
    quantised to 1/65536. On CUDA, ``F.dropout`` (one fused kernel)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, 2**63 - 1)
    bits = bits.view(torch.int16)[:n].view(x.shape)
    keep = bits >= int(round(p * 65536)) - 32768
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def first_columns(keys: Tensor, n: int) -> Tensor:
    """``keys.argsort(dim=1)[:, :n]``: the columns of the ``n`` smallest keys of each row, in
    ascending order of key.

    On CPU without sorting all columns: ``topk`` finds the ``n + 1`` smallest; when they
    are all distinct, the first ``n`` are the only possible answer, whatever the sort. A
    tie among them (rare: keys are multiples of 2**-24) goes to ``argsort`` itself, so
    the result is always exactly the sort's. On CUDA the plain sort (cheap there, and no
    host sync for the tie check)."""
    if keys.device.type != "cpu" or n + 1 > keys.shape[1]:
        return keys.argsort(dim=1)[:, :n]
    values, cols = torch.topk(keys, n + 1, dim=1, largest=False, sorted=True)
    if bool((values[:, 1:] == values[:, :-1]).any()):
        return keys.argsort(dim=1)[:, :n]
    return cols[:, :n]


def _block_views(vectors: Tensor, blocks: list[Tensor]) -> list[Tensor]:
    """``vectors`` (rows of all blocks, h) cut into one ``(*block.shape, h)`` view per block."""
    if len(blocks) == 1:            # no split: its backward would copy the whole gradient
        return [vectors.view(*blocks[0].shape, -1)]
    return [v.view(*b.shape, -1) for v, b in zip(vectors.split([b.numel() for b in blocks]), blocks)]


class Aggregator(Module):
    """GCN mean aggregator of one hop (``GCNAgg`` in the original)."""

    def __init__(self, hidden: int, weight: bool, activation: str, dropout: float):
        super().__init__()
        self.weight = nn.Parameter(glorot_(torch.empty(hidden, hidden))) if weight else None
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.act = activation_fn(activation)
        self.dropout = dropout

    def forward(self, self_vecs: Tensor, neigh_vecs: Tensor) -> Tensor:
        """``self_vecs`` (M, h), ``neigh_vecs`` (M, n, h) -> (M, h)."""
        self_vecs = dropout(self_vecs, self.dropout, self.training)
        neigh_vecs = dropout(neigh_vecs, self.dropout, self.training)
        hidden = (self_vecs + neigh_vecs.sum(dim=1)) / (neigh_vecs.shape[1] + 1)
        if self.weight is not None:
            hidden = hidden @ self.weight
        return self.act(hidden + self.bias)


class KNI(Recommender):
    name = "kni"
    config_class = ModelConfig
    label = "KNI"
    order = 0
    default = True
    setup_memory = ("model.max_degree", "model.hidden")
    stochastic = True                 # neighbours are sampled at evaluation too
    explainable = True
    shuffle_on_device = True

    @classmethod
    def label_of(cls, model_cfg: ModelConfig) -> str:
        return "KNI" if model_cfg.kg else "NI"

    @classmethod
    def build(cls, cfg, data) -> "KNI":
        with warnings.catch_warnings():          # a read-only memory map: the model never writes it
            warnings.filterwarnings("ignore", message=".*not writable.*")
            adjacency = torch.from_numpy(data.adjacency)
        return cls(data.n_entity, adjacency, cfg.model)

    def __init__(self, n_entity: int, adjacency: Tensor, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.hops = list(cfg.hop_n_sample)
        self.max_degree = adjacency.shape[1]
        if max(self.hops[1:]) > self.max_degree:
            raise ValueError(f"hop_n_sample {self.hops} asks for more neighbours than max_degree {self.max_degree}")
        self.embedding = nn.Parameter(glorot_(torch.empty(n_entity, cfg.hidden)))
        with torch.no_grad():
            self.embedding[0].zero_()
        self.register_buffer("adjacency", adjacency, persistent=False)
        n_layers = len(self.hops) - 1
        # Outermost first; the innermost (n_hop = 0) layer is omitted, see the module doc.
        self.layers = nn.ModuleList(
            Aggregator(cfg.hidden, weight=(n_hop != n_layers - 1), activation=cfg.activation, dropout=cfg.dropout)
            for n_hop in range(n_layers - 1, 0, -1))
        if cfg.attention == 2:
            self.atn_weight_u = nn.Parameter(glorot_(torch.empty(cfg.hidden, 1)))
            self.atn_weight_v = nn.Parameter(glorot_(torch.empty(cfg.hidden, 1)))
            self.atn_bias_u = nn.Parameter(torch.zeros(1))
            self.atn_bias_v = nn.Parameter(torch.zeros(1))
        # Set by optimizer(): gather rows as detached leaves so their gradients can be handed
        # to the optimizer directly (see RowSparseAdam).
        self.row_leaf = False
        self.last_rows: list[tuple[Tensor, Tensor]] = []
        self._buffer: Tensor | None = None

    # -- sampling -------------------------------------------------------------------------
    def sample(self, ids: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``ids`` (R, M) -> (R, M, n): per repeat, the same ``n`` random distinct table columns
        for every row."""
        repeats = ids.shape[0]
        keys = torch.rand(repeats, self.max_degree, device=ids.device, generator=generator)
        cols = first_columns(keys, n)
        # adjacency[ids, cols] as one flat index_select: advanced indexing with two broadcast
        # index tensors costs ~10x more per element on CPU.
        flat = ids.unsqueeze(-1) * self.max_degree + cols.unsqueeze(1)
        return self.adjacency.view(-1).index_select(0, flat.view(-1)).view(flat.shape).long()

    def neighbourhood(self, ids: Tensor, repeats: int, generator=None) -> list[Tensor]:
        """Entity ids of one side, laid out so no embedding has to be copied again:
        ``[(R*B, 1+n1) centre and hop-1, (R*B*n1, n2) hop-2, (R*B*n1*n2, n3) hop-3, ...]``."""
        batch = ids.shape[0]
        centre = ids.unsqueeze(0).expand(repeats, batch)
        frontier = self.sample(centre, self.hops[1], generator)            # (R, B, n1)
        blocks = [torch.cat([centre.unsqueeze(-1), frontier], dim=-1).reshape(repeats * batch, -1)]
        for n in self.hops[2:]:
            frontier = self.sample(frontier.reshape(repeats, -1), n, generator)
            blocks.append(frontier.reshape(-1, n))
        return blocks

    # -- embeddings -----------------------------------------------------------------------
    def embed(self, sides: list[list[Tensor]]) -> list[list[Tensor]]:
        """Embedding vectors of each side's id blocks, block by block (``(*block.shape, h)``).

        Training with ``row_leaf``: each side's rows are one detached leaf (recorded in
        ``last_rows``) whose gradient the optimizer scatters into the table itself
        (:class:`RowSparseAdam`); one leaf per side lets a one-hop side's gradient be
        its block's gradient as is, without a copy of the gathered rows. Inference: both sides
        are gathered into one reused buffer; fresh tens-of-MB tensors per step fragment
        glibc's heap (5 GB peak RSS seen on bc) and fault in every page."""
        ids = [torch.cat([b.reshape(-1) for b in blocks]) for blocks in sides]
        if self.row_leaf and self.training:
            vectors = [self.embedding.detach().index_select(0, i).requires_grad_() for i in ids]
            self.last_rows = list(zip(ids, vectors))
        elif torch.is_grad_enabled():
            vectors = [self.embedding.index_select(0, i) for i in ids]
        else:
            vectors = self._gather_into_buffer(torch.cat(ids)).split([len(i) for i in ids])
        return [_block_views(v, blocks) for v, blocks in zip(vectors, sides)]

    def _gather_into_buffer(self, ids: Tensor) -> Tensor:
        need = ids.numel() * self.embedding.shape[1]
        if self._buffer is None or self._buffer.numel() < need or self._buffer.device != ids.device:
            self._buffer = torch.empty(need, device=ids.device, dtype=self.embedding.dtype)
        out = self._buffer[:need].view(ids.numel(), -1)
        return torch.index_select(self.embedding, 0, ids, out=out)

    # -- forward --------------------------------------------------------------------------
    def forward(self, users: Tensor, items: Tensor, repeats: int = 1, generator=None) -> Tensor:
        """Logits of shape (repeats, batch): one independently sampled pass per repeat."""
        sides = [self.neighbourhood(users, repeats, generator), self.neighbourhood(items, repeats, generator)]
        user_parts, item_parts = self.embed(sides)
        nu, nv = self._interaction_side(user_parts), self._interaction_side(item_parts)
        return self.interact(nu, nv).view(repeats, users.shape[0])

    def _interaction_side(self, blocks: list[Tensor]) -> Tensor:
        """Run the GCN layers; return N = [centre, its hop-1 neighbours], (R*B, 1+n1, h)."""
        if not self.layers:
            return blocks[0]
        h = self.cfg.hidden
        hidden = [blocks[0][:, 0], blocks[0][:, 1:].reshape(-1, h)] + [b.reshape(-1, h) for b in blocks[1:]]
        n_layers = len(self.hops) - 1
        for layer, n_hop in zip(self.layers, range(n_layers - 1, 0, -1)):
            hidden = [layer(hidden[k], hidden[k + 1].view(-1, self.hops[k + 1], h)) for k in range(n_hop + 1)]
        centre = hidden[0]
        return torch.cat([centre.unsqueeze(1), hidden[1].view(centre.shape[0], self.hops[1], h)], dim=1)

    def interact(self, nu: Tensor, nv: Tensor) -> Tensor:
        """sum(softmax-attention * (Nu @ Nv^T)) over all (n1+1)^2 neighbour pairs."""
        logits, coefs = self.pair_terms(nu, nv)
        return (coefs * logits).sum(dim=1)

    def pair_terms(self, nu: Tensor, nv: Tensor) -> tuple[Tensor, Tensor]:
        """The pair scores ``Nu @ Nv^T`` and their attention weights (one softmax over all
        ``(n1+1)^2`` pairs), both flattened to ``(N, (n1+1)^2)``, row-major: user-side neighbour
        ``i``, item-side ``j`` at ``i * (n1+1) + j`` (kni_core.explain reads them)."""
        nu = dropout(nu, self.cfg.dropout, self.training)
        nv = dropout(nv, self.cfg.dropout, self.training)
        logits = torch.bmm(nu, nv.transpose(1, 2))
        if self.cfg.attention == 1:
            scores = logits
        else:
            f_u = nu @ self.atn_weight_u + self.atn_bias_u          # (N, n+1, 1)
            f_v = (nv @ self.atn_weight_v + self.atn_bias_v).transpose(1, 2)
            scores = torch.tanh(f_u + f_v)
        coefs = torch.softmax(scores.flatten(1) / self.cfg.temperature, dim=1)
        return logits.flatten(1), coefs

    @no_grad
    def neighbour_pairs(self, users: Tensor, items: Tensor, repeats: int = 1,
                        generator=None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """What one evaluation-mode :meth:`forward` computes, kept: ``(user-side ids (R*B, n1+1),
        item-side ids, pair scores (R*B, n1+1, n1+1), attention (same))``; the same draws as
        ``forward(users, items, repeats, generator)``, whose logits are ``sum(attention * scores)``."""
        was_training = self.training
        self.eval()
        try:
            sides = [self.neighbourhood(users, repeats, generator), self.neighbourhood(items, repeats, generator)]
            user_parts, item_parts = self.embed(sides)
            nu, nv = self._interaction_side(user_parts), self._interaction_side(item_parts)
            logits, coefs = self.pair_terms(nu, nv)
        finally:
            self.train(was_training)
        n = nu.shape[1]
        return sides[0][0], sides[1][0], logits.view(-1, n, n), coefs.view(-1, n, n)

    # -- training and scoring hooks ---------------------------------------------------------
    def loss(self, users: Tensor, items: Tensor, labels: Tensor) -> Tensor:
        """The batch's mean BCE; the L2 term is the optimizer's weight decay (:meth:`optimizer`)."""
        logits = self(users, items)[0]
        return F.binary_cross_entropy_with_logits(logits, labels.float())

    def optimizer(self, train) -> "KNIOptimizer":
        self.row_leaf = True
        return KNIOptimizer(self, train.lr, train.adam_eps, train.l2)

    def epoch_penalty(self, l2: float) -> float:
        """``l2 * sum(x^2) / 2`` at the epoch's end (at every step it would cost a pass over the table)."""
        return l2 * self.l2_penalty().item() if l2 > 0 else 0.0

    def eval_chunk(self, batch_size: int, repeats: int, rows_budget: int) -> int:
        """``batch_size``, fewer when ``repeats`` passes would gather more than ``rows_budget`` rows."""
        hops = self.hops
        support = sum(math.prod(hops[:k + 1]) for k in range(len(hops)))
        return max(1, min(batch_size, rows_budget // (repeats * 2 * support)))

    def l2_parameters(self) -> list[Tensor]:
        """What the L2 penalty covers besides the embedding table: weights, not biases."""
        params = [layer.weight for layer in self.layers if layer.weight is not None]
        if self.cfg.attention == 2:
            params += [self.atn_weight_u, self.atn_weight_v]
        return params

    def l2_penalty(self) -> Tensor:
        """``sum(x^2) / 2`` over the table and the weights (multiply by ``l2``)."""
        table = self.embedding.detach().reshape(-1)
        total = torch.dot(table, table)
        for p in self.l2_parameters():
            total = total + p.detach().pow(2).sum()
        return total / 2

    @no_grad
    def predict(self, users: Tensor, items: Tensor, repeats: int = 1, generator=None) -> Tensor:
        """Mean sigmoid score over ``repeats`` sampled passes (evaluation mode)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(users, items, repeats, generator)).mean(dim=0)
        finally:
            self.train(was_training)


class RowSparseAdam:
    """Adam over the embedding table fed with only the rows a batch touched.

    The table's ``.grad`` is a persistent zero buffer: the gradients of the gathered rows
    are added in (repeated ids accumulate), one fused Adam step runs over the whole table
    (``weight_decay = l2`` is the exact gradient of the L2 term for every row), and the rows
    are zeroed again. The update is the dense one, without a table-sized autograd backward.
    """

    def __init__(self, table, lr: float, eps: float, l2: float):
        self.table = table
        self.eps = eps
        self.steps = 0
        table.grad = torch.zeros_like(table)
        fused = table.device.type in ("cpu", "cuda")
        self.adam = torch.optim.Adam([table], lr=lr, eps=eps, weight_decay=l2, fused=fused)

    def step(self, rows: list[tuple[Tensor, Tensor]]) -> None:
        """``rows``: ``(ids, gradient of those rows)`` pairs, added in order (repeated ids
        accumulate, as one ``index_add_`` over the concatenation would)."""
        grad = self.table.grad
        for ids, row_grad in rows:
            grad.index_add_(0, ids, row_grad)
        grad[0].zero_()                     # padding stays a fixed zero vector
        self.steps += 1
        tf_adam_eps(self.adam, self.eps, self.steps)
        self.adam.step()
        for ids, _ in rows:
            grad.index_fill_(0, ids, 0.0)

    def state_dict(self) -> dict:
        return {"adam": self.adam.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.adam.load_state_dict(state["adam"])
        self.steps = int(state["steps"])


class KNIOptimizer:
    """KNI's step: the table through :class:`RowSparseAdam`, the aggregator and attention
    weights through Adam with ``weight_decay = l2`` (the L2 term's exact gradient), the biases
    through Adam without it; both with TF's step (:func:`~.base.tf_adam_eps`)."""

    def __init__(self, model: KNI, lr: float, eps: float, l2: float):
        self.model = model
        self.eps = eps
        self.table = RowSparseAdam(model.embedding, lr, eps, l2)
        weights = model.l2_parameters()
        ids = {id(p) for p in weights} | {id(model.embedding)}
        biases = [p for p in model.parameters() if id(p) not in ids]
        groups = [g for g in ({"params": weights, "weight_decay": l2}, {"params": biases, "weight_decay": 0.0})
                  if g["params"]]
        self.dense = torch.optim.Adam(groups, lr=lr, eps=eps) if groups else None
        self.dense_steps = 0

    def step(self, loss: Tensor) -> None:
        if self.dense is not None:
            self.dense.zero_grad(set_to_none=True)
        loss.backward()
        self.table.step([(ids, leaf.grad) for ids, leaf in self.model.last_rows])
        if self.dense is not None:
            self.dense_steps += 1
            tf_adam_eps(self.dense, self.eps, self.dense_steps)
            self.dense.step()

    def state_dict(self) -> dict:
        return {"table": self.table.state_dict(), "dense": self.dense.state_dict() if self.dense else None,
                "dense_steps": self.dense_steps}

    def load_state_dict(self, state: dict) -> None:
        self.table.load_state_dict(state["table"])
        if self.dense is not None:
            self.dense.load_state_dict(state["dense"])
        self.dense_steps = int(state["dense_steps"])
