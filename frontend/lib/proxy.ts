/**
 * Server side: the checks the storefront's `/api` routes make of a request before any of it
 * reaches the API (`app/api/[...path]/route.ts` for the shop, `app/api/admin/[...path]/route.ts`
 * for the ops page), and the answer, in the API's error shape, when one fails.
 */
import type { NextRequest } from "next/server";

/** The API's error shape: `{"error": {"code", "message"}}`. */
export function error(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status, headers: { "cache-control": "no-store" } });
}

/** Whether the Origin header names the host this request was sent to (scheme-default ports aside):
 * the Host header, or the first X-Forwarded-Host behind a reverse proxy (the check Next.js makes of
 * server actions). Browsers send Origin with every POST, and a cross-site page can neither forge it
 * nor, without a preflight these routes never grant, set X-Forwarded-Host. */
export function sameOrigin(request: NextRequest): boolean {
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

/** Whether the Content-Type is `application/json` (parameters aside): what a cross-site form or a
 * no-cors fetch may send without a preflight is not. */
export function isJson(request: NextRequest): boolean {
  const type = request.headers.get("content-type") ?? "";
  return (type.split(";")[0] ?? "").trim().toLowerCase() === "application/json";
}

/** The body's bytes, or null as soon as more than `limit` have arrived (the rest is never read). */
export async function readCapped(
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

/**
 * A write's body once it has passed the checks, or the refusal: 403 `forbidden_origin` unless the
 * Origin is this host, 415 `unsupported_media_type` unless it is JSON, 413 `payload_too_large` past
 * `limit` bytes (at once by Content-Length, else as soon as the read passes the cap).
 */
export async function checkedWrite(request: NextRequest, limit: number): Promise<Uint8Array<ArrayBuffer> | Response> {
  if (!sameOrigin(request)) {
    return error(403, "forbidden_origin", "writes are accepted only from the storefront's own pages (Origin)");
  }
  if (!isJson(request)) {
    return error(415, "unsupported_media_type", "body: Content-Type must be application/json");
  }
  const tooLarge = () => error(413, "payload_too_large", `body: at most ${limit} bytes`);
  if (Number(request.headers.get("content-length") ?? 0) > limit) return tooLarge();
  const body = await readCapped(request.body, limit);
  return body === null ? tooLarge() : body;
}

/** The API's answer, passed on with its status and body, never cached; 502 when it is unreachable. */
export async function relay(url: string, init: RequestInit): Promise<Response> {
  let upstream: Response;
  try {
    upstream = await fetch(url, { ...init, cache: "no-store" });
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
