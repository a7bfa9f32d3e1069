/**
 * Server side, Node.js only: the pieces of the ops page's admin route
 * (`app/api/admin/[...path]/route.ts`, whose header comment tells the design): its settings, who
 * the caller is, and the call to the API from a chosen local address.
 */
import http from "node:http";
import https from "node:https";
import { BlockList, isIP } from "node:net";

import { normaliseAddress, peerOf } from "./peer";

/** `RECOMMNDR_ADMIN_PROXY`: the route is off (unset, empty, `off`), on with the source address the
 * system picks (`on`), or on and connecting to the API from this local address (an IP). */
export type AdminProxy = { on: false } | { on: true; source: string | null } | { on: "invalid"; value: string };

export function adminProxySetting(value = process.env.RECOMMNDR_ADMIN_PROXY): AdminProxy {
  const v = (value ?? "").trim();
  if (v === "" || v.toLowerCase() === "off") return { on: false };
  if (v.toLowerCase() === "on") return { on: true, source: null };
  return isIP(v) ? { on: true, source: v } : { on: "invalid", value: v };
}

/** `RECOMMNDR_STOREFRONT_TRUSTED_PROXIES`: networks (CIDR or single addresses, separated by commas
 * or spaces) of the reverse proxies in front of this server; null when an entry is not one. */
export function trustedProxies(value = process.env.RECOMMNDR_STOREFRONT_TRUSTED_PROXIES): BlockList | null {
  const list = new BlockList();
  for (const entry of (value ?? "").split(/[\s,]+/).filter(Boolean)) {
    const [address = "", prefix, ...rest] = entry.split("/");
    const family = isIP(address);
    if (!family || rest.length > 0) return null;
    const type = family === 4 ? "ipv4" : "ipv6";
    if (prefix === undefined) {
      list.addAddress(address, type);
      continue;
    }
    const bits = Number(prefix);
    if (!/^\d+$/.test(prefix) || bits > (family === 4 ? 32 : 128)) return null;
    list.addSubnet(address, bits, type);
  }
  return list;
}

/** The address of one `X-Forwarded-For` entry (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:5678`, `::1`),
 * read as the API reads it (`recommndr/serving/auth.py` `_host`). */
function hopAddress(entry: string): string | null {
  const e = entry.trim();
  if (e.startsWith("[")) return normaliseAddress(e.slice(1, e.indexOf("]")));
  if (e.split(":").length === 2) return normaliseAddress(e.split(":")[0]);
  return normaliseAddress(e);
}

/**
 * The caller's address, the way the API decides it (`client_address`): the socket peer, unless the
 * peer is a trusted reverse proxy, whose last `X-Forwarded-For` hop (the one it appended) is then
 * the caller; earlier hops are whatever the caller sent. Null when unknown (refused).
 */
export function callerAddress(headers: Headers, trusted: BlockList): string | null {
  const peer = peerOf(headers);
  if (peer === null) return null;
  if (!trusted.check(peer, isIP(peer) === 4 ? "ipv4" : "ipv6")) return peer;
  const hops = (headers.get("x-forwarded-for") ?? "").split(",").filter((h) => h.trim());
  const last = hops.at(-1);
  return last === undefined ? null : hopAddress(last);
}

/** Bytes: the most of an API answer this route passes on (the audit trail's 500 entries fit). */
export const MAX_ANSWER = 16 * 1024 * 1024;

export class UpstreamError extends Error {}

/**
 * One request to the API with exactly these headers (and `localAddress` when a source is set),
 * its status, content type and body; UpstreamError when it cannot be reached or answers more than
 * MAX_ANSWER bytes. node:http, not fetch: fetch cannot choose the local address.
 */
export function callApi(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: Uint8Array | null,
  source: string | null,
  timeoutMs = 30_000,
): Promise<{ status: number; contentType: string; body: Buffer }> {
  const client = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      url,
      {
        method,
        headers: body ? { ...headers, "content-length": String(body.byteLength) } : headers,
        ...(source ? { localAddress: source } : {}),
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > MAX_ANSWER) {
            res.destroy();
            reject(new UpstreamError(`the API's answer is larger than ${MAX_ANSWER} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 502,
            contentType: String(res.headers["content-type"] ?? "application/json"),
            body: Buffer.concat(chunks),
          }),
        );
        res.on("error", (err) => reject(new UpstreamError(String(err))));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on("error", (err) => reject(new UpstreamError(String(err))));
    req.end(body ?? undefined);
  });
}
