"""A place in the factor space for products nobody has touched yet.

ALS learns a product's factors from its shoppers; a product without events has none, so no model
recommends it. Its attributes do say something: a ridge regression from the category path (each
level one-hot) and the price band (deciles of log price) to the item factors, fit on the products
ALS knows, puts an unseen product where products like it are — close to its category's and price
band's shoppers. Those factors let exploration (``ranking/two_stage.py``) score new products for
a shopper, and ``/similar`` find neighbours for a product launched after the last retrain.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recommndr.data.interactions import Catalogue
from recommndr.retrieval.base import F32

PRICE_BANDS = 10
RIDGE = 1.0  # per observation scale: shrinks sparse categories toward their parent's mean


def attribute_matrix(catalogue: Catalogue) -> sp.csr_matrix:
    """Products x attributes, one-hot: category at levels 1, 2 and 3, price band, a bias."""
    n = catalogue.n_items
    logp = np.log(np.maximum(catalogue.price.astype(np.float64), 1e-6))
    edges = np.quantile(logp, np.linspace(0, 1, PRICE_BANDS + 1)[1:-1]) if n else np.zeros(0)
    band = np.searchsorted(edges, logp, side="right")
    parts: list[npt.NDArray[np.integer[Any]]] = [
        catalogue.l1,
        catalogue.l2,
        catalogue.l3,
        band,
        np.zeros(n, np.int64),
    ]
    sizes = [len(catalogue.l1_names), len(catalogue.l2_names), len(catalogue.l3_names), PRICE_BANDS, 1]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    cols = np.concatenate([p.astype(np.int64) + o for p, o in zip(parts, offsets, strict=True)])
    rows = np.tile(np.arange(n), len(parts))
    return sp.csr_matrix((np.ones(rows.shape[0], np.float64), (rows, cols)), shape=(n, int(sum(sizes))))


def attribute_factors(catalogue: Catalogue, item_factors: F32, known: npt.NDArray[np.bool_]) -> F32:
    """``item_factors`` with every unknown product's row predicted from its attributes (known rows
    unchanged). With no known product there is nothing to learn from: returned as given."""
    if not known.any() or known.all():
        return item_factors
    x = attribute_matrix(catalogue)
    xk = x[known]
    gram = (xk.T @ xk).toarray() + RIDGE * np.eye(x.shape[1])
    w = np.linalg.solve(gram, xk.T @ item_factors[known].astype(np.float64))
    out = item_factors.copy()
    out[~known] = (x[~known] @ w).astype(np.float32)
    return out
