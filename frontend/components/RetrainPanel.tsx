"use client";

import { useState } from "react";

import {
  AdminError,
  RETRAIN_FAULTS,
  startRetrain,
  when,
  type RetrainAnswer,
  type RetrainFault,
} from "@/lib/ops";

const STATES: Record<RetrainAnswer["state"], string> = {
  off: "off",
  idle: "none started",
  running: "running",
  finished: "finished",
  failed: "failed",
};

/** The API's retrain (POST /models/retrain): start one, with a fault for its challenger in demos,
 * and follow it; its canary's steps show in the Canary panel as they advance. `retrain` is null
 * while this API does not answer it (`unavailable` says why). */
export function RetrainPanel({
  token,
  retrain,
  unavailable,
  onDone,
}: {
  token: string;
  retrain: RetrainAnswer | null;
  unavailable: string | null;
  onDone: () => Promise<unknown>;
}) {
  const [fault, setFault] = useState<RetrainFault>("none");
  const [sending, setSending] = useState(false);
  const [status, setStatus] = useState<{ error: boolean; text: string } | null>(null);

  async function start() {
    setSending(true);
    setStatus(null);
    try {
      await startRetrain(token, fault);
      setStatus({ error: false, text: `Retrain started${fault === "none" ? "" : ` (challenger fault: ${fault})`}` });
      await onDone();
    } catch (err) {
      setStatus({ error: true, text: err instanceof AdminError ? err.message : String(err) });
    } finally {
      setSending(false);
    }
  }

  const state = retrain?.state;
  const outcome = retrain?.outcome;
  const canStart = state !== undefined && state !== "off" && state !== "running";
  return (
    <section className="ops-panel" aria-labelledby="ops-retrain" data-testid="ops-retrain">
      <h2 id="ops-retrain">Retrain</h2>
      {retrain === null ? (
        <p className="empty">Not available: {unavailable ?? "no answer"}</p>
      ) : (
        <dl className="facts">
          <dt>State</dt>
          <dd>
            <span className={`badge ops-status ops-status-${retrain.state}`} data-testid="ops-retrain-state">
              {STATES[retrain.state]}
            </span>
            {retrain.detail && <span className="note"> {retrain.detail}</span>}
          </dd>
          {retrain.started_at !== null && (
            <>
              <dt>Started / finished</dt>
              <dd>
                {when(retrain.started_at)} / {when(retrain.finished_at)}
                {retrain.canary_fault && retrain.canary_fault !== "none" && <> (challenger fault: {retrain.canary_fault})</>}
              </dd>
            </>
          )}
          {outcome && (
            <>
              <dt>Outcome</dt>
              <dd data-testid="ops-retrain-outcome">
                <strong>{outcome.outcome ?? "—"}</strong>
                {outcome.reason && <>: {outcome.reason}</>}
                {typeof outcome.seconds === "number" && <> ({Math.round(outcome.seconds)} s)</>}
              </dd>
            </>
          )}
        </dl>
      )}
      <form
        className="ops-reason"
        onSubmit={(e) => {
          e.preventDefault();
          void start();
        }}
      >
        <label className="field">
          <span>Fault injected into the challenger (demos)</span>
          <select value={fault} onChange={(e) => setFault(e.target.value as RetrainFault)} data-testid="ops-retrain-fault">
            {RETRAIN_FAULTS.map((f) => (
              <option key={f} value={f}>
                {f}
              </option>
            ))}
          </select>
        </label>
        <div className="field actions">
          <button
            type="submit"
            className="primary"
            disabled={sending || !canStart}
            title={state === "off" ? "retrains are off on this API" : state === "running" ? "one is running" : undefined}
            data-testid="ops-retrain-start"
          >
            Start a retrain
          </button>
        </div>
      </form>
      <p className={status?.error ? "status error" : "status"} role="status" data-testid="ops-retrain-status">
        {status?.text}
      </p>
      {retrain?.log_tail && (
        <details>
          <summary>Its output (last lines)</summary>
          <pre className="ops-log" data-testid="ops-retrain-log">
            {retrain.log_tail}
          </pre>
        </details>
      )}
    </section>
  );
}
