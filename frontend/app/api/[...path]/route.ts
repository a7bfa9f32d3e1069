/**
 * Same-origin proxy to the Recommndr API, so the browser never talks cross-origin and the API URL
 * is runtime configuration (RECOMMNDR_API_URL), not something baked into the build.
 *
 * Only the storefront's own endpoints pass: the admin endpoints would otherwise see every caller
 * as this server's loopback address and so inside their IP allow-list. Endpoints that only the
 * pages' server components use (`/trending`) are left out: the browser has no need of them.
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
const MAX_BODY = 1_000_000;

type Context = { params: Promise<{ path: string[] }> };

function error(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status });
}

async function forward(request: NextRequest, { params }: Context): Promise<Response> {
  const path = (await params).path.join("/");
  const allowed = request.method === "POST" ? WRITABLE : READABLE;
  if (!allowed.some((re) => re.test(path))) {
    return error(404, "not_found", `${request.method} /${path} is not available through the storefront`);
  }
  const init: RequestInit = { method: request.method, headers: { accept: "application/json" }, cache: "no-store" };
  if (request.method === "POST") {
    const body = await request.text();
    if (body.length > MAX_BODY) return error(413, "too_large", "body: at most 1 MB");
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
