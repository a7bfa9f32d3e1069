"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import { AuditPanel, CanaryPanel, ControlPanel, DriftPanel, ModelsPanel } from "./OpsPanels";
import { RetrainPanel } from "./RetrainPanel";
import {
  AdminError,
  getAudit,
  getCanary,
  getModels,
  getRetrain,
  setAdminToken,
  useAdminToken,
  type AuditAnswer,
  type AuditEntry,
  type CanaryAnswer,
  type ModelsAnswer,
  type RetrainAnswer,
} from "@/lib/ops";

/** Milliseconds between two refreshes of the page's data. */
export const POLL_MS = 3000;
/** The audit trail is read in pages of this many entries (the API's most), at most AUDIT_PAGES a
 * refresh, and the page keeps the last AUDIT_KEEP. */
const AUDIT_PAGE = 500;
const AUDIT_PAGES = 10;
const AUDIT_KEEP = 200;

interface View {
  models: ModelsAnswer;
  canary: CanaryAnswer;
  trail: AuditAnswer;
  /** null when the API does not answer GET /models/retrain (`retrainProblem` says why). */
  retrain: RetrainAnswer | null;
  retrainProblem: string | null;
}

/** The ops page: the token field, then (with a token the API accepts) everything else. */
export function OpsConsole() {
  const token = useAdminToken();
  return (
    <>
      <TokenForm hasToken={token !== null} />
      {token ? (
        <Dashboard key={token} token={token} />
      ) : (
        <Refusal>Paste an admin token to see the models, the canary and the audit trail, and to act on them.</Refusal>
      )}
    </>
  );
}

function Refusal({ children }: { children: React.ReactNode }) {
  return (
    <section className="message ops-refusal" role="alert" data-testid="ops-refusal">
      <h2>Admin token required</h2>
      <p>{children}</p>
    </section>
  );
}

/** Kept in this tab's sessionStorage only; the form is never submitted to a server (a React
 * action), so the token cannot end up in a URL or a log. */
function TokenForm({ hasToken }: { hasToken: boolean }) {
  return (
    <form
      className="filters ops-token"
      action={(data: FormData) => {
        const token = String(data.get("token") ?? "")
          .trim()
          .replace(/^Bearer\s+/i, "");
        if (token) setAdminToken(token);
      }}
    >
      <label className="field grow">
        <span>Admin token (JWT)</span>
        <input
          name="token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          placeholder={hasToken ? "a token is set for this tab; paste another to replace it" : "eyJ…"}
          data-testid="ops-token"
        />
      </label>
      <div className="field actions">
        <button type="submit" className="primary">
          Use token
        </button>
        {hasToken && (
          <button type="button" onClick={() => setAdminToken(null)} data-testid="ops-forget">
            Forget token
          </button>
        )}
      </div>
    </form>
  );
}

function Dashboard({ token }: { token: string }) {
  const [view, setView] = useState<View | null>(null);
  const [problem, setProblem] = useState<{ refused: boolean; message: string } | null>(null);
  const [updated, setUpdated] = useState<Date | null>(null);
  const [attempt, setAttempt] = useState(0);
  const cursor = useRef<{ last: number; entries: AuditEntry[] }>({ last: 0, entries: [] });

  /** New audit entries since the last read (the whole trail's last AUDIT_KEEP on the first). */
  const readTrail = useCallback(async (): Promise<AuditAnswer> => {
    let verified = true;
    for (let page = 0; page < AUDIT_PAGES; page++) {
      const answer = await getAudit(token, cursor.current.last, AUDIT_PAGE);
      verified = answer.verified;
      if (answer.entries.some((e) => e.seq <= cursor.current.last)) {
        cursor.current = { last: 0, entries: [] }; // the trail was replaced: read it again
        continue;
      }
      const entries = [...cursor.current.entries, ...answer.entries].slice(-AUDIT_KEEP);
      cursor.current = { last: answer.entries.at(-1)?.seq ?? cursor.current.last, entries };
      if (answer.entries.length < AUDIT_PAGE) break;
    }
    return { entries: cursor.current.entries, verified };
  }, [token]);

  /** One refresh; false when the token was refused (polling stops: the data is gone). */
  const refresh = useCallback(async (): Promise<boolean> => {
    try {
      // the retrain's state is one panel: an API without it leaves the rest of the page as it is
      const retrainOf = getRetrain(token).then(
        (answer) => ({ answer, problem: null }),
        (err: unknown) => {
          if (err instanceof AdminError && err.refused) throw err;
          return { answer: null, problem: err instanceof Error ? err.message : String(err) };
        },
      );
      const [canary, models, retrain] = await Promise.all([getCanary(token), getModels(), retrainOf]);
      const trail = await readTrail();
      setView({ canary, models, trail, retrain: retrain.answer, retrainProblem: retrain.problem });
      setProblem(null);
      setUpdated(new Date());
      return true;
    } catch (err) {
      const e = err instanceof AdminError ? err : new AdminError(0, "error", String(err));
      if (e.refused) {
        setView(null);
        cursor.current = { last: 0, entries: [] };
      }
      setProblem({ refused: e.refused, message: e.message });
      return !e.refused;
    }
  }, [token, readTrail]);

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      const again = await refresh();
      if (again && !stopped) timer = setTimeout(tick, POLL_MS);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [refresh, attempt]);

  if (problem?.refused) {
    return (
      <section className="message ops-refusal" role="alert" data-testid="ops-refusal">
        <h2>Admin token required</h2>
        <p>
          The API refused this token: <span data-testid="ops-refusal-message">{problem.message}</span>
        </p>
        <p>
          Paste another token above, or <button onClick={() => setAttempt((n) => n + 1)}>try again</button>.
        </p>
      </section>
    );
  }
  if (view === null) {
    return (
      <p className={problem ? "status error" : "status"} role="status">
        {problem ? `Not loaded: ${problem.message}` : "Loading…"}
      </p>
    );
  }
  const hasChallenger = view.models.models.some((m) => m.variant === "challenger");
  return (
    <div className="ops" data-testid="ops-data">
      <p className={problem ? "status error" : "status"} role="status" data-testid="ops-updated">
        {problem
          ? `Refresh failed (${problem.message}); showing the data of ${updated?.toLocaleTimeString("en-GB") ?? "—"}`
          : `Updated ${updated?.toLocaleTimeString("en-GB") ?? "—"}, every ${POLL_MS / 1000} s`}
      </p>
      <ControlPanel token={token} control={view.canary.control} hasChallenger={hasChallenger} onDone={refresh} />
      <RetrainPanel token={token} retrain={view.retrain} unavailable={view.retrainProblem} onDone={refresh} />
      <ModelsPanel models={view.models} trail={view.trail.entries} />
      <CanaryPanel answer={view.canary} />
      <DriftPanel drift={view.canary.canary?.drift ?? null} />
      <AuditPanel trail={view.trail} />
    </div>
  );
}
