"""The catalogue for the storefront: products (search, filters, pages, or a list of ids), one
product, the category tree and the demo's shoppers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from recommndr.serving.deps import INT64_MAX, Champion, ItemId
from recommndr.serving.routes.recommend import item_index
from recommndr.serving.schemas import errors

router = APIRouter(tags=["catalogue"])
IDS_PATTERN = r"^[0-9]{1,19}(,[0-9]{1,19}){0,99}$"


@router.get("/products", responses=errors(422, 503))
async def products(
    m: Champion,
    ids: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=IDS_PATTERN,
            description="comma-separated item ids (at most 100): these products, in order; ids that "
            "are not in the catalogue (or not int64) are listed in `missing`",
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
        wanted = [int(x) for x in ids.split(",")]  # the pattern admits 1-100 decimal ids only
        found = [(i, m.catalogue.index_of(i) if i <= INT64_MAX else -1) for i in wanted]
        rows = [m.catalogue.product(j) for _, j in found if j >= 0]
        missing = [i for i, j in found if j < 0]
        return {"total": len(rows), "page": 1, "page_size": len(rows), "items": rows, "missing": missing}
    if min_price is not None and max_price is not None and min_price > max_price:
        return {"total": 0, "page": page, "page_size": page_size, "items": []}  # an empty range
    total, rows = m.catalogue.query(category, q, page, page_size, min_price, max_price)
    return {"total": total, "page": page, "page_size": page_size, "items": rows}


@router.get("/categories", responses=errors(503))
async def categories(m: Champion) -> dict[str, Any]:
    """The category tree (levels 1 and 2) with product counts."""
    return {"categories": m.catalogue.categories()}


@router.get("/shoppers", responses=errors(422, 503))
async def shoppers(m: Champion, n: Annotated[int, Query(ge=1, le=20)] = 6) -> dict[str, Any]:
    """Real shoppers with history, one per favourite category, for the storefront's demo switcher."""
    return {"shoppers": m.shoppers(n)}


@router.get("/products/{item_id}", responses=errors(404, 422, 503))
async def product(m: Champion, item_id: ItemId) -> dict[str, Any]:
    return m.catalogue.product(item_index(m, item_id))
