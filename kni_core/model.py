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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "selu": F.selu, "identity": lambda x: x}


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


class Aggregator(nn.Module):
    """GCN mean aggregator of one hop (``GCNAgg`` in the original)."""

    def __init__(self, hidden: int, weight: bool, activation: str, dropout: float):
        super().__init__()
        self.weight = nn.Parameter(glorot_(torch.empty(hidden, hidden))) if weight else None
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.act = ACTIVATIONS[activation]
        self.dropout = dropout

    def forward(self, self_vecs: Tensor, neigh_vecs: Tensor) -> Tensor:
        """``self_vecs`` (M, h), ``neigh_vecs`` (M, n, h) -> (M, h)."""
        self_vecs = dropout(self_vecs, self.dropout, self.training)
        neigh_vecs = dropout(neigh_vecs, self.dropout, self.training)
        hidden = (self_vecs + neigh_vecs.sum(dim=1)) / (neigh_vecs.shape[1] + 1)
        if self.weight is not None:
            hidden = hidden @ self.weight
        return self.act(hidden + self.bias)


class KNI(nn.Module):
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
        # Set by the trainer: gather rows as detached leaves so their gradients can be handed
        # to the optimizer directly (see kni_core.train.RowSparseAdam).
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
        (kni_core.train.RowSparseAdam); one leaf per side lets a one-hop side's gradient be
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

    @torch.no_grad()
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

    @torch.no_grad()
    def predict(self, users: Tensor, items: Tensor, repeats: int, generator=None) -> Tensor:
        """Mean sigmoid score over ``repeats`` sampled passes (evaluation mode)."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(users, items, repeats, generator)).mean(dim=0)
        finally:
            self.train(was_training)
