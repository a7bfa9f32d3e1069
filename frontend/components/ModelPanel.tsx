import type { ServedList } from "@/lib/types";

/** A small, collapsed panel: which model version and A/B variant served each list on the page. */
export function ModelPanel({ lists }: { lists: ServedList[] }) {
  return (
    <details className="model-panel" data-testid="model-panel">
      <summary>Model info</summary>
      <table>
        <caption className="visually-hidden">Models that served the lists on this page</caption>
        <thead>
          <tr>
            <th scope="col">List</th>
            <th scope="col">Model version</th>
            <th scope="col">Variant</th>
          </tr>
        </thead>
        <tbody>
          {lists.map((l) => (
            <tr key={l.name} data-testid="served-list">
              <th scope="row">{l.name}</th>
              <td>
                <code>{l.model_version}</code>
              </td>
              <td data-testid="variant">
                {l.variant ?? "—"}
                {l.note && <span className="note"> ({l.note})</span>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}
