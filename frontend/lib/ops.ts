/**
 * Browser side of the ops page: the admin token (sessionStorage only), the calls to the admin
 * endpoints through the storefront's `/api/admin` route, and the shapes of their answers
 * (recommndr/serving/routes/admin.py; the progress document is the workflow's, free-form beyond
 * `instance_id` and `status`, so every field of it is optional here).
 */
import { useSyncExternalStore } from "react";

// ---- the answers ----

export interface LoadedModel {
  variant: string;
  version: string;
  fallback: string | null;
  trained_on?: string;
  cutoff?: number;
  users?: number;
  items?: number;
  loaded_at?: number | string;
}

/** `GET /models` */
export interface ModelsAnswer {
  models: LoadedModel[];
  traffic: Record<string, number>;
}

export interface OperatorRequest {
  id: string;
  action: string;
  by: string;
  reason: string;
  at: number;
}

/** `GET /models/control`, and `control` in the canary answer. */
export interface Control {
  paused: boolean;
  request: OperatorRequest | null;
  fault: { kind: string; since: number | string } | null;
}

export interface VariantCounts {
  lists?: number;
  views?: number;
  carts?: number;
  purchases?: number;
  requests?: number;
  errors?: number;
  ctr?: number | null;
  atc?: number | null;
  cvr?: number | null;
}

/** Challenger − champion: the estimate and its anytime-valid confidence sequence. */
export interface Difference {
  estimate?: number | null;
  ci_low?: number | null;
  ci_high?: number | null;
  p_value?: number | null;
}

export interface LookRate {
  champion?: number | null;
  challenger?: number | null;
  diff?: number | null;
  ci_low?: number | null;
  ci_high?: number | null;
}

export interface Guard {
  value?: number | null;
  limit?: number | null;
  breached?: boolean;
}

export interface Look {
  at?: string;
  share?: number;
  ctr?: LookRate;
  cvr?: LookRate;
  guards?: Record<string, Guard>;
  decision?: string;
}

export interface Decision {
  action?: string;
  rule?: string;
  reason?: string;
}

/** A drift report as `recommndr monitor drift --json` prints it (only what the page draws). */
export interface DriftReport {
  drift?: boolean;
  kinds?: Record<string, boolean>;
  features?: Record<
    string,
    { psi?: number | null; threshold?: number | null; p_adjusted?: number | null; n?: number; drift?: boolean }
  >;
}

/** The workflow's progress document (what it PUTs to /models/canary). */
export interface Progress {
  instance_id?: string;
  status?: string;
  started_at?: string;
  updated_at?: string;
  challenger_version?: string;
  champion_version?: string;
  step?: number;
  steps?: number[];
  share?: number;
  looks?: Look[];
  decision?: Decision | null;
  drift?: DriftReport | null;
}

/** `GET /models/canary` */
export interface CanaryAnswer {
  canary: Progress | null;
  control: Control;
  traffic: Record<string, number>;
  variants: Record<string, VariantCounts>;
  /** `ctr` and `cvr` (null until both arms have enough data), and the test's `tau` and `alpha`. */
  difference: { ctr?: Difference | null; cvr?: Difference | null; tau?: number; alpha?: number };
}

export interface AuditEntry {
  seq: number;
  at: string;
  action: string;
  by: string;
  reason: string;
  details: Record<string, unknown> | null;
  prev?: string;
  hash?: string;
}

/** `GET /models/audit` */
export interface AuditAnswer {
  entries: AuditEntry[];
  verified: boolean;
}

/** The faults a demo's retrain may inject into its challenger (`canary_fault`). */
export const RETRAIN_FAULTS = ["none", "random", "errors", "slow", "drift"] as const;
export type RetrainFault = (typeof RETRAIN_FAULTS)[number];

/** `GET /models/retrain` (and `POST`'s answer): the retrain the API started (routes/retrain.py). */
export interface RetrainAnswer {
  state: "off" | "idle" | "running" | "finished" | "failed";
  started_at: number | null;
  finished_at: number | null;
  canary_fault: string | null;
  /** `recommndr retrain --json`'s result once finished. */
  outcome: { outcome?: string; reason?: string; seconds?: number; steps?: unknown[] } | null;
  returncode: number | null;
  detail: string | null;
  log_tail: string;
}

// ---- the token: this tab's sessionStorage, never a cookie or the URL ----

const TOKEN_KEY = "recommndr-admin-token";
const listeners = new Set<() => void>();

function readToken(): string | null {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

function subscribeToken(notify: () => void): () => void {
  listeners.add(notify);
  return () => {
    listeners.delete(notify);
  };
}

/** The admin token of this tab, or null (also while the page is rendered on the server). */
export function useAdminToken(): string | null {
  return useSyncExternalStore(subscribeToken, readToken, () => null);
}

export function setAdminToken(token: string | null): void {
  if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
  else window.sessionStorage.removeItem(TOKEN_KEY);
  listeners.forEach((notify) => notify());
}

// ---- the calls ----

export class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "AdminError";
  }

  /** The API (or the admin route) refused the token or the caller. */
  get refused(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

async function call<T>(url: string, init: RequestInit): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, cache: "no-store" });
  } catch (err) {
    throw new AdminError(0, "network", `the storefront is unreachable (${String(err)})`);
  }
  const body = (await res.json().catch(() => null)) as (T & { error?: { code?: string; message?: string } }) | null;
  if (!res.ok || body === null) {
    throw new AdminError(res.status, body?.error?.code ?? "error", body?.error?.message ?? `${url} answered ${res.status}`);
  }
  return body;
}

function admin<T>(token: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json", authorization: `Bearer ${token}` };
  if (body === undefined) return call<T>(`/api/admin/${path}`, { headers });
  headers["content-type"] = "application/json";
  return call<T>(`/api/admin/${path}`, { method: "POST", headers, body: JSON.stringify(body) });
}

/** Loaded models and the traffic split (a public endpoint, through the shop's proxy). */
export function getModels(): Promise<ModelsAnswer> {
  return call<ModelsAnswer>("/api/models", { headers: { accept: "application/json" } });
}

export function getCanary(token: string): Promise<CanaryAnswer> {
  return admin<CanaryAnswer>(token, "models/canary");
}

/** The audit trail's entries after `after` (oldest first, at most `limit`, ≤ 500). */
export function getAudit(token: string, after: number, limit: number): Promise<AuditAnswer> {
  return admin<AuditAnswer>(token, `models/audit?after=${after}&limit=${limit}`);
}

export function getRetrain(token: string): Promise<RetrainAnswer> {
  return admin<RetrainAnswer>(token, "models/retrain");
}

/** Start a retrain → canary → promote or roll back, its challenger given `fault` (demos). */
export function startRetrain(token: string, fault: RetrainFault): Promise<RetrainAnswer> {
  return admin<RetrainAnswer>(token, "models/retrain", { canary_fault: fault });
}

export type OpsAction = "pause" | "resume" | "promote" | "rollback";

/** One operator action with its reason; the API's answer. */
export function act(token: string, action: OpsAction, reason: string): Promise<Record<string, unknown>> {
  if (action === "pause" || action === "resume") {
    return admin(token, "models/pause", { paused: action === "pause", reason });
  }
  return admin(token, `models/${action}`, { reason });
}

// ---- formatting ----

function finite(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x);
}

/** A rate as a percentage ("4.82 %"), "—" when absent. */
export function pct(x: unknown, digits = 2): string {
  return finite(x) ? `${(x * 100).toFixed(digits)} %` : "—";
}

/** A difference of rates in percentage points, signed ("+0.12 pp"). */
export function pp(x: unknown, digits = 2): string {
  if (!finite(x)) return "—";
  const v = x * 100;
  return `${v > 0 ? "+" : v < 0 ? "−" : ""}${Math.abs(v).toFixed(digits)} pp`;
}

export function num(x: unknown, digits = 3): string {
  return finite(x) ? (Number.isInteger(x) ? x.toLocaleString("en-US") : x.toPrecision(digits)) : "—";
}

/** An epoch (seconds) or ISO time, as local date and time. */
export function when(x: unknown): string {
  const d = finite(x) ? new Date(x * 1000) : typeof x === "string" ? new Date(x) : null;
  return d && !Number.isNaN(d.getTime()) ? d.toLocaleString("en-GB", { hour12: false }) : "—";
}
