/**
 * Same-origin proxy to the Recommndr API, so the browser never talks cross-origin and the API URL
 * is runtime configuration (RECOMMNDR_API_URL), not something baked into the build.
 *
 * Only the storefront's own endpoints pass: the admin endpoints would otherwise see every caller
 * as this server's loopback address and so inside their IP allow-list. Endpoints that only the
 * pages' server components use (`/trending`) are left out: the browser has no need of them.
 *
 * A write (POST /events) must come from the shop's own pages and be JSON of at most 1 MiB, else it
 * is refused here, in the API's error shape, before the API sees it:
 * - 403 `forbidden_origin` unless its Origin header names this host (the Host header, or the first
 *   X-Forwarded-Host behind a reverse proxy; the check Next.js makes of server actions). Browsers
 *   send Origin with every POST, and a cross-site page cannot forge it nor, without a preflight
 *   this route never answers, set X-Forwarded-Host.
 * - 415 `unsupported_media_type` unless its Content-Type is `application/json` (what a cross-site
 *   form or no-cors fetch may send without a preflight is not).
 * - 413 `payload_too_large` past MAX_BODY bytes: at once by Content-Length, and while the body is
 *   read (a chunked one has none), which stops at the cap instead of buffering the rest.
 */
import type { NextRequest } from "next/server";

import { apiUrl } from "@/lib/config";

const READABLE = [
  /^health$/,
  /^ready$/,
  /^recommendations\/\d+$/,
  /^similar_items\/\d+$/,
  /^frequently_bought_together\/\d+$/,
  /^popular$/,
  /^products(\/\d+)?$/,
  /^categories$/,
  /^shoppers$/,
  /^models$/,
];
const WRITABLE = [/^events$/];
/** Bytes: the API's own limit on a request body (1 MiB; a batch of 1000 events fits in it). */
const MAX_BODY = 1_048_576;

type Context = { params: Promise<{ path: string[] }> };

function error(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status });
}

const tooLarge = () => error(413, "payload_too_large", `body: at most ${MAX_BODY} bytes (1 MiB)`);

/** Whether the Origin header names the host this request was sent to (scheme-default ports aside). */
function sameOrigin(request: NextRequest): boolean {
  const origin = request.headers.get("origin");
  const own = request.headers.get("x-forwarded-host")?.split(",")[0]?.trim() || request.headers.get("host");
  if (!origin || !own) return false;
  try {
    const from = new URL(origin); // "null" (an opaque origin) throws
    return from.host !== "" && from.host === new URL(`${from.protocol}//${own}`).host;
  } catch {
    return false;
  }
}

function isJson(request: NextRequest): boolean {
  const type = request.headers.get("content-type") ?? "";
  return (type.split(";")[0] ?? "").trim().toLowerCase() === "application/json";
}

/** The body's bytes, or null as soon as more than `limit` have arrived (the rest is never read). */
async function readCapped(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array<ArrayBuffer> | null> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (body) {
    const reader = body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        reader.cancel().catch(() => undefined);
        return null;
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

async function forward(request: NextRequest, { params }: Context): Promise<Response> {
  const path = (await params).path.join("/");
  const allowed = request.method === "POST" ? WRITABLE : READABLE;
  if (!allowed.some((re) => re.test(path))) {
    return error(404, "not_found", `${request.method} /${path} is not available through the storefront`);
  }
  const init: RequestInit = { method: request.method, headers: { accept: "application/json" }, cache: "no-store" };
  if (request.method !== "GET" && request.method !== "HEAD") {
    if (!sameOrigin(request)) {
      return error(403, "forbidden_origin", "writes are accepted only from the storefront's own pages (Origin)");
    }
    if (!isJson(request)) {
      return error(415, "unsupported_media_type", "body: Content-Type must be application/json");
    }
    if (Number(request.headers.get("content-length") ?? 0) > MAX_BODY) return tooLarge();
    const body = await readCapped(request.body, MAX_BODY);
    if (body === null) return tooLarge();
    init.body = body;
    init.headers = { accept: "application/json", "content-type": "application/json" };
  }
  let upstream: Response;
  try {
    upstream = await fetch(`${apiUrl()}/${path}${request.nextUrl.search}`, init);
  } catch (err) {
    return error(502, "api_unreachable", `the Recommndr API is unreachable: ${String(err)}`);
  }
  return new Response(await upstream.arrayBuffer(), {
    status: upstream.status,
    headers: {
      "content-type": upstream.headers.get("content-type") ?? "application/json",
      "cache-control": "no-store",
    },
  });
}

export const GET = forward;
export const POST = forward;
