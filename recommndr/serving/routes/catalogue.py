"""The catalogue for the storefront: products (search, filters, pages, or a list of ids), one
product, the category tree and the demo's shoppers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from recommndr.errors import InvalidRequestError
from recommndr.serving.deps import Champion
from recommndr.serving.routes.recommend import item_index

router = APIRouter(tags=["catalogue"])


@router.get("/products")
async def products(
    m: Champion,
    ids: Annotated[
        str | None,
        Query(
            max_length=2000, description="comma-separated item ids (at most 100): these products, in order"
        ),
    ] = None,
    category: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 24,
    min_price: Annotated[float | None, Query(ge=0)] = None,
    max_price: Annotated[float | None, Query(ge=0)] = None,
) -> Any:
    if ids is not None:
        try:
            wanted = [int(x) for x in ids.split(",") if x.strip()]
        except ValueError as exc:
            raise InvalidRequestError("query.ids: comma-separated integers expected") from exc
        if not 1 <= len(wanted) <= 100:
            raise InvalidRequestError("query.ids: between 1 and 100 ids")
        found = [(i, m.catalog.index_of(i)) for i in wanted]
        rows = [m.catalog.product(j) for _, j in found if j >= 0]
        missing = [i for i, j in found if j < 0]
        return {"total": len(rows), "page": 1, "page_size": len(rows), "items": rows, "missing": missing}
    if min_price is not None and max_price is not None and min_price > max_price:
        raise InvalidRequestError("min_price: must not exceed max_price")
    total, rows = m.catalog.query(category, q, page, page_size, min_price, max_price)
    return {"total": total, "page": page, "page_size": page_size, "items": rows}


@router.get("/categories")
async def categories(m: Champion) -> dict[str, Any]:
    """The category tree (levels 1 and 2) with product counts."""
    return {"categories": m.catalog.categories()}


@router.get("/shoppers")
async def shoppers(m: Champion, n: Annotated[int, Query(ge=1, le=20)] = 6) -> dict[str, Any]:
    """Real shoppers with history, one per favourite category, for the storefront's demo switcher."""
    return {"shoppers": m.shoppers(n)}


@router.get("/products/{item_id}")
async def product(m: Champion, item_id: int) -> dict[str, Any]:
    return m.catalog.product(item_index(m, item_id))
