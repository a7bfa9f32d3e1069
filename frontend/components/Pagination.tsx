import Link from "next/link";

interface Props {
  page: number;
  pages: number;
  /** The current query without `page`. */
  query: Record<string, string>;
}

export function Pagination({ page, pages, query }: Props) {
  if (pages <= 1) return null;
  const href = (p: number) => `/products?${new URLSearchParams({ ...query, page: String(p) }).toString()}`;
  return (
    <nav className="pagination" aria-label="Pages">
      {page > 1 ? (
        <Link href={href(page - 1)} rel="prev">
          ← Previous
        </Link>
      ) : (
        <span aria-hidden="true" className="disabled">← Previous</span>
      )}
      <span aria-current="page" data-testid="page-indicator">
        Page {page} of {pages}
      </span>
      {page < pages ? (
        <Link href={href(page + 1)} rel="next">
          Next →
        </Link>
      ) : (
        <span aria-hidden="true" className="disabled">Next →</span>
      )}
    </nav>
  );
}
