"""Synthetic recommendation data whose knowledge graph carries real signal.

Items belong to latent topics; the KG links every item to a few attribute entities of its
own topic (plus a noise relation to random attributes). Users like one or two topics and
pick items within them with a long-tailed popularity, so most items are rarely seen: for
those, the user-item graph alone says little and the KG's topic attributes say a lot. This
is what lets KNI beat NI here, as on the real data.

Everything is vectorised so the Movie-20M-shaped preset (9.1M interactions) builds in
seconds (its set operations sort: see :mod:`kni_core.data.setops`).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..synthetic_spec import PRESETS, SyntheticSpec, spec_from_params  # noqa: F401  (the generator's parameters)
from .raw import RawDataset
from .setops import isin_sorted, unique, unique_rows


def generate(spec: SyntheticSpec) -> RawDataset:
    rng = np.random.default_rng(spec.seed)
    n_attr = spec.topics * spec.attributes_per_topic
    item_topic = rng.integers(spec.topics, size=spec.items)

    # Knowledge graph: items are entities 0..items-1, attributes follow.
    def links(per_item: int, same_topic: bool) -> tuple[np.ndarray, np.ndarray]:
        heads = np.repeat(np.arange(spec.items), per_item)
        if same_topic:
            within = rng.integers(spec.attributes_per_topic, size=len(heads))
            attr = item_topic[heads] * spec.attributes_per_topic + within
        else:
            attr = rng.integers(n_attr, size=len(heads))
        return heads, spec.items + attr

    h_sig, t_sig = links(spec.links_per_item, True)
    r_sig = rng.integers(spec.signal_relations, size=len(h_sig))
    h_noise, t_noise = links(spec.noise_links_per_item, False)
    r_noise = np.full(len(h_noise), spec.signal_relations)
    kg = np.column_stack([np.concatenate([h_sig, h_noise]), np.concatenate([r_sig, r_noise]),
                          np.concatenate([t_sig, t_noise])])
    kg = unique_rows(kg)

    # Positives: favourite topics, long-tailed popularity inside a topic.
    by_topic = np.argsort(item_topic, kind="stable")
    topic_start = np.searchsorted(item_topic[by_topic], np.arange(spec.topics))
    topic_size = np.bincount(item_topic, minlength=spec.topics)
    favourites = np.stack([rng.choice(spec.topics, size=spec.favourite_topics, replace=False)
                           for _ in range(spec.users)])
    users = np.repeat(np.arange(spec.users), spec.positives_per_user)
    topic = favourites[users, rng.integers(spec.favourite_topics, size=len(users))]
    off_topic = rng.random(len(users)) > spec.on_topic
    topic[off_topic] = rng.integers(spec.topics, size=int(off_topic.sum()))
    empty = topic_size[topic] == 0
    topic[empty] = item_topic[0]
    rank = np.floor(topic_size[topic] * rng.random(len(users)) ** spec.popularity_skew).astype(np.int64)
    items = by_topic[topic_start[topic] + rank]
    pos_keys = unique(users.astype(np.int64) * spec.items + items)

    # One unrated item per positive, as RippleNet does; a draw that hits a positive is drawn
    # again (only those can still clash: the others never change).
    neg_users = pos_keys // spec.items
    neg_items = rng.integers(spec.items, size=len(pos_keys))
    clashing = np.arange(len(pos_keys))
    for _ in range(20):
        clashing = clashing[isin_sorted(neg_users[clashing] * spec.items + neg_items[clashing], pos_keys)]
        if len(clashing) == 0:
            break
        neg_items[clashing] = rng.integers(spec.items, size=len(clashing))
    keep = ~isin_sorted(neg_users * spec.items + neg_items, pos_keys)
    neg_keys = unique(neg_users[keep] * spec.items + neg_items[keep])
    ratings = np.vstack([
        np.column_stack([pos_keys // spec.items, pos_keys % spec.items, np.ones(len(pos_keys), np.int64)]),
        np.column_stack([neg_keys // spec.items, neg_keys % spec.items, np.zeros(len(neg_keys), np.int64)]),
    ])
    return RawDataset.from_arrays(ratings, kg, source=f"synthetic {asdict(spec)}", n_items=spec.items)
