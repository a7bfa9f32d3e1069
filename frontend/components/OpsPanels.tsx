"use client";

import { useState } from "react";

import {
  act,
  AdminError,
  num,
  pct,
  pp,
  when,
  type AuditAnswer,
  type AuditEntry,
  type CanaryAnswer,
  type Control,
  type DriftReport,
  type Look,
  type LookRate,
  type ModelsAnswer,
  type OpsAction,
} from "@/lib/ops";

const ACTIONS: Record<OpsAction, { label: string; done: string }> = {
  pause: { label: "Pause", done: "Paused" },
  resume: { label: "Resume", done: "Resumed" },
  promote: { label: "Promote", done: "Promotion requested" },
  rollback: { label: "Roll back", done: "Rolled back" },
};

/** Paused or not, the operator request waiting for the workflow, the injected fault; and the
 * buttons, each asking for a reason before it acts. */
export function ControlPanel({
  token,
  control,
  hasChallenger,
  onDone,
}: {
  token: string;
  control: Control;
  hasChallenger: boolean;
  onDone: () => Promise<unknown>;
}) {
  const [open, setOpen] = useState<OpsAction | null>(null);
  const [sending, setSending] = useState(false);
  const [status, setStatus] = useState<{ error: boolean; text: string } | null>(null);

  async function confirm(action: OpsAction, reason: string) {
    setSending(true);
    setStatus(null);
    try {
      await act(token, action, reason);
      setStatus({ error: false, text: `${ACTIONS[action].done}: ${reason}` });
      setOpen(null);
      await onDone();
    } catch (err) {
      setStatus({ error: true, text: err instanceof AdminError ? err.message : String(err) });
    } finally {
      setSending(false);
    }
  }

  const buttons: OpsAction[] = [control.paused ? "resume" : "pause", "promote", "rollback"];
  return (
    <section className="ops-panel" aria-labelledby="ops-control" data-testid="ops-control">
      <h2 id="ops-control">Control</h2>
      <dl className="facts">
        <dt>Canary</dt>
        <dd data-testid="ops-paused">{control.paused ? "paused (held at its step)" : "not paused"}</dd>
        <dt>Pending request</dt>
        <dd data-testid="ops-request">
          {control.request
            ? `${control.request.action} by ${control.request.by} at ${when(control.request.at)}: “${control.request.reason}”`
            : "none"}
        </dd>
        <dt>Injected fault</dt>
        <dd data-testid="ops-fault">
          {control.fault && control.fault.kind !== "none"
            ? `${control.fault.kind} since ${when(control.fault.since)}`
            : "none"}
        </dd>
      </dl>
      <div className="ops-buttons">
        {buttons.map((a) => (
          <button
            key={a}
            type="button"
            className={a === "rollback" ? "danger" : undefined}
            aria-expanded={open === a}
            disabled={sending || (a === "promote" && !hasChallenger)}
            title={a === "promote" && !hasChallenger ? "no challenger is loaded" : undefined}
            onClick={() => {
              setOpen(open === a ? null : a);
              setStatus(null);
            }}
            data-testid={`ops-${a}`}
          >
            {ACTIONS[a].label}
          </button>
        ))}
      </div>
      {open && <ReasonForm key={open} action={open} sending={sending} onConfirm={confirm} onCancel={() => setOpen(null)} />}
      <p className={status?.error ? "status error" : "status"} role="status" data-testid="ops-action-status">
        {status?.text}
      </p>
    </section>
  );
}

function ReasonForm({
  action,
  sending,
  onConfirm,
  onCancel,
}: {
  action: OpsAction;
  sending: boolean;
  onConfirm: (action: OpsAction, reason: string) => Promise<void>;
  onCancel: () => void;
}) {
  const [reason, setReason] = useState("");
  return (
    <form
      className="ops-reason"
      onSubmit={(e) => {
        e.preventDefault();
        if (reason.trim()) void onConfirm(action, reason.trim());
      }}
      data-testid="ops-reason-form"
    >
      <label className="field grow">
        <span>Reason for “{ACTIONS[action].label.toLowerCase()}” (kept in the audit trail)</span>
        <input
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          maxLength={500}
          required
          autoFocus
          data-testid="ops-reason"
        />
      </label>
      <div className="field actions">
        <button type="submit" className="primary" disabled={sending || !reason.trim()} data-testid="ops-confirm">
          {ACTIONS[action].label}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** The loaded versions, the traffic split and the aliases' last moves (from the audit trail). */
export function ModelsPanel({ models, trail }: { models: ModelsAnswer; trail: AuditEntry[] }) {
  const aliases = new Map<string, AuditEntry>();
  for (const e of trail) {
    const alias = e.action === "alias" ? e.details?.alias : undefined;
    if (typeof alias === "string") aliases.set(alias, e);
  }
  const shares = Object.entries(models.traffic);
  return (
    <section className="ops-panel" aria-labelledby="ops-models" data-testid="ops-models">
      <h2 id="ops-models">Models</h2>
      <div className="table-scroll">
        <table className="ops-table">
          <caption className="visually-hidden">Loaded models</caption>
          <thead>
            <tr>
              <th scope="col">Variant</th>
              <th scope="col">Version</th>
              <th scope="col">Trained on</th>
              <th scope="col">Users</th>
              <th scope="col">Items</th>
              <th scope="col">Loaded</th>
              <th scope="col">Traffic</th>
            </tr>
          </thead>
          <tbody>
            {models.models.map((m) => (
              <tr key={m.variant} data-testid="ops-model">
                <th scope="row">{m.variant}</th>
                <td>
                  <code>{m.version}</code>
                  {m.fallback && <span className="note"> (fallback: {m.fallback})</span>}
                </td>
                <td>
                  <code>{m.trained_on ?? "—"}</code>
                </td>
                <td>{num(m.users)}</td>
                <td>{num(m.items)}</td>
                <td>{when(m.loaded_at)}</td>
                <td data-testid={`ops-share-${m.variant}`}>{pct(models.traffic[m.variant] ?? 0, 0)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="split" role="img" aria-label={`Traffic split: ${shares.map(([v, s]) => `${v} ${pct(s, 0)}`).join(", ")}`}>
        {shares
          .filter(([, s]) => s > 0)
          .map(([v, s]) => (
            <span key={v} className={`split-${v}`} style={{ flexGrow: s }}>
              {v} {pct(s, 0)}
            </span>
          ))}
      </div>
      {aliases.size > 0 && (
        <>
          <h3>Aliases (last moves in the audit trail)</h3>
          <ul className="ops-list" data-testid="ops-aliases">
            {[...aliases].map(([alias, e]) => (
              <li key={alias}>
                <strong>{alias}</strong> → <code>{String(e.details?.version ?? "—")}</code>
                {e.details?.previous != null && <> (was <code>{String(e.details.previous)}</code>)</>} by {e.by},{" "}
                {when(e.at)}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

/** The running canary: its progress, the live counters per variant with the difference's
 * confidence sequence, every look and the decision. */
export function CanaryPanel({ answer }: { answer: CanaryAnswer }) {
  const c = answer.canary;
  const looks = c?.looks ?? [];
  const steps = c?.steps ?? [];
  const variants = Object.entries(answer.variants ?? {});
  // ctr and cvr: an interval, or null until both arms have enough data; beside them the test's tau and alpha
  const difference = answer.difference ?? {};
  const diffs = (["ctr", "cvr"] as const).filter((m) => m in difference).map((m) => [m, difference[m] ?? null] as const);
  return (
    <section className="ops-panel" aria-labelledby="ops-canary" data-testid="ops-canary">
      <h2 id="ops-canary">Canary</h2>
      {c ? (
        <dl className="facts">
          <dt>Status</dt>
          <dd>
            <span className={`badge ops-status ops-status-${c.status ?? "unknown"}`} data-testid="ops-canary-status">
              {c.status ?? "unknown"}
            </span>
          </dd>
          <dt>Instance</dt>
          <dd>
            <code>{c.instance_id ?? "—"}</code>
          </dd>
          <dt>Champion → challenger</dt>
          <dd>
            <code>{c.champion_version ?? "—"}</code> → <code>{c.challenger_version ?? "—"}</code>
          </dd>
          <dt>Step</dt>
          <dd data-testid="ops-canary-step">
            {typeof c.step === "number" && steps.length > 0 ? `${c.step + 1} of ${steps.length}` : "—"}, challenger
            share {pct(c.share, 0)}
            {steps.length > 0 && (
              <ol className="steps" aria-label="Canary steps (challenger share)">
                {steps.map((s, i) => (
                  <li
                    key={i}
                    className={i === c.step ? "current" : typeof c.step === "number" && i < c.step ? "done" : undefined}
                    aria-current={i === c.step ? "step" : undefined}
                  >
                    {pct(s, 0)}
                  </li>
                ))}
              </ol>
            )}
          </dd>
          <dt>Started / updated</dt>
          <dd>
            {when(c.started_at)} / {when(c.updated_at)}
          </dd>
          <dt>Decision</dt>
          <dd data-testid="ops-decision">
            {c.decision ? (
              <>
                <strong>{c.decision.action ?? "—"}</strong>
                {c.decision.rule && (
                  <>
                    {" "}
                    by <code>{c.decision.rule}</code>
                  </>
                )}
                {c.decision.reason && <>: {c.decision.reason}</>}
              </>
            ) : (
              "none yet"
            )}
          </dd>
        </dl>
      ) : (
        <p className="empty" data-testid="ops-no-canary">
          No canary is running (the workflow has published no progress).
        </p>
      )}

      <h3>Live, from this API&apos;s counters</h3>
      <div className="table-scroll">
        <table className="ops-table" data-testid="ops-variants">
          <caption className="visually-hidden">Per-variant counters and rates</caption>
          <thead>
            <tr>
              <th scope="col">Variant</th>
              <th scope="col">Requests</th>
              <th scope="col">Errors</th>
              <th scope="col">Lists</th>
              <th scope="col">Views</th>
              <th scope="col">Carts</th>
              <th scope="col">Purchases</th>
              <th scope="col">CTR</th>
              <th scope="col">Add to cart</th>
              <th scope="col">Conversion</th>
            </tr>
          </thead>
          <tbody>
            {variants.map(([v, x]) => (
              <tr key={v}>
                <th scope="row">{v}</th>
                <td>{num(x.requests)}</td>
                <td>{num(x.errors)}</td>
                <td>{num(x.lists)}</td>
                <td>{num(x.views)}</td>
                <td>{num(x.carts)}</td>
                <td>{num(x.purchases)}</td>
                <td>{pct(x.ctr)}</td>
                <td>{pct(x.atc)}</td>
                <td>{pct(x.cvr)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {diffs.length > 0 && (
        <ul className="ops-list" data-testid="ops-difference">
          {diffs.map(([metric, d]) => (
            <li key={metric}>
              {metric === "ctr" ? "CTR" : "Conversion"} challenger − champion:{" "}
              {d ? (
                <>
                  <strong>{pp(d.estimate)}</strong>, confidence sequence [{pp(d.ci_low)}, {pp(d.ci_high)}], always-valid
                  p {num(d.p_value, 2)}
                </>
              ) : (
                "not enough data in both arms yet"
              )}
            </li>
          ))}
          {typeof difference.tau === "number" && (
            <li className="note">
              mSPRT with τ = {num(difference.tau)}, α = {num(difference.alpha)}
            </li>
          )}
        </ul>
      )}

      {looks.length > 0 && (
        <>
          <h3>Looks ({looks.length})</h3>
          <div className="charts">
            <SequenceChart looks={looks} metric="ctr" label="CTR" />
            <SequenceChart looks={looks} metric="cvr" label="Conversion" />
          </div>
          <LooksTable looks={looks} />
        </>
      )}
    </section>
  );
}

function rateCell(r: LookRate | undefined) {
  return r ? `${pp(r.diff)} [${pp(r.ci_low)}, ${pp(r.ci_high)}]` : "—";
}

function LooksTable({ looks }: { looks: Look[] }) {
  return (
    <div className="table-scroll ops-looks">
      <table className="ops-table" data-testid="ops-looks">
        <caption className="visually-hidden">Every look of the canary, the newest first</caption>
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">At</th>
            <th scope="col">Share</th>
            <th scope="col">CTR diff [ci_low, ci_high]</th>
            <th scope="col">Conversion diff [ci_low, ci_high]</th>
            <th scope="col">Guards breached</th>
            <th scope="col">Decision</th>
          </tr>
        </thead>
        <tbody>
          {looks
            .map((l, i) => ({ l, i }))
            .reverse()
            .map(({ l, i }) => {
              const breached = Object.entries(l.guards ?? {}).filter(([, g]) => g.breached);
              return (
                <tr key={i} data-testid="ops-look">
                  <td>{i + 1}</td>
                  <td>{when(l.at)}</td>
                  <td>{pct(l.share, 0)}</td>
                  <td>{rateCell(l.ctr)}</td>
                  <td>{rateCell(l.cvr)}</td>
                  <td className={breached.length ? "bad" : undefined}>
                    {breached.length
                      ? breached.map(([name, g]) => `${name} ${num(g.value)} > ${num(g.limit)}`).join("; ")
                      : "none"}
                  </td>
                  <td>{l.decision ?? "—"}</td>
                </tr>
              );
            })}
        </tbody>
      </table>
    </div>
  );
}

const W = 460;
const H = 150;
const PAD = { left: 52, right: 8, top: 8, bottom: 20 };

/** The difference (challenger − champion) at each look, its confidence sequence as a band and 0
 * as a dashed line: the canary rolls back once the band lies below 0 (or the margin). */
export function SequenceChart({ looks, metric, label }: { looks: Look[]; metric: "ctr" | "cvr"; label: string }) {
  const points = looks.flatMap((l, i) => {
    const r = l[metric];
    const ok = [r?.diff, r?.ci_low, r?.ci_high].every((x) => typeof x === "number" && Number.isFinite(x));
    return ok && r ? [{ i, diff: r.diff as number, lo: r.ci_low as number, hi: r.ci_high as number }] : [];
  });
  const title = `${label}: challenger − champion by look, with its confidence sequence`;
  if (points.length === 0) {
    return (
      <figure className="chart">
        <figcaption>{title}</figcaption>
        <p className="empty">No {label} figures yet.</p>
      </figure>
    );
  }
  const lo = Math.min(0, ...points.map((p) => p.lo));
  const hi = Math.max(0, ...points.map((p) => p.hi));
  const span = hi - lo || 1e-6;
  const n = Math.max(looks.length - 1, 1);
  const x = (i: number) => PAD.left + ((W - PAD.left - PAD.right) * i) / n;
  const y = (v: number) => PAD.top + ((H - PAD.top - PAD.bottom) * (hi - v)) / span;
  const band =
    points.length === 1
      ? ""
      : [...points.map((p) => `${x(p.i)},${y(p.hi)}`), ...[...points].reverse().map((p) => `${x(p.i)},${y(p.lo)}`)].join(
          " ",
        );
  const last = points.at(-1)!;
  return (
    <figure className="chart" data-testid={`ops-chart-${metric}`}>
      <figcaption>{title}</figcaption>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label={`${title}; last look: ${pp(last.diff)} [${pp(last.lo)}, ${pp(last.hi)}]`}
      >
        {band && <polygon className="band" points={band} />}
        {points.length === 1 && <line className="band-line" x1={x(last.i)} x2={x(last.i)} y1={y(last.hi)} y2={y(last.lo)} />}
        <line className="zero" x1={PAD.left} x2={W - PAD.right} y1={y(0)} y2={y(0)} />
        <polyline className="estimate" points={points.map((p) => `${x(p.i)},${y(p.diff)}`).join(" ")} />
        {points.map((p) => (
          <circle key={p.i} className="estimate" cx={x(p.i)} cy={y(p.diff)} r={2.5} />
        ))}
        <text x={PAD.left - 4} y={y(hi) + 4} textAnchor="end">
          {pp(hi, 1)}
        </text>
        <text x={PAD.left - 4} y={y(lo)} textAnchor="end">
          {pp(lo, 1)}
        </text>
        <text x={PAD.left - 4} y={y(0) + 4} textAnchor="end">
          0
        </text>
        <text x={W - PAD.right} y={H - 4} textAnchor="end">
          look {looks.length}
        </text>
        <text x={PAD.left} y={H - 4}>
          look 1
        </text>
      </svg>
    </figure>
  );
}

/** Drift per feature, when the progress document carries a drift report. */
export function DriftPanel({ drift }: { drift: DriftReport | null }) {
  const features = Object.entries(drift?.features ?? {}).sort((a, b) => (b[1].psi ?? -1) - (a[1].psi ?? -1));
  if (!drift || features.length === 0) return null;
  const kinds = Object.entries(drift.kinds ?? {}).filter(([, v]) => v);
  return (
    <section className="ops-panel" aria-labelledby="ops-drift" data-testid="ops-drift">
      <h2 id="ops-drift">Drift</h2>
      <p className={drift.drift ? "status error" : "status"}>
        {drift.drift ? `Drift flagged: ${kinds.map(([k]) => k).join(", ") || "yes"}` : "No drift flagged"}
      </p>
      <div className="table-scroll">
        <table className="ops-table">
          <caption className="visually-hidden">Drift per feature</caption>
          <thead>
            <tr>
              <th scope="col">Feature</th>
              <th scope="col">PSI</th>
              <th scope="col">Threshold</th>
              <th scope="col">p (Holm)</th>
              <th scope="col">Values</th>
              <th scope="col">Drift</th>
            </tr>
          </thead>
          <tbody>
            {features.map(([name, f]) => (
              <tr key={name} data-testid="ops-drift-feature">
                <th scope="row">
                  <code>{name}</code>
                </th>
                <td>{num(f.psi)}</td>
                <td>{num(f.threshold)}</td>
                <td>{num(f.p_adjusted, 2)}</td>
                <td>{num(f.n)}</td>
                <td className={f.drift ? "bad" : undefined}>{f.drift ? "yes" : "no"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function details(d: AuditEntry["details"]): string {
  if (!d || Object.keys(d).length === 0) return "";
  const s = JSON.stringify(d);
  return s.length > 200 ? `${s.slice(0, 199)}…` : s;
}

/** The audit trail, the newest first, and whether its hash chain verified. */
export function AuditPanel({ trail }: { trail: AuditAnswer }) {
  return (
    <section className="ops-panel" aria-labelledby="ops-audit" data-testid="ops-audit">
      <h2 id="ops-audit">Audit trail</h2>
      <p className={trail.verified ? "status" : "status error"} data-testid="ops-audit-verified">
        {trail.verified ? "Hash chain verified." : "The hash chain does NOT verify: the trail was altered."}
      </p>
      {trail.entries.length === 0 ? (
        <p className="empty">No entries yet.</p>
      ) : (
        <div className="table-scroll">
          <table className="ops-table">
            <caption className="visually-hidden">Audit trail entries, the newest first</caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">At</th>
                <th scope="col">Action</th>
                <th scope="col">By</th>
                <th scope="col">Reason</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {[...trail.entries].reverse().map((e) => (
                <tr key={e.seq} data-testid="ops-audit-entry">
                  <td>{e.seq}</td>
                  <td>{when(e.at)}</td>
                  <td data-testid="ops-audit-action">{e.action}</td>
                  <td>{e.by}</td>
                  <td data-testid="ops-audit-reason">{e.reason}</td>
                  <td>
                    <code className="details">{details(e.details)}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
