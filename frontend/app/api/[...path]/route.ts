/**
 * Same-origin proxy to the Recommndr API, so the browser never talks cross-origin and the API URL
 * is runtime configuration (RECOMMNDR_API_URL), not something baked into the build.
 *
 * Only the storefront's own endpoints pass: the admin endpoints would otherwise see every caller
 * as this server's loopback address and so inside their IP allow-list (the ops page has its own
 * route for them, `app/api/admin/[...path]/route.ts`, which says who the caller is). Endpoints that
 * only the pages' server components use (`/trending`) are left out: the browser has no need of them.
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
 * The checks are `lib/proxy.ts`, shared with the admin route.
 */
import type { NextRequest } from "next/server";

import { apiUrl } from "@/lib/config";
import { checkedWrite, error, relay } from "@/lib/proxy";

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

async function forward(request: NextRequest, { params }: Context): Promise<Response> {
  const path = (await params).path.join("/");
  const allowed = request.method === "POST" ? WRITABLE : READABLE;
  if (!allowed.some((re) => re.test(path))) {
    return error(404, "not_found", `${request.method} /${path} is not available through the storefront`);
  }
  const init: RequestInit = { method: request.method, headers: { accept: "application/json" } };
  if (request.method !== "GET" && request.method !== "HEAD") {
    const body = await checkedWrite(request, MAX_BODY);
    if (body instanceof Response) return body;
    init.body = body;
    init.headers = { accept: "application/json", "content-type": "application/json" };
  }
  return relay(`${apiUrl()}/${path}${request.nextUrl.search}`, init);
}

export const GET = forward;
export const POST = forward;
